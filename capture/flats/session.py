"""What the panel and sky procedures share: the capture port, the accessories with their
reconnects, the exposure search with its remembered results, and the flat-level check.

A :class:`FlatSession` lives for one hand-over of flat cells from the sequencer; it knows the
sequencer only through :class:`~capture.sequencer.port.CapturePort`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from calibd.capture.devices import Setup
from calibd.capture.errors import RunPaused
from calibd.capture.flats import channels
from calibd.capture.flats.memory import FlatKey
from calibd.capture.flats.memory import FlatMemory
from calibd.capture.flats.memory import Mode
from calibd.capture.flats.search import SearchFailed
from calibd.capture.flats.search import SearchResult
from calibd.capture.flats.search import SearchSpec
from calibd.capture.flats.search import search
from calibd.capture.flats.search import within
from calibd.capture.plans.cells import Cell
from calibd.capture.plans.model import FlatSet
from calibd.capture.sequencer.port import CapturePort
from calibd.capture.sequencer.port import Extra
from calibd.capture.sequencer.port import Levels
from calibd.capture.sequencer.port import Shot
from calibd.capture.sequencer.reconnect import until_available
from calibd.drivers.clock import Clock
from calibd.drivers.contracts import CoverState
from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import NotSupported

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TARGET_ADU = 20000.0
MOVE_TIMEOUT_S = 120.0  # clock seconds for a wheel move, the panel settling, the cover


def flat_set_of(cell: Cell) -> FlatSet:
    """The settings of the set a flat cell came from. Raises ValueError for other cells."""
    if cell.flat_set is None:
        raise ValueError(f"{cell.describe()} carries no flat-set settings")
    return cell.flat_set


@dataclass
class Measured:
    """The last test frame of a search, kept when it landed within tolerance."""

    shot: Shot | None = None


@dataclass(frozen=True)
class FlatSession:
    """One hand-over of flat cells: the port to capture through and the devices to use."""

    port: CapturePort
    setup: Setup
    memory: FlatMemory
    clock: Clock
    stop: threading.Event
    reconnect_timeout_s: float  # clock seconds an accessory may stay away

    # ----- the search ------------------------------------------------------------------------
    def spec(self, fset: FlatSet, levels: Levels, *, what: Mode = "exposure") -> SearchSpec:
        target = target_adu(fset, levels)
        tol = target * fset.tolerance_pct / 100.0
        if what == "brightness":
            panel = self.setup.panel
            if panel is None:
                raise ValueError("panel mode 'brightness' without a flat panel")
            return SearchSpec(target_adu=target, tolerance_adu=tol, x_min=1,
                              x_max=panel.max_brightness, bias_adu=levels.bias_adu,
                              saturation_adu=levels.saturation_adu, integer=True,
                              what="brightness", unit="")
        return SearchSpec(target_adu=target, tolerance_adu=tol, x_min=fset.min_exposure_s,
                          x_max=fset.max_exposure_s, bias_adu=levels.bias_adu,
                          saturation_adu=levels.saturation_adu)

    def check_reachable(self, cell: Cell, spec: SearchSpec) -> bool:
        """Fail the cell when the target sits above where the sensor saturates."""
        if spec.target_adu + spec.tolerance_adu < 0.98 * spec.saturation_adu:
            return True
        self.fail(cell, f"the sensor saturates at about {spec.saturation_adu:.0f} ADU at gain "
                        f"{cell.gain}, at or below the target {spec.target_adu:.0f} ADU: lower "
                        "the target or the gain")
        return False

    def memory_key(self, cell: Cell, mode: Mode) -> FlatKey:
        return FlatKey(camera=self.setup.name, filter=cell.filter or "", binning=cell.binning,
                       gain=cell.gain, offset=cell.offset, readout_mode=cell.readout_mode,
                       mode=mode)

    def last_exposure(self, cell: Cell) -> float | None:
        """The exposure of the cell's newest frame in this run (a resumed cell starts there)."""
        exposures = self.port.kept_exposures(cell)
        return exposures[-1] if exposures else None

    def run_search(self, cell: Cell, spec: SearchSpec, start: float | None,
                   take: Callable[[float], Shot]) -> tuple[SearchResult, Measured]:
        """Search, keeping the last test frame; journals the number of test frames."""
        measured = Measured()

        def measure(x: float) -> float:
            measured.shot = take(x)
            return flat_level(measured.shot, spec)

        result = search(spec, measure, start)
        origin = "remembered" if start is not None else "cold start"
        data: dict[str, object] = {"frames": result.frames, "x": result.x,
                                   "cold": start is None}
        colour = ""
        if measured.shot is not None and measured.shot.pattern is not None:
            found = channel_levels(measured.shot, spec)
            data["channels_adu"] = {n: round(v - spec.bias_adu, 1)
                                    for n, v in found.levels.items()}
            colour = f" in {found.brightest[0]} ({found.describe(spec.bias_adu)})"
        self.port.event("info", "flat-search",
                        f"{cell.filter}: {spec.what} {spec.fmt(result.x)} gives "
                        f"{result.level:.0f} ADU{colour} after {result.frames} test frame(s) "
                        f"({origin})", cell, data)
        return result, measured

    def keep_if_good(self, cell: Cell, spec: SearchSpec, shot: Shot | None,
                     extra: Extra) -> bool:
        """Write ``shot`` as a flat of ``cell`` if its level and temperature are right and, on
        a colour sensor, no channel clips and the weakest reaches the set's floor; the four
        channel levels go into its header."""
        if shot is None or self.port.done(cell) >= cell.count:
            return False
        level = flat_level(shot, spec)
        if not within(spec, level):
            what = "level" if shot.pattern is None else "brightest channel at"
            self.port.reject(cell, f"{what} {level:.0f} ADU outside "
                                   f"{spec.target_adu:.0f} ± {spec.tolerance_adu:.0f} ADU",
                             "flat-level", shot.stats)
            return False
        cards: Extra = {**extra, "FLATTGT": round(spec.target_adu, 1)}
        if shot.pattern is not None:
            found = channel_levels(shot, spec)
            problem = self.colour_problem(cell, spec, shot)
            if problem is not None:
                self.port.reject(cell, problem, "flat-channels", shot.stats)
                return False
            cards.update(found.header())
            cards["FLATBIAS"] = round(spec.bias_adu, 1)
        return self.port.keep(shot, cell, cards)

    def colour_problem(self, cell: Cell, spec: SearchSpec, shot: Shot) -> str | None:
        """Why a colour flat must not be kept (a channel clips, the weakest is below the set's
        floor), or None; always None for a mono frame."""
        if shot.pattern is None:
            return None
        return channels.colour_problem(channel_levels(shot, spec), bias_adu=spec.bias_adu,
                                       floor_adu=flat_set_of(cell).min_channel_adu)

    def fail(self, cell: Cell, err: SearchFailed | str) -> None:
        if isinstance(err, SearchFailed):
            self.port.fail_cell(cell, f"{cell.filter}: {err} (search stopped after "
                                      f"{err.frames} test frame(s))")
        else:
            self.port.fail_cell(cell, f"{cell.filter}: {err}")

    # ----- the cells ---------------------------------------------------------------------------
    def todo(self, cells: list[Cell]) -> list[Cell]:
        """The cells still short of their count, in the given order."""
        return [c for c in cells if self.port.done(c) < c.count]

    def start_cell(self, cell: Cell, what: str) -> Levels | None:
        """Apply the cell's settings, move its filter in and show ``what`` (e.g. ``"flats"``)
        with the filter as progress; then the levels at those settings. None when the camera
        refused the settings (the cell is failed). Blocks; raises RunPaused, NotSupported."""
        if not self.port.configure(cell):
            return None
        self.select_filter(cell)
        self.port.progress(f"{what} {cell.filter}", phase="exposing", cell=cell)
        return self.port.levels(cell)

    # ----- accessories -----------------------------------------------------------------------
    def select_filter(self, cell: Cell) -> None:
        wheel = self.setup.wheel
        if wheel is not None and cell.filter is not None:
            self.port.progress(f"filter {cell.filter}")
            self.device(lambda: wheel.select(cell.filter or "", timeout_s=MOVE_TIMEOUT_S), cell)

    def darken(self, cell: Cell) -> None:
        """Panel off and cover closed: no light for dark flats."""
        panel = self.setup.panel
        if panel is None:
            return
        self.device(lambda: panel.off(timeout_s=MOVE_TIMEOUT_S), cell)
        self.move_cover(CoverState.CLOSED, cell)

    def move_cover(self, want: CoverState, cell: Cell) -> None:
        """Open (``CoverState.OPEN``) or close the panel's cover unless it already is; nothing
        without a panel or a cover. Blocks up to MOVE_TIMEOUT_S clock seconds per command."""
        panel = self.setup.panel
        if panel is None or not panel.has_cover or self.device(panel.cover_state, cell) == want:
            return
        move = panel.open_cover if want == CoverState.OPEN else panel.close_cover
        self.device(lambda: move(timeout_s=MOVE_TIMEOUT_S), cell)

    def device(self, fn: Callable[[], T], cell: Cell) -> T:
        """Run an accessory command and return its result. An accessory that dropped off (its
        server restarted) is reconnected with back-off, bounded like the camera's reconnect,
        and the command tried again; any other failure pauses the run with the device's
        message. Raises RunPaused, NotSupported."""
        try:
            return until_available(
                fn, clock=self.clock, stop=self.stop, timeout_s=self.reconnect_timeout_s,
                gave_up=lambda err: f"{cell.describe()}: accessory unavailable: {err}",
                on_lost=lambda err: self.port.event("warning", "device-lost",
                                                    f"accessory unavailable: {err}", cell),
                between=self._reconnect_accessories)
        except NotSupported:
            raise
        except DeviceError as err:
            raise RunPaused(f"{cell.describe()}: accessory failed: {err}") from err

    def _reconnect_accessories(self) -> None:
        for dev in (self.setup.wheel, self.setup.panel):
            if dev is None:
                continue
            dev.disconnect()
            try:
                dev.connect()
            except DeviceError as err:
                log.info("accessory still unavailable: %s", err)

    # ----- waiting ---------------------------------------------------------------------------
    def wait(self, seconds: float, message: str) -> None:
        """Wait ``seconds`` clock seconds showing ``message``. Raises RunPaused on stop."""
        self.port.progress(message)
        if self.clock.wait(self.stop, seconds):
            raise RunPaused("stop requested while waiting for the sky")

    def wait_until(self, when: datetime, message: str) -> None:
        """Wait until ``when`` (UTC) showing ``message``. Raises RunPaused on stop."""
        self.port.progress(message, phase="waiting")
        while True:
            left = (when - self.clock.now()).total_seconds()
            if left <= 0:
                return
            if self.clock.wait(self.stop, min(left, 600.0)):
                raise RunPaused("stop requested while waiting for twilight")


def channel_levels(shot: Shot, spec: SearchSpec) -> channels.ChannelLevels:
    """The four CFA channel levels of a colour shot (raw ADU). Raises ValueError for a mono
    shot."""
    if shot.pattern is None:
        raise ValueError("a mono frame has no CFA channels")
    return channels.measure(shot.frame.data, shot.pattern, spec.saturation_adu)


def flat_level(shot: Shot, spec: SearchSpec) -> float:
    """The level a flat is aimed and judged by (raw ADU): the central median of a mono frame,
    the brightest CFA channel's of a colour mosaic (the one that clips first)."""
    if shot.pattern is None:
        return shot.stats.level_adu
    return channel_levels(shot, spec).brightest[1]


def target_adu(fset: FlatSet, levels: Levels) -> float:
    """The median level wanted (ADU): the set's, a fraction of the ADC's full scale, or 20000."""
    if fset.target_adu is not None:
        return fset.target_adu
    if fset.target_fraction is not None:
        return fset.target_fraction * levels.full_scale_adu
    return DEFAULT_TARGET_ADU
