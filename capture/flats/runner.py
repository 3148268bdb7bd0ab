"""Flats and their dark flats inside a run.

The sequencer hands over the flat cells of one set-point; they are grouped by plan set and camera
settings, captured from the panel (:mod:`capture.flats.panel`) or the twilight sky
(:mod:`capture.flats.sky`), and followed right away by dark flats with the same exposure, gain and
set-point (panel off, cover closed). Test frames of the exposure search are not written; the
search result is remembered for the next run.
"""

from __future__ import annotations

import itertools
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from capture.devices import Setup
from capture.errors import RunPaused
from capture.flats.memory import FlatKey, FlatMemory, Mode
from capture.flats.search import SearchFailed, SearchResult, SearchSpec, search, within
from capture.plans.cells import Cell
from capture.plans.model import FlatSet
from capture.sequencer.checks import judge
from capture.sequencer.reconnect import until_available
from capture.sequencer.sequencer import Sequencer, Shot
from drivers.contracts import CoverState
from drivers.errors import DeviceError, NotSupported

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TARGET_ADU = 20000.0
MOVE_TIMEOUT_S = 120.0  # clock seconds for a wheel move, the panel settling, the cover


@dataclass
class Measured:
    """The last test frame of a search, kept when it landed within tolerance."""

    shot: Shot | None = None


class FlatRunner:
    """Implements the sequencer's FlatCapture protocol."""

    def __init__(self, seq: Sequencer, setup: Setup) -> None:
        self.seq = seq
        self.setup = setup
        self.memory = FlatMemory(seq.library.index)
        self.current_gain = 0

    # ----- FlatCapture ---------------------------------------------------------------------------
    def capture(self, cells: list[Cell]) -> None:
        from capture.flats.panel import capture_panel_flats
        from capture.flats.sky import capture_sky_flats

        for _, group_iter in itertools.groupby(sorted(cells, key=_group_key), key=_group_key):
            group = list(group_iter)
            fset = self.flat_set(group[0])
            if fset.source == "panel":
                capture_panel_flats(self, group, fset)
            else:
                capture_sky_flats(self, group, fset)
            self.dark_flats(group, fset)

    def pending_dark_flats(self, cells: list[Cell]) -> list[Cell]:
        out: list[Cell] = []
        flats = [c for c in cells if c.kind == "flat"]
        for _, group_iter in itertools.groupby(sorted(flats, key=_group_key), key=_group_key):
            group = list(group_iter)
            if any(self.seq.done.get(c.key, 0) < c.count for c in group):
                continue  # capture() will do them after the flats
            for dark in self.dark_flat_cells(group, self.flat_set(group[0])):
                if self.seq.done.get(dark.key, 0) < dark.count:
                    out.append(dark)
        if out:
            self.seq.add_cells(out)
        return out

    # ----- shared helpers ----------------------------------------------------------------------
    def flat_set(self, cell: Cell) -> FlatSet:
        fset = self.seq.plan.plan.sets[cell.set_index]
        assert isinstance(fset, FlatSet)
        return fset

    def target_adu(self, fset: FlatSet) -> float:
        if fset.target_adu is not None:
            return fset.target_adu
        if fset.target_fraction is not None:
            return fset.target_fraction * self.seq.saturation_adu()
        return DEFAULT_TARGET_ADU

    def spec(self, fset: FlatSet, bias: float, *, what: Mode = "exposure") -> SearchSpec:
        target = self.target_adu(fset)
        tol = target * fset.tolerance_pct / 100.0
        if what == "brightness":
            panel = self.setup.panel
            assert panel is not None
            return SearchSpec(target_adu=target, tolerance_adu=tol, x_min=1,
                              x_max=panel.max_brightness, bias_adu=bias,
                              saturation_adu=self.saturation_for(fset, bias), integer=True,
                              what="brightness", unit="")
        return SearchSpec(target_adu=target, tolerance_adu=tol, x_min=fset.min_exposure_s,
                          x_max=fset.max_exposure_s, bias_adu=bias,
                          saturation_adu=self.saturation_for(fset, bias))

    def saturation_for(self, fset: FlatSet, bias: float) -> float:
        """Where the sensor clips at this gain: the ADC's full scale, or the full well when the
        camera reports it (and its e-/ADU) and that comes first."""
        adc = float(self.seq.saturation_adu())
        full_well = self.seq.info.full_well_e
        egain = self.seq.electrons_per_adu.get(self.current_gain)
        if full_well and egain:
            return min(adc, bias + full_well / egain)
        return adc

    def check_reachable(self, cell: Cell, spec: SearchSpec) -> bool:
        """Fail the cell when the target sits above where the sensor saturates."""
        if spec.target_adu + spec.tolerance_adu < 0.98 * spec.saturation_adu:
            return True
        self.fail(cell, f"the sensor saturates at about {spec.saturation_adu:.0f} ADU at gain "
                        f"{cell.gain}, at or below the target {spec.target_adu:.0f} ADU: lower "
                        "the target or the gain")
        return False

    def memory_key(self, cell: Cell, mode: Mode) -> FlatKey:
        return FlatKey(camera=self.seq.name, filter=cell.filter or "", binning=cell.binning,
                       gain=cell.gain, offset=cell.offset, readout_mode=cell.readout_mode,
                       mode=mode)

    def bias_level(self, cell: Cell) -> float:
        """The bias level for the cell's settings: this run, the index, or one bias frame
        (always one frame when the camera's e-/ADU at this gain is still unknown)."""
        self.current_gain = cell.gain
        bias_cell = replace(cell, kind="bias", filter=None, exposure_s=0.0)
        level, _ = self.seq.refs.reference(bias_cell)
        if level is not None and cell.gain in self.seq.electrons_per_adu:
            return level
        known = self.seq.library.index.bias_level(cell.gain, cell.offset, cell.binning,
                                                  cell.readout_mode)
        if known is not None and cell.gain in self.seq.electrons_per_adu:
            self.seq.refs.seed_bias(bias_cell, known)
            return known
        shot = self.seq.shoot(bias_cell, self.seq.info.min_exposure_s)
        self.seq.refs.seed_bias(bias_cell, shot.stats.level_adu)
        self.seq.event("info", "bias-reference", f"bias level {shot.stats.level_adu:.1f} ADU "
                       "measured for the flat search (1 frame, not kept)", cell)
        return shot.stats.level_adu

    def select_filter(self, cell: Cell) -> None:
        wheel = self.setup.wheel
        if wheel is not None and cell.filter is not None:
            self.seq.update(message=f"filter {cell.filter}")
            self.device(lambda: wheel.select(cell.filter or "", timeout_s=MOVE_TIMEOUT_S), cell)

    def device(self, fn: Callable[[], T], cell: Cell) -> T:
        """Run an accessory command and return its result. An accessory that dropped off (its
        server restarted) is reconnected with back-off, bounded like the camera's reconnect,
        and the command tried again; any other failure pauses the run with the device's
        message. Raises RunPaused, NotSupported."""
        seq = self.seq
        try:
            return until_available(
                fn, clock=seq.clock, stop=seq.stop, timeout_s=seq.options.reconnect_timeout_s,
                gave_up=lambda err: f"{cell.describe()}: accessory unavailable: {err}",
                on_lost=lambda err: seq.event("warning", "device-lost",
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

    def last_exposure(self, cell: Cell) -> float | None:
        exposures = self.seq.library.index.cell_exposures(self.seq.run_handle.run_id, cell.key)
        return exposures[-1] if exposures else None

    def run_search(self, cell: Cell, spec: SearchSpec, start: float | None,
                   take: Callable[[float], Shot]) -> tuple[SearchResult, Measured]:
        """Search, keeping the last test frame; journals the number of test frames."""
        measured = Measured()

        def measure(x: float) -> float:
            measured.shot = take(x)
            return measured.shot.stats.level_adu

        result = search(spec, measure, start)
        origin = "remembered" if start is not None else "cold start"
        self.seq.event("info", "flat-search",
                       f"{cell.filter}: {spec.what} {spec.fmt(result.x)} gives "
                       f"{result.level:.0f} ADU after {result.frames} test frame(s) ({origin})",
                       cell, {"frames": result.frames, "x": result.x, "cold": start is None})
        return result, measured

    def keep_if_good(self, cell: Cell, spec: SearchSpec, shot: Shot | None,
                     extra: dict[str, str | int | float | bool]) -> bool:
        """Write ``shot`` as a flat of ``cell`` if its level and temperature are right."""
        if shot is None or self.seq.done.get(cell.key, 0) >= cell.count:
            return False
        if not within(spec, shot.stats.level_adu):
            self.seq.reject(cell, f"level {shot.stats.level_adu:.0f} ADU outside "
                                  f"{spec.target_adu:.0f} ± {spec.tolerance_adu:.0f} ADU",
                            "flat-level", shot.stats)
            return False
        verdict = judge(shot.frame, shot.stats, cell, self.seq.plan.plan.cooling,
                        self.seq.plan.plan.checks, self.seq.refs)
        if not verdict.ok:
            self.seq.reject(cell, verdict.reason, verdict.kind, shot.stats)
            return False
        self.seq.keep(shot, cell, {**extra, "FLATTGT": round(spec.target_adu, 1)})
        return True

    def fail(self, cell: Cell, err: SearchFailed | str) -> None:
        if isinstance(err, SearchFailed):
            self.seq.fail_cell(cell, f"{cell.filter}: {err} (search stopped after {err.frames} "
                                     "test frame(s))")
        else:
            self.seq.fail_cell(cell, f"{cell.filter}: {err}")

    # ----- dark flats --------------------------------------------------------------------------
    def dark_flat_cells(self, group: list[Cell], fset: FlatSet) -> list[Cell]:
        """Dark-flat cells for the exposures the group's flats were actually taken with."""
        if fset.dark_flats is None or fset.dark_flats.count is None:
            return []
        index = self.seq.library.index
        exposures: set[float] = set()
        for cell in group:
            values = index.cell_exposures(self.seq.run_handle.run_id, cell.key)
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
                     set_index=first.set_index, gain_label=first.gain_label)
                for e in sorted(exposures)]

    def dark_flats(self, group: list[Cell], fset: FlatSet) -> None:
        self.seq.writer.flush()  # the flats' exposures are read back from the index
        cells = self.dark_flat_cells(group, fset)
        if not cells:
            return
        self.seq.add_cells(cells)
        self.prepare_dark_flats(cells[0])
        for cell in cells:
            self.seq.capture_fixed(cell)

    def prepare_dark_flats(self, cell: Cell) -> None:
        self.darken(cell)
        if self.seq.configure(cell):  # the bias frame below must use the cell's settings
            self.bias_level(cell)  # seeds the light-leak reference when nothing else gives one

    def darken(self, cell: Cell) -> None:
        """Panel off and cover closed: no light for dark flats."""
        panel = self.setup.panel
        if panel is None:
            return
        self.device(lambda: panel.off(timeout_s=MOVE_TIMEOUT_S), cell)
        if panel.has_cover and self.device(panel.cover_state, cell) != CoverState.CLOSED:
            self.device(lambda: panel.close_cover(timeout_s=MOVE_TIMEOUT_S), cell)


def _group_key(cell: Cell) -> tuple[int, int, int, int, str, float]:
    """Flats captured together and sharing dark flats: one set, settings and set-point."""
    return (cell.set_index, cell.gain, cell.offset, cell.binning, cell.readout_mode,
            cell.setpoint_c)
