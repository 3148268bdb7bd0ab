"""Panel flats: per filter, find the exposure at a fixed brightness (mode ``exposure``) or the
brightness at one fixed exposure for every filter (mode ``brightness``: one set of dark flats
serves all filters), then take the frames, checking each one and re-tuning when a frame leaves
the tolerance."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from capture.flats.memory import FlatKey
from capture.flats.runner import MOVE_TIMEOUT_S
from capture.flats.search import SearchFailed, SearchSpec
from capture.plans.cells import Cell
from capture.plans.model import FlatSet
from capture.sequencer.sequencer import Shot
from drivers.contracts import CoverState

if TYPE_CHECKING:
    from capture.flats.runner import FlatRunner

MAX_RETUNES = 3  # a cell whose frames leave the tolerance more often than this fails


def capture_panel_flats(runner: FlatRunner, cells: list[Cell], fset: FlatSet) -> None:
    """Capture the panel flats of one group (same set and settings). Blocks; raises RunPaused."""
    seq, panel, wheel = runner.seq, runner.setup.panel, runner.setup.wheel
    assert panel is not None
    todo = [c for c in cells if seq.done.get(c.key, 0) < c.count]
    if not todo:
        return
    if wheel is not None:  # wheel order: fewest moves
        todo.sort(key=lambda c: wheel.names.index(c.filter) if c.filter in wheel.names else 0)
    first = todo[0]
    if panel.has_cover and runner.device(panel.cover_state, first) != CoverState.CLOSED:
        runner.device(lambda: panel.close_cover(timeout_s=MOVE_TIMEOUT_S), first)
    mode = fset.panel.mode
    brightness = fset.panel.brightness if fset.panel.brightness is not None \
        else max(1, panel.max_brightness // 2)
    if mode == "exposure":
        if brightness > panel.max_brightness:
            for cell in todo:
                runner.fail(cell, f"panel brightness {brightness} above the panel's maximum "
                                  f"{panel.max_brightness}")
            return
        runner.device(lambda: panel.light(brightness, timeout_s=MOVE_TIMEOUT_S), first)
    try:
        for cell in todo:
            if not seq.configure(cell):
                continue
            runner.select_filter(cell)
            seq.update(phase="exposing", cell=cell.describe(), cell_done=seq.done.get(cell.key, 0),
                       cell_total=cell.count, message=f"flats {cell.filter}")
            bias = runner.bias_level(cell)
            if mode == "exposure":
                _exposure_mode(runner, cell, fset, bias, brightness)
            else:
                _brightness_mode(runner, cell, fset, bias)
    finally:
        runner.device(lambda: panel.off(timeout_s=MOVE_TIMEOUT_S), first)


def _exposure_mode(runner: FlatRunner, cell: Cell, fset: FlatSet, bias: float,
                   brightness: int) -> None:
    """Search the exposure at a fixed panel brightness."""
    spec = runner.spec(fset, bias)
    key = runner.memory_key(cell, "exposure")
    start = runner.last_exposure(cell) or runner.memory.recall(key, brightness)
    _fill(runner, cell, spec, key, fixed=brightness, start=start,
          take=lambda x: runner.seq.shoot(cell, x), exposure_of=lambda x: x,
          brightness_of=lambda x: brightness)


def _brightness_mode(runner: FlatRunner, cell: Cell, fset: FlatSet, bias: float) -> None:
    """Search the panel brightness at the set's one fixed exposure."""
    assert fset.panel.exposure_s is not None
    exposure = fset.panel.exposure_s
    spec = runner.spec(fset, bias, what="brightness")
    key = runner.memory_key(cell, "brightness")
    _fill(runner, cell, spec, key, fixed=exposure, start=runner.memory.recall(key, exposure),
          take=lambda x: _lit_shot(runner, cell, round(x), exposure),
          exposure_of=lambda x: exposure, brightness_of=round)


def _fill(runner: FlatRunner, cell: Cell, spec: SearchSpec, key: FlatKey, *, fixed: float,
          start: float | None, take: Callable[[float], Shot],
          exposure_of: Callable[[float], float], brightness_of: Callable[[float], int]) -> None:
    """Search ``x`` (exposure or brightness), remember it, then take the cell's flats at it;
    a flat out of tolerance is discarded and the search runs again from where it was (at most
    MAX_RETUNES times). The last test frame of a search counts when it is good."""
    seq = runner.seq
    if not runner.check_reachable(cell, spec):
        return
    retunes = 0
    while seq.done.get(cell.key, 0) < cell.count:
        try:
            result, measured = runner.run_search(cell, spec, start, take)
        except SearchFailed as err:
            runner.fail(cell, err)
            return
        runner.memory.remember(key, fixed, result.x, result.level)
        extra: dict[str, str | int | float | bool] = {
            "FLATSRC": "panel", "PANELBRT": brightness_of(result.x)}
        runner.keep_if_good(cell, spec, measured.shot, extra)
        exposure = exposure_of(result.x)
        while seq.done.get(cell.key, 0) < cell.count:
            if runner.keep_if_good(cell, spec, seq.shoot(cell, exposure), extra):
                continue
            retunes += 1  # rejected (and journalled): tune again from where we are
            if retunes > MAX_RETUNES:
                runner.fail(cell, f"the level kept drifting out of tolerance ({retunes} re-tunes)")
                return
            start = result.x
            break


def _lit_shot(runner: FlatRunner, cell: Cell, brightness: int, exposure: float) -> Shot:
    """Set the panel to ``brightness`` and take one frame at ``exposure``."""
    panel = runner.setup.panel
    assert panel is not None
    runner.device(lambda: panel.light(brightness, timeout_s=MOVE_TIMEOUT_S), cell)
    return runner.seq.shoot(cell, exposure)
