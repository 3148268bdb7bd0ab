"""Panel flats: per filter, find the exposure at a fixed brightness (mode ``exposure``) or the
brightness at one fixed exposure for every filter (mode ``brightness``: one set of dark flats
serves all filters), then take the frames, checking each one and re-tuning when a frame leaves
the tolerance."""

from __future__ import annotations

from collections.abc import Callable

from calibd.capture.flats.memory import FlatKey
from calibd.capture.flats.search import SearchFailed
from calibd.capture.flats.search import SearchSpec
from calibd.capture.flats.session import MOVE_TIMEOUT_S
from calibd.capture.flats.session import FlatSession
from calibd.capture.plans.cells import Cell
from calibd.capture.plans.model import FlatSet
from calibd.capture.sequencer.port import Extra
from calibd.capture.sequencer.port import Levels
from calibd.capture.sequencer.port import Shot
from calibd.drivers.contracts import CoverState

MAX_RETUNES = 3  # a cell whose frames leave the tolerance more often than this fails


def capture_panel_flats(session: FlatSession, cells: list[Cell], fset: FlatSet) -> None:
    """Capture the panel flats of one group (same set and settings). Blocks; raises RunPaused,
    ValueError (no flat panel: the plan check refuses such a plan before a run)."""
    panel, wheel = session.setup.panel, session.setup.wheel
    if panel is None:
        raise ValueError("panel flats without a flat panel")
    todo = session.todo(cells)
    if not todo:
        return
    if wheel is not None:  # wheel order: fewest moves
        todo.sort(key=lambda c: wheel.names.index(c.filter) if c.filter in wheel.names else 0)
    first = todo[0]
    session.move_cover(CoverState.CLOSED, first)
    mode = fset.panel.mode
    brightness = fset.panel.brightness if fset.panel.brightness is not None \
        else max(1, panel.max_brightness // 2)
    if mode == "exposure":
        if brightness > panel.max_brightness:
            for cell in todo:
                session.fail(cell, f"panel brightness {brightness} above the panel's maximum "
                                  f"{panel.max_brightness}")
            return
        session.device(lambda: panel.light(brightness, timeout_s=MOVE_TIMEOUT_S), first)
    try:
        for cell in todo:
            levels = session.start_cell(cell, "flats")
            if levels is None:
                continue
            if mode == "exposure":
                _exposure_mode(session, cell, fset, levels, brightness)
            else:
                _brightness_mode(session, cell, fset, levels)
    finally:
        session.device(lambda: panel.off(timeout_s=MOVE_TIMEOUT_S), first)


def _exposure_mode(session: FlatSession, cell: Cell, fset: FlatSet, levels: Levels,
                   brightness: int) -> None:
    """Search the exposure at a fixed panel brightness."""
    spec = session.spec(fset, levels)
    key = session.memory_key(cell, "exposure")
    start = session.last_exposure(cell) or session.memory.recall(key, brightness)
    _fill(session, cell, spec, key, fixed=brightness, start=start,
          take=lambda x: session.port.shoot(cell, x), exposure_of=lambda x: x,
          brightness_of=lambda x: brightness)


def _brightness_mode(session: FlatSession, cell: Cell, fset: FlatSet, levels: Levels) -> None:
    """Search the panel brightness at the set's one fixed exposure."""
    exposure = fset.panel.exposure_s
    if exposure is None:  # the plan check refuses this before a run
        raise ValueError("panel mode 'brightness' needs panel.exposure_s")
    spec = session.spec(fset, levels, what="brightness")
    key = session.memory_key(cell, "brightness")
    _fill(session, cell, spec, key, fixed=exposure, start=session.memory.recall(key, exposure),
          take=lambda x: _lit_shot(session, cell, round(x), exposure),
          exposure_of=lambda x: exposure, brightness_of=round)


def _fill(session: FlatSession, cell: Cell, spec: SearchSpec, key: FlatKey, *, fixed: float,
          start: float | None, take: Callable[[float], Shot],
          exposure_of: Callable[[float], float], brightness_of: Callable[[float], int]) -> None:
    """Search ``x`` (exposure or brightness), remember it, then take the cell's flats at it;
    a flat out of tolerance is discarded and the search runs again from where it was (at most
    MAX_RETUNES times). The last test frame of a search counts when it is good."""
    port = session.port
    if not session.check_reachable(cell, spec):
        return
    retunes = 0
    while port.done(cell) < cell.count:
        try:
            result, measured = session.run_search(cell, spec, start, take)
        except SearchFailed as err:
            session.fail(cell, err)
            return
        if measured.shot is not None:
            problem = session.colour_problem(cell, spec, measured.shot)
            if problem is not None:  # the brightest channel is at the target: no way out
                session.fail(cell, f"at {spec.fmt(result.x)}: {problem}")
                return
        session.memory.remember(key, fixed, result.x, result.level)
        extra: Extra = {"FLATSRC": "panel", "PANELBRT": brightness_of(result.x)}
        session.keep_if_good(cell, spec, measured.shot, extra)
        exposure = exposure_of(result.x)
        while port.done(cell) < cell.count:
            if session.keep_if_good(cell, spec, port.shoot(cell, exposure), extra):
                continue
            retunes += 1  # rejected (and journalled): tune again from where we are
            if retunes > MAX_RETUNES:
                session.fail(cell, f"the level kept drifting out of tolerance ({retunes} re-tunes)")
                return
            start = result.x
            break


def _lit_shot(session: FlatSession, cell: Cell, brightness: int, exposure: float) -> Shot:
    """Set the panel to ``brightness`` and take one frame at ``exposure``."""
    panel = session.setup.panel
    if panel is None:
        raise ValueError("panel flats without a flat panel")
    session.device(lambda: panel.light(brightness, timeout_s=MOVE_TIMEOUT_S), cell)
    return session.port.shoot(cell, exposure)
