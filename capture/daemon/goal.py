"""The daemon's library goal: schedules with ``upkeep: true`` keep their plan's cells held and
valid under ``library.policy`` (:mod:`capture.library.upkeep`), cells the schedule's recent
lights need first; status says what the library lacks and when it will be filled."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibd.capture.config import Config
from calibd.capture.config import ScheduleConfig
from calibd.capture.config import UnsafeSchedule
from calibd.capture.library.index import Index
from calibd.capture.library.upkeep import holdings
from calibd.capture.library.upkeep import needs
from calibd.capture.lights.survey import Survey
from calibd.capture.lights.survey import survey
from calibd.capture.plans.cells import Cell
from calibd.capture.runner import Upkeep
from calibd.capture.yamlsrc import Located
from calibd.drivers.clock import Clock

log = logging.getLogger(__name__)

_EXPOSURE_TOL_S = 1e-3


def _path(p: Path, located: Located | None) -> Path:
    if p.is_absolute() or located is None or located.file is None:
        return p
    return (located.file.parent / p).resolve()


def lights_rank(s: Survey) -> Callable[[Cell], int]:
    """0 for a cell the surveyed lights need (same gain, binning and set-point; darks the same
    exposure, flats the same filter; offset where the light gives one), else 1."""
    groups = list(s.groups)

    def rank(c: Cell) -> int:
        for g in groups:
            st = g.settings
            if (st.gain != c.gain or st.binning != c.binning
                    or abs(st.setpoint_c - c.setpoint_c) > 0.05
                    or (st.offset is not None and st.offset != c.offset)):
                continue
            if c.kind == "bias" or (c.kind == "flat" and g.filter == c.filter) or (
                    c.kind in ("dark", "darkflat")
                    and abs(g.exposure_s - c.exposure_s) <= _EXPOSURE_TOL_S):
                return 0
        return 1
    return rank


def goal_upkeep(config: Config, located: Located | None, schedule: str | None) -> Upkeep:
    """The upkeep of the schedule named ``schedule`` (its policy, site, lights)."""
    found = next((s for s in config.schedules if s.name == schedule), None)
    rank = None
    if found is not None and found.lights:
        folders = [f for f in (_path(p, located) for p in found.lights) if f.is_dir()]
        if folders:
            rank = lights_rank(survey(folders, []))
    return Upkeep(config.library.policy,
                  config.site.longitude_deg if config.site else None, rank)


@dataclass(frozen=True)
class _Key:
    """A cell known only by its key (from the library's runs of a plan)."""

    key: str


def goal_status(config: Config, index: Index, clock: Clock, *, plan_names: dict[str, str],
                camera_of: Callable[[ScheduleConfig], str], next_runs: dict[str, str | None],
                safe: bool | None, running: dict[str, str | None]) -> list[dict[str, Any]]:
    """Per upkeep schedule: the cells its plan's runs hold that the library now lacks (with
    the reason), and when they will be filled."""
    out = []
    runs = index.runs()
    for s in config.schedules:
        if not s.upkeep or not s.enabled:
            continue
        camera = camera_of(s)
        name = plan_names.get(s.name, "")
        keys: list[str] = []
        for run in runs:
            if run.plan_name == name and run.camera == camera:
                keys += [str(r["cell_key"]) for r in index.cell_rows(run.id)
                         if r["cell_key"] not in keys]
        held = holdings(index, camera, config.library.policy, clock.now(),
                        longitude_deg=config.site.longitude_deg if config.site else None)
        lacking = needs([_Key(k) for k in keys], held)
        if running.get(camera, "") and str(running[camera]).endswith(f":{s.name}"):
            fills = "now (capturing)"
        elif not keys:
            fills = "never run yet: at the next trigger"
        elif not lacking:
            fills = None
        elif isinstance(s, UnsafeSchedule):
            fills = "now" if safe is False else "at the next cloudy spell (safety unsafe)"
        else:
            fills = f"at the next {s.trigger} fire: {next_runs.get(s.name)}"
        out.append({"schedule": s.name, "camera": camera, "plan": name,
                    "cells_known": len(keys), "lacking": [n.to_dict() for n in lacking],
                    "complete": bool(keys) and not lacking, "fills": fills})
    return out
