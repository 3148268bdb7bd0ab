"""The flat ladder of a sensor set: panel flats at a ladder of signal levels, from a few hundred
ADU above the bias to beyond saturation, for the photon-transfer analysis
(:mod:`capture.sensor`).

One exposure search at a fixed panel brightness finds the exposure that puts the signal at half
the saturation signal; every level's exposure is that one scaled by the level's signal (the
sensor is linear well below saturation, and the levels above it only need to be beyond). A level
taken in part by an earlier session keeps its exposure, so its frames still make pairs. Frames
are kept without a level check (the levels beyond saturation are meant to clip); the per-frame
temperature check still applies.
"""

from __future__ import annotations

import dataclasses

from calibd.capture.flats.search import SearchFailed
from calibd.capture.flats.session import MOVE_TIMEOUT_S
from calibd.capture.flats.session import FlatSession
from calibd.capture.plans.cells import Cell
from calibd.capture.plans.model import FlatSet
from calibd.capture.sequencer.port import Extra
from calibd.drivers.contracts import CoverState

REFERENCE_FRACTION = 0.5  # the search's target: this fraction of the saturation signal
MAX_EXTRA_ATTEMPTS = 5  # frames a level may have rejected (temperature) before it fails


def capture_ladder_flats(session: FlatSession, cells: list[Cell], fset: FlatSet) -> None:
    """Capture the ladder cells of one group (one gain, offset, binning, mode). Blocks;
    raises RunPaused, ValueError (no flat panel: the plan check refuses that before a run)."""
    port, panel = session.port, session.setup.panel
    if panel is None:
        raise ValueError("a sensor set's flat ladder without a flat panel")
    todo = sorted((c for c in cells if port.done(c) < c.count),
                  key=lambda c: c.ladder.index if c.ladder is not None else 0)
    if not todo:
        return
    first = todo[0]
    brightness = fset.panel.brightness if fset.panel.brightness is not None \
        else max(1, panel.max_brightness // 2)
    if brightness > panel.max_brightness:
        for cell in todo:
            port.fail_cell(cell, f"panel brightness {brightness} above the panel's maximum "
                               f"{panel.max_brightness}")
        return
    if panel.has_cover and session.device(panel.cover_state, first) != CoverState.CLOSED:
        session.device(lambda: panel.close_cover(timeout_s=MOVE_TIMEOUT_S), first)
    session.device(lambda: panel.light(brightness, timeout_s=MOVE_TIMEOUT_S), first)
    try:
        if not port.configure(first):
            return
        session.select_filter(first)
        levels = port.levels(first)
        span = levels.saturation_adu - levels.bias_adu
        spec = session.spec(fset, levels)
        spec = dataclasses.replace(spec, target_adu=levels.bias_adu + REFERENCE_FRACTION * span,
                                   tolerance_adu=0.1 * REFERENCE_FRACTION * span)
        key = session.memory_key(first, "exposure")
        port.progress("sensor ladder: exposure search", phase="exposing", cell=first)
        try:
            result, _ = session.run_search(first, spec, session.memory.recall(key, brightness),
                                           lambda x: port.shoot(first, x))
        except SearchFailed as err:
            for cell in todo:
                session.fail(cell, err)
            return
        session.memory.remember(key, brightness, result.x, result.level)
        adu_per_s = max(result.level - levels.bias_adu, 1e-9) / result.x
        for cell in todo:
            if cell.ladder is None or not port.configure(cell):
                continue
            exposure = session.last_exposure(cell)
            if exposure is None:
                exposure = _round_sig(cell.ladder.fraction(span) * span / adu_per_s)
            if not fset.min_exposure_s <= exposure <= fset.max_exposure_s:
                port.fail_cell(cell, f"level {cell.ladder.index + 1} needs {exposure:.4g} s, "
                                   f"outside {fset.min_exposure_s:g}..{fset.max_exposure_s:g} s "
                                   "(change the panel brightness or the exposure range)")
                continue
            _fill(session, cell, exposure, {"FLATSRC": "panel", "PANELBRT": brightness,
                                            "SENSLVL": cell.ladder.index})
    finally:
        session.device(lambda: panel.off(timeout_s=MOVE_TIMEOUT_S), first)


def _fill(session: FlatSession, cell: Cell, exposure: float, extra: Extra) -> None:
    """Take the cell's frames at ``exposure``; fail it after too many rejected frames."""
    port = session.port
    port.progress(f"sensor ladder level {cell.describe()}", phase="exposing", cell=cell)
    rejected = 0
    while port.done(cell) < cell.count:
        if port.keep(port.shoot(cell, exposure), cell, extra):
            continue
        rejected += 1
        if rejected > MAX_EXTRA_ATTEMPTS:
            port.fail_cell(cell, f"{rejected} frames rejected at this level")
            return


def _round_sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits - 1}e}")
