"""Flats and their dark flats inside a run.

The sequencer hands over the flat cells of one set-point; they are grouped by plan set and camera
settings, captured by the strategy of the set's ``source`` — the panel (:mod:`capture.flats.panel`)
or the twilight sky (:mod:`capture.flats.sky`) — and followed right away by dark flats with the
same exposure, gain and set-point (panel off, cover closed). Test frames of the exposure search
are not written; the search result is remembered for the next run.
"""

from __future__ import annotations

import itertools
import statistics
import threading
from collections.abc import Callable

from calibd.capture.devices import Setup
from calibd.capture.flats.ladder import capture_ladder_flats
from calibd.capture.flats.memory import FlatMemory
from calibd.capture.flats.panel import capture_panel_flats
from calibd.capture.flats.session import FlatSession
from calibd.capture.flats.session import flat_set_of
from calibd.capture.flats.sky import capture_sky_flats
from calibd.capture.plans.cells import Cell
from calibd.capture.plans.cells import flat_group
from calibd.capture.plans.model import FlatSet
from calibd.capture.sequencer.port import CapturePort
from calibd.drivers.clock import Clock

Strategy = Callable[[FlatSession, list[Cell], FlatSet], None]

# How the flats of a set are captured, by the set's ``source``.
STRATEGIES: dict[str, Strategy] = {
    "panel": capture_panel_flats,
    "sky": capture_sky_flats,
}


class FlatRunner:
    """Implements the sequencer's :class:`~capture.sequencer.port.FlatCapture` for one camera's
    accessories (``setup``: wheel, panel, site); ``clock``, ``stop`` and
    ``reconnect_timeout_s`` (clock seconds) bound its waits and accessory reconnects."""

    def __init__(self, setup: Setup, memory: FlatMemory, *, clock: Clock,
                 stop: threading.Event, reconnect_timeout_s: float) -> None:
        self.setup = setup
        self.memory = memory
        self.clock = clock
        self.stop = stop
        self.reconnect_timeout_s = reconnect_timeout_s

    def session(self, port: CapturePort) -> FlatSession:
        """What the panel and sky strategies work with while capturing through ``port``."""
        return FlatSession(port, self.setup, self.memory, self.clock, self.stop,
                           self.reconnect_timeout_s)

    # ----- FlatCapture ---------------------------------------------------------------------------
    def capture(self, port: CapturePort, cells: list[Cell]) -> None:
        """Capture these flat cells, group by group (set, settings, set-point), each group
        followed by its dark flats. Blocks (sky flats: until twilight). Raises RunPaused,
        LibraryError and CellFailed from the port."""
        session = self.session(port)
        for _, group_iter in itertools.groupby(sorted(cells, key=flat_group), key=flat_group):
            group = list(group_iter)
            fset = flat_set_of(group[0])
            strategy = capture_ladder_flats if group[0].ladder is not None \
                else STRATEGIES[fset.source]
            strategy(session, group, fset)
            self.dark_flats(session, group, fset)

    def pending_dark_flats(self, port: CapturePort, cells: list[Cell]) -> list[Cell]:
        """Dark-flat cells of groups whose flats are complete (an earlier session) but whose
        dark flats are not; the caller adds them to the run. Raises LibraryError."""
        out: list[Cell] = []
        flats = [c for c in cells if c.kind == "flat"]
        for _, group_iter in itertools.groupby(sorted(flats, key=flat_group), key=flat_group):
            group = list(group_iter)
            if any(port.done(c) < c.count for c in group):
                continue  # capture() will do them after the flats
            for dark in self.dark_flat_cells(port, group, flat_set_of(group[0])):
                if port.done(dark) < dark.count:
                    out.append(dark)
        return out

    def prepare_dark_flats(self, port: CapturePort, cell: Cell) -> None:
        """Panel off and cover closed, then the bias level at the cell's settings (the dark
        flats' light-leak reference). Blocks on the accessories; raises RunPaused."""
        self.session(port).darken(cell)
        if port.configure(cell):  # the bias frame below must use the cell's settings
            port.levels(cell)  # seeds the light-leak reference when nothing else gives one

    # ----- dark flats --------------------------------------------------------------------------
    def dark_flat_cells(self, port: CapturePort, group: list[Cell],
                        fset: FlatSet) -> list[Cell]:
        """Dark-flat cells for the exposures the group's flats were actually taken with (a
        sensor set's ladder: sensor cells too)."""
        if fset.dark_flats is None or fset.dark_flats.count is None:
            return []
        exposures: set[float] = set()
        for cell in group:
            values = port.kept_exposures(cell)
            if not values:
                continue
            if fset.source == "sky":  # exposures change frame to frame: their median
                exposures.add(round(statistics.median(values), 2))
            else:  # exactly the flats' exposures
                exposures.update(values)
        first = group[0]
        return [Cell(kind="darkflat", gain=first.gain, offset=first.offset,
                     binning=first.binning, readout_mode=first.readout_mode,
                     setpoint_c=first.setpoint_c, exposure_s=e, count=fset.dark_flats.count,
                     set_index=first.set_index, gain_label=first.gain_label,
                     sensor=first.sensor)
                for e in sorted(exposures)]

    def dark_flats(self, session: FlatSession, group: list[Cell], fset: FlatSet) -> None:
        """Capture the group's dark flats right after its flats (none when the set asks for
        none). Raises RunPaused, LibraryError."""
        cells = self.dark_flat_cells(session.port, group, fset)
        if cells:
            session.port.capture_dark_flats(cells)
