"""Panel flats: per filter, find the exposure at a fixed brightness (mode ``exposure``) or the
brightness at one fixed exposure for every filter (mode ``brightness``: one set of dark flats
serves all filters), then take the frames, checking each one and re-tuning when a frame leaves
the tolerance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from capture.flats.search import SearchFailed, SearchSpec
from capture.plans.cells import Cell
from capture.plans.model import FlatSet
from capture.sequencer.sequencer import Shot
from drivers.contracts import CoverState

if TYPE_CHECKING:
    from capture.flats.runner import FlatRunner

MOVE_TIMEOUT_S = 120.0
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
    seq = runner.seq
    spec = runner.spec(fset, bias)
    if not runner.check_reachable(cell, spec):
        return
    key = runner.memory_key(cell, "exposure")
    start = runner.last_exposure(cell) or runner.memory.recall(key, brightness)
    extra: dict[str, str | int | float | bool] = {"FLATSRC": "panel", "PANELBRT": brightness}
    retunes = 0
    while seq.done.get(cell.key, 0) < cell.count:
        try:
            result, measured = runner.run_search(cell, spec, start, lambda x: seq.shoot(cell, x))
        except SearchFailed as err:
            runner.fail(cell, err)
            return
        runner.memory.remember(key, brightness, result.x, result.level)
        runner.keep_if_good(cell, spec, measured.shot, extra)
        exposure = result.x  # the last test frame (kept above) was taken at exactly this
        while seq.done.get(cell.key, 0) < cell.count:
            shot = seq.shoot(cell, exposure)
            if runner.keep_if_good(cell, spec, shot, extra):
                continue
            retunes += 1  # rejected (and journalled): tune again from where we are
            if retunes > MAX_RETUNES:
                runner.fail(cell, f"the level kept drifting out of tolerance ({retunes} re-tunes)")
                return
            start = exposure
            break


def _brightness_mode(runner: FlatRunner, cell: Cell, fset: FlatSet, bias: float) -> None:
    seq, panel = runner.seq, runner.setup.panel
    assert panel is not None and fset.panel.exposure_s is not None
    exposure = fset.panel.exposure_s
    spec: SearchSpec = runner.spec(fset, bias, what="brightness")
    if not runner.check_reachable(cell, spec):
        return
    key = runner.memory_key(cell, "brightness")
    start = runner.memory.recall(key, exposure)
    retunes = 0
    while seq.done.get(cell.key, 0) < cell.count:
        try:
            result, measured = runner.run_search(
                cell, spec, start, lambda x: _lit_shot(runner, cell, round(x), exposure))
        except SearchFailed as err:
            runner.fail(cell, err)
            return
        brightness = round(result.x)
        runner.memory.remember(key, exposure, brightness, result.level)
        extra: dict[str, str | int | float | bool] = {"FLATSRC": "panel",
                                                      "PANELBRT": brightness}
        runner.keep_if_good(cell, spec, measured.shot, extra)
        while seq.done.get(cell.key, 0) < cell.count:
            shot = seq.shoot(cell, exposure)
            if runner.keep_if_good(cell, spec, shot, extra):
                continue
            retunes += 1
            if retunes > MAX_RETUNES:
                runner.fail(cell, f"the level kept drifting out of tolerance ({retunes} re-tunes)")
                return
            start = brightness
            break


def _lit_shot(runner: FlatRunner, cell: Cell, brightness: int, exposure: float) -> Shot:
    """Set the panel to ``brightness`` and take one frame at ``exposure``."""
    panel = runner.setup.panel
    assert panel is not None
    runner.device(lambda: panel.light(brightness, timeout_s=MOVE_TIMEOUT_S), cell)
    return runner.seq.shoot(cell, exposure)
