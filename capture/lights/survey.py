"""Light frames in folders, grouped by what calibrates them, and what the library has for each
group: *exact*, *within tolerance*, only by a documented *fallback*, *stale* (only a master
the library policy no longer accepts) or *missing*.

Matching is :func:`capture.masters.match.match_light` (the same rules as ``calibd library
match``); this module only names its fallback steps. Lights are opened read-only for their
headers (:mod:`capture.lights.headers`) and never modified, moved or read further.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from calibd.capture.library.masters_table import MasterRow
from calibd.capture.lights.conventions import LightFrame
from calibd.capture.lights.conventions import read_light_file
from calibd.capture.lights.headers import LIGHT_SUFFIXES
from calibd.capture.lights.headers import HeaderError
from calibd.capture.masters.match import Choice
from calibd.capture.masters.match import match_light
from calibd.capture.textsafe import shown

log = logging.getLogger(__name__)

MAX_FILES = 100_000  # light frames read per survey at most
KINDS = ("bias", "dark", "flat")

# What each matching step of capture.masters.match means for planning; a step not listed
# (added later) counts as a fallback. Step 0 = nothing matched.
COVERAGE: dict[tuple[str, int], str] = {
    ("bias", 1): "exact", ("bias", 2): "within tolerance", ("bias", 3): "fallback",
    ("dark", 1): "exact", ("dark", 2): "within tolerance", ("dark", 3): "fallback",
    ("flat", 1): "exact", ("flat", 2): "fallback",
    ("bpm", 1): "exact", ("bpm", 2): "fallback",
}


SAME_SETPOINT_C = 0.05  # closer than this is the same set-point


def coverage(choice: Choice, setpoint_c: float | None = None) -> str:
    """exact / within tolerance / fallback / missing for one match result; a first-step match
    at another set-point (within the tolerance) is "within tolerance"."""
    if choice.master is None or choice.step == 0:
        return "missing"
    found = COVERAGE.get((choice.kind, choice.step), "fallback")
    m = choice.master
    if found == "exact" and choice.kind in ("bias", "dark") and setpoint_c is not None \
            and m.setpoint_c is not None and abs(m.setpoint_c - setpoint_c) > SAME_SETPOINT_C:
        return "within tolerance"
    return found


@dataclass(frozen=True)
class Settings:
    """What a bias is matched on (a dark adds the exposure, a flat the filter)."""

    camera: str
    gain: int
    offset: int | None
    binning: int
    readout_mode: str | None
    setpoint_c: float


@dataclass
class Group:
    settings: Settings
    exposure_s: float
    filter: str | None
    frames: list[LightFrame] = field(default_factory=list)
    choices: dict[str, Choice] = field(default_factory=dict)
    stale: dict[str, str] = field(default_factory=dict)  # kind -> the invalid master, why

    def coverage(self, kind: str) -> str:
        """exact / within tolerance / fallback / stale (only an invalid master would do) /
        missing."""
        if kind in self.stale:
            return "stale"
        return coverage(self.choices[kind], self.settings.setpoint_c)

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {"camera": s.camera, "gain": s.gain, "offset": s.offset, "binning": s.binning,
                "readout_mode": s.readout_mode, "setpoint_c": s.setpoint_c,
                "exposure_s": self.exposure_s, "filter": self.filter,
                "lights": len(self.frames),
                "newest_date_obs": newest_date(self.frames),
                "masters": {k: {"coverage": self.coverage(k), **c.to_dict(),
                                "stale": self.stale.get(k)}
                            for k, c in self.choices.items()}}


@dataclass
class Survey:
    frames: list[LightFrame]
    groups: list[Group]
    truncated: bool = False

    @property
    def usable(self) -> list[LightFrame]:
        return [f for f in self.frames if f.usable]


def newest_date(frames: Iterable[LightFrame]) -> str | None:
    dates = [f.date_obs for f in frames if f.date_obs]
    return max(dates) if dates else None


def light_files(folders: list[Path]) -> tuple[list[Path], bool]:
    """FITS and XISF files under ``folders`` (recursively, symbolic links not followed, hidden
    entries skipped), sorted; at most :data:`MAX_FILES` (second value: cut short)."""
    out: list[Path] = []
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or not name.lower().endswith(LIGHT_SUFFIXES):
                    continue
                out.append(Path(dirpath) / name)
                if len(out) >= MAX_FILES:
                    return out, True
    return out, False


def read_lights(paths: list[Path]) -> list[LightFrame]:
    """Every file read into a LightFrame; an unreadable header is that file's problem."""
    frames = []
    for path in paths:
        try:
            frames.append(read_light_file(path))
        except HeaderError as err:
            frames.append(LightFrame(path=path, problems=[f"header not read: {err}"]))
    for f in frames:
        for p in f.problems:
            log.info("%s: %s", shown(f.path.name), p)
    return frames


def group_lights(frames: list[LightFrame]) -> list[Group]:
    """Usable frames grouped by settings, exposure and filter (in a stable order)."""
    groups: dict[tuple[Settings, float, str | None], Group] = {}
    for f in frames:
        if not f.usable:
            continue
        assert f.camera is not None and f.gain is not None and f.setpoint_c is not None
        assert f.exposure_s is not None
        s = Settings(f.camera, f.gain, f.offset, f.binning, f.readout_mode, f.setpoint_c)
        key = (s, round(f.exposure_s, 3), f.filter)
        if key not in groups:
            groups[key] = Group(s, round(f.exposure_s, 3), f.filter)
        groups[key].frames.append(f)
    return sorted(groups.values(), key=lambda g: (
        g.settings.camera, g.settings.gain, g.settings.offset or 0, g.settings.binning,
        g.settings.readout_mode or "", g.settings.setpoint_c, g.exposure_s, g.filter or ""))


def survey(folders: list[Path], masters: list[MasterRow], *, tolerance_c: float = 1.0,
           flat_max_age_days: float = 60.0, invalid: dict[str, str] | None = None,
           dark_convention: str = "with-bias") -> Survey:
    """Read, group and match the lights under ``folders`` against ``masters``; a master in
    ``invalid`` (path -> the library policy's reason) calibrates nothing today: a group only
    it would serve is *stale* (and planned like a missing one); master darks of the other
    ``dark_convention`` are not matched. Blocks on file I/O (headers only)."""
    invalid = invalid or {}
    valid = [m for m in masters if m.path not in invalid]
    paths, truncated = light_files(folders)
    frames = read_lights(paths)
    groups = group_lights(frames)
    for g in groups:
        newest = max(g.frames, key=lambda f: f.date_obs or "")
        choices = match_light(valid, newest.light(), tolerance_c=tolerance_c,
                              flat_max_age_days=flat_max_age_days,
                              dark_convention=dark_convention)
        g.choices = {c.kind: c for c in choices}
        if len(valid) == len(masters):
            continue
        for c in match_light(masters, newest.light(), tolerance_c=tolerance_c,
                             flat_max_age_days=flat_max_age_days,
                             dark_convention=dark_convention):
            if c.master is not None and g.choices[c.kind].master is None:
                g.stale[c.kind] = f"{c.master.path}: {invalid.get(c.master.path, '')}"
    return Survey(frames, groups, truncated)
