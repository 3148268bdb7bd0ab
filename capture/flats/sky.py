"""Sky flats in the twilight window.

Wait for the window (sun between the plan's two altitudes, computed offline), open the cover, then
take filters in order of the light they need — at dusk the narrowband filters first while the sky
is brightest, at dawn the reverse — and predict every exposure from the frames so far
(:mod:`capture.flats.skymodel`). A filter stops when its count is reached, when its exposure
leaves the allowed range for good (dusk: too dark; dawn: too bright), or when the window closes.
How many flats each filter got is journalled; short cells are marked skipped with the reason.

With a mount and/or dome (:mod:`capture.flats.observatory`) the observatory is opened before the
window (a failure fails the set with the reason), the mount follows the flat spot between frames
(tracking off, or offsets), and everything is closed and parked at the end — or as soon as the
safety monitor says unsafe, the remaining filters then skipped for the next window.
"""

from __future__ import annotations

import math
from datetime import timedelta

from calibd.capture.flats.filters import relative_throughput
from calibd.capture.flats.observatory import FlatObservatory
from calibd.capture.flats.observatory import Unsafe
from calibd.capture.flats.search import within
from calibd.capture.flats.session import MOVE_TIMEOUT_S
from calibd.capture.flats.session import FlatSession
from calibd.capture.flats.session import flat_level
from calibd.capture.flats.skymodel import SkyModel
from calibd.capture.plans.cells import Cell
from calibd.capture.plans.model import FlatSet
from calibd.capture.sequencer.port import Extra
from calibd.capture.sequencer.port import Levels
from calibd.capture.site import Site
from calibd.capture.site import Window
from calibd.capture.site import next_window
from calibd.capture.site import sun_altitude_deg
from calibd.capture.site import sun_rate_deg_per_s
from calibd.drivers.contracts import CoverState

WAIT_STEP_S = 30.0  # re-check the sky this often while waiting for it to change
MAX_CONSECUTIVE_REJECTS = 8


def capture_sky_flats(session: FlatSession, cells: list[Cell], fset: FlatSet) -> None:
    """Capture the sky flats of one group. Blocks until done or the window closes. Raises
    RunPaused, ValueError (no site: the plan check refuses such a plan before a run)."""
    port, panel, site = session.port, session.setup.panel, session.setup.site
    if site is None:
        raise ValueError("sky flats without the site")
    todo = session.todo(cells)
    if not todo:
        return
    bright, dark = fset.sky.sun_altitude_deg
    window = next_window(site, session.clock.now(), fset.sky.twilight, bright, dark)
    if window is None:
        for cell in todo:
            port.fail_cell(cell, "no twilight window with the sun between "
                                f"{bright:g}° and {dark:g}° in the next 36 h at this site",
                          state="skipped")
        return
    first = todo[0]
    setup = session.setup
    obs = FlatObservatory(setup.mount, setup.dome, setup.safety, site, fset.sky.pointing,
                          session.clock, port)
    ready = window.opens - timedelta(seconds=fset.sky.pointing.open_timeout_s
                                     if obs.active else 0.0)
    session.wait_until(ready, f"waiting for {window.kind}: the sun reaches "
                f"{bright if window.kind == 'dusk' else dark:g}° at "
                f"{window.opens:%Y-%m-%d %H:%M} UTC")
    if obs.active:
        why = obs.open(first)
        if why is not None:
            for cell in todo:
                port.fail_cell(cell, why)
            return
        session.wait_until(window.opens, f"observatory open, waiting for {window.kind}")
    if panel is not None:
        session.device(lambda: panel.off(timeout_s=MOVE_TIMEOUT_S), first)
        session.move_cover(CoverState.OPEN, first)
    ascending = window.kind == "dusk"  # dusk: the filters that need most light first
    todo.sort(key=lambda c: relative_throughput(c.filter), reverse=not ascending)
    counts: dict[str, int] = {}
    previous: tuple[float, float] | None = None  # (throughput, rate at the end) of last filter
    unsafe = False
    try:
        for cell in todo:
            if unsafe:
                port.fail_cell(cell, "unsafe: the observatory was closed; the next window "
                               "resumes", state="skipped")
                continue
            if session.clock.now() >= window.closes:
                port.fail_cell(cell, f"the {window.kind} window closed before this filter",
                              state="skipped")
                continue
            levels = session.start_cell(cell, "sky flats")
            if levels is None:
                continue
            try:
                previous = _one_filter(session, cell, fset, site, window, levels, previous,
                                       obs)
            except Unsafe:
                unsafe = True
                port.fail_cell(cell, f"unsafe after {port.done(cell)} of {cell.count} flats: "
                               "the observatory was closed; the next window resumes",
                               state="skipped")
            counts[cell.filter or ""] = port.done(cell)
    finally:
        if panel is not None and panel.has_cover:
            session.device(lambda: panel.close_cover(timeout_s=MOVE_TIMEOUT_S), first)
        if obs.active and not obs.secured:
            obs.secure(first)
    port.event("info", "sky-flats", f"{window.kind} flats: " + ", ".join(
        f"{name} {n}" for name, n in counts.items()), first, {"counts": counts})


def _one_filter(session: FlatSession, cell: Cell, fset: FlatSet, site: Site, window: Window,
                levels: Levels, previous: tuple[float, float] | None,
                obs: FlatObservatory) -> tuple[float, float] | None:
    port, clock = session.port, session.clock
    bias = levels.bias_adu
    spec = session.spec(fset, levels)
    if not session.check_reachable(cell, spec):
        return previous
    signal_wanted = spec.target_adu - bias
    model = SkyModel(fallback_beta=SkyModel.beta_from_sun(sun_rate_deg_per_s(site, clock.now())))
    throughput = relative_throughput(cell.filter)
    guess: float | None = None
    if previous is not None:
        prev_throughput, prev_rate = previous
        guess = signal_wanted / (prev_rate * throughput / prev_throughput)
    rejects = 0
    dusk = window.kind == "dusk"
    while port.done(cell) < cell.count:
        now = clock.now()
        if now >= window.closes:
            return _stop(session, cell, f"the {window.kind} window closed", model, throughput)
        if obs.active:
            # Weather, re-point, offset: before the prediction, so the time the model learns
            # from is when the exposure starts, not before a slew (at dawn a slew-late start
            # taught it a sky brighter than it was, and every frame came out short).
            obs.before_frame(cell)
        start_t = clock.monotonic()
        predicted = model.exposure_for(signal_wanted, start_t)
        if predicted is None:
            predicted = guess if guess is not None else math.sqrt(fset.min_exposure_s *
                                                                   fset.max_exposure_s)
        too_dark = predicted > fset.max_exposure_s
        if too_dark or predicted < fset.min_exposure_s:
            sky, cmp, limit, later = (("dark", ">", fset.max_exposure_s, "dawn sky to brighten")
                                      if too_dark else
                                      ("bright", "<", fset.min_exposure_s, "dusk sky to dim"))
            if too_dark == dusk:  # the twilight only moves the sky further out of range
                return _stop(session, cell, f"the sky is too {sky} for {cell.filter} (needs "
                                           f"{predicted:.3g} s {cmp} {limit:g} s)",
                             model, throughput)
            session.wait(WAIT_STEP_S, f"waiting for the {later}")
            # What the model measured stays: it carries the sky through the wait (at the sun's
            # rate), so the next frame is shot once the sky is in range, not at the limit
            # while it is still too bright or dark (each such frame a reject towards giving up).
            if not model.samples:
                guess = limit
            continue
        shot = port.shoot(cell, predicted)
        level = flat_level(shot, spec)  # colour: the brightest channel
        signal = level - bias
        saturated = level >= 0.98 * spec.saturation_adu
        if saturated:
            model.samples.clear()
            guess = predicted / 10.0
        elif signal > spec.min_signal_adu:
            model.add(start_t, predicted, signal)
        else:
            guess = predicted * 10.0
        alt = sun_altitude_deg(site, shot.frame.start_utc)
        extra: Extra = {"FLATSRC": "sky", "SUNALT": round(alt, 2)}
        if session.keep_if_good(cell, spec, shot, extra):
            rejects = 0
        else:
            rejects += 1
            # At the target level a colour sensor's frame may still be refused for the sky's
            # colour (a channel below the floor); the twilight may change it, so go on.
            colour = session.colour_problem(cell, spec, shot) if within(spec, level) else None
            if rejects > MAX_CONSECUTIVE_REJECTS:
                why = f"refused; the last: {colour}" if colour else "out of tolerance"
                return _stop(session, cell, f"could not follow the sky ({rejects} frames in a "
                                           f"row {why})", model, throughput)
    rate = model.rate_at(clock.monotonic())
    return (throughput, rate) if rate is not None else None


def _stop(session: FlatSession, cell: Cell, why: str, model: SkyModel, throughput: float
          ) -> tuple[float, float] | None:
    got = session.port.done(cell)
    session.port.fail_cell(cell, f"{why}: {got} of {cell.count} flats", state="skipped")
    rate = model.rate_at(session.clock.monotonic())
    return (throughput, rate) if rate is not None else None
