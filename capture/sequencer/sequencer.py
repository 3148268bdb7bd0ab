"""The sequencer: cools, captures, checks and hands frames to the writer, cell after cell.

It decides; the camera acquires; the writer writes. Recovery policy keys on the error class:

* ``ExposureFailed`` / ``ExposureTimeout``: abort, back off, retake (bounded; then pause the run).
* ``DeviceUnavailable``: reconnect with back-off, re-apply settings and set-point, re-settle the
  cooler, retake the frame; if the camera stays away past the deadline (from the first failure,
  failures after a reconnect that seemed to work included) the run pauses.
* ``SettingRejected`` while configuring a cell: that cell fails with the device's message.
* a rejected frame (temperature drift, light leak): recorded in the journal and retaken.

Every wait is bounded and interruptible through the ``stop`` event.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Literal
from typing import TypeVar

from calibd.capture import cfa
from calibd.capture.errors import CoolingTimeout
from calibd.capture.errors import LibraryError
from calibd.capture.errors import RunPaused
from calibd.capture.library.fitsio import FrameContext
from calibd.capture.library.library import Library
from calibd.capture.library.library import RunHandle
from calibd.capture.library.writer import FrameWriter
from calibd.capture.library.writer import WriteJob
from calibd.capture.plans.cells import Cell
from calibd.capture.plans.cells import flat_group
from calibd.capture.plans.cells import run_order
from calibd.capture.plans.estimate import expected_dark_flats
from calibd.capture.plans.estimate import flat_exposure_guess
from calibd.capture.plans.resolve import ResolvedPlan
from calibd.capture.sequencer.checks import DarkReference
from calibd.capture.sequencer.checks import FrameStats
from calibd.capture.sequencer.checks import frame_stats
from calibd.capture.sequencer.checks import judge
from calibd.capture.sequencer.checks import settings_mismatch
from calibd.capture.sequencer.cooling import CoolerController
from calibd.capture.sequencer.cooling import SettleResult
from calibd.capture.sequencer.port import CellFailed
from calibd.capture.sequencer.port import Extra
from calibd.capture.sequencer.port import FlatCapture
from calibd.capture.sequencer.port import Levels
from calibd.capture.sequencer.port import Shot
from calibd.capture.sequencer.reconnect import until_available
from calibd.capture.sequencer.status import Reporter
from calibd.capture.sequencer.status import RunStatus
from calibd.capture.sequencer.status import no_report
from calibd.drivers.clock import Clock
from calibd.drivers.contracts import Camera
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import CoolerState
from calibd.drivers.contracts import Frame
from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import SettingRejected

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SequencerOptions:
    reconnect_timeout_s: float = 900.0  # clock seconds a camera may stay away before pausing
    stop_policy: Literal["abort", "finish"] = "abort"  # on stop: abort the exposure or finish it
    warm_up_on_stop: bool = False
    write_queue: int = 3  # frames handed to the writer and not yet written, at most
    write_queue_mb: float = 64.0  # ... and their image bytes (one frame is always accepted)
    fsync: bool = True
    min_free_mb: float = 512.0


@dataclass
class RunResult:
    run_id: int
    complete: bool
    frames_written: int
    rejected: int
    skipped: list[str] = field(default_factory=list)  # "cell: reason"
    failed: list[str] = field(default_factory=list)
    writer_busy_s: float = 0.0  # real seconds the writer spent writing

    @property
    def summary(self) -> str:
        text = f"run {self.run_id}: {self.frames_written} frame(s) written this session"
        if self.rejected:
            text += f", {self.rejected} rejected and retaken"
        if self.skipped:
            text += f", {len(self.skipped)} cell(s) skipped"
        if self.failed:
            text += f", {len(self.failed)} cell(s) failed"
        return text + (": complete" if self.complete else ": not complete")


class Sequencer:
    """Runs one resolved plan on one camera into one library. Not reusable.

    Implements :class:`~capture.sequencer.port.CapturePort` for the flats runner (``flats``);
    ``on_cell_complete`` is called when a cell reaches its count (e.g. to build its master)."""

    def __init__(
        self,
        *,
        camera: Camera,
        camera_name: str,
        clock: Clock,
        library: Library,
        plan: ResolvedPlan,
        run: RunHandle,
        stop: threading.Event | None = None,
        reporter: Reporter = no_report,
        options: SequencerOptions | None = None,
        ambient_c: float | None = None,
        flats: FlatCapture | None = None,
        on_cell_complete: Callable[[Cell], None] | None = None,
    ) -> None:
        self.camera = camera
        self.name = camera_name
        self.clock = clock
        self.library = library
        self.plan = plan
        self.policy = plan.policy
        self.run_handle = run
        self.stop = stop or threading.Event()
        self.reporter = reporter
        self.options = options or SequencerOptions()
        self.ambient_c = ambient_c
        self.info = camera.info
        self.cooler = CoolerController(camera, clock, self.policy.cooling, self.stop,
                                       self._on_cooler)
        self.refs = DarkReference()
        self._done: dict[str, int] = {k: n for k, (n, _) in run.done.items()}
        self.next_seq: dict[str, int] = {k: top + 1 for k, (_, top) in run.done.items()}
        self.status = RunStatus(plan=plan.name, camera=camera_name, run_id=run.run_id,
                                frames_total=plan.frames,
                                frames_done=sum(min(self._done.get(c.key, 0), c.count)
                                                for c in plan.cells))
        self._result = RunResult(run.run_id, False, 0, 0)
        self._frame_overhead_s = self.info.readout_s
        self._exposures: dict[str, float] = {}  # cell key -> exposure of its last kept frame
        self._status_lock = threading.Lock()
        self._writer: FrameWriter | None = None
        self.extra_cells: list[Cell] = []  # decided at run time (dark flats)
        self.electrons_per_adu: dict[int, float] = {}  # per gain, as the camera reported
        self.flats = flats
        self.on_cell_complete = on_cell_complete
        self._seed_bias_references()

    # ----- public ----------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Capture every pending frame. Blocks for the whole run.

        Returns the result (complete or with skipped/failed cells). Raises RunPaused (stop
        requested, camera gone, repeated failures), CoolingTimeout (policy abort), LibraryError.
        """
        index = self.library.index
        run_id = self.run_handle.run_id
        writer = FrameWriter(index, queue_size=self.options.write_queue,
                             max_bytes=int(self.options.write_queue_mb * 2**20),
                             fsync=self.options.fsync, on_written=self._on_written)
        self._writer = writer
        try:
            try:
                pending = [c for c in self.plan.cells if self.done(c) < c.count]
                if self.flats is not None:
                    resumed = self.flats.pending_dark_flats(self, self.plan.cells)
                    self.add_cells(resumed)
                    pending = run_order(pending + resumed)
                self.update(phase="starting", message=f"{len(pending)} cell(s) to capture")
                for setpoint, group in itertools.groupby(pending, key=lambda c: c.setpoint_c):
                    cells = list(group)
                    if not self._settle_for(setpoint, cells):
                        continue
                    flat_cells = [c for c in cells if c.kind == "flat"]
                    # Dark flats here were left from an earlier session: the panel may be lit.
                    self._capture_fixed_cells([c for c in cells if c.kind != "flat"])
                    if flat_cells:
                        if self.flats is None:
                            for cell in flat_cells:
                                self.fail_cell(cell, "no flat-field devices configured")
                        else:
                            try:
                                self.flats.capture(self, flat_cells)
                            except CellFailed as err:  # recorded; the next run tries again
                                log.info("%s: flats of this set-point stopped: %s", self.name,
                                         err)
                writer.flush()
            finally:
                self._writer = None
                writer.close()
                self._result.writer_busy_s = writer.busy_s
        except RunPaused as err:
            index.set_run_state(run_id, "interrupted" if self.stop.is_set() else "paused",
                                str(err))
            self.update(phase="stopped" if self.stop.is_set() else "paused", message=str(err))
            if self.options.warm_up_on_stop:
                self._warm_up()
            raise
        except (LibraryError, CoolingTimeout, DeviceError) as err:
            index.set_run_state(run_id, "failed", str(err))
            self.update(phase="failed", message=str(err))
            raise
        complete = not self._result.skipped and not self._result.failed
        self.library.finish_run(run_id, complete, None if complete else self._result.summary)
        self._result.complete = complete
        if self.policy.warmup.enabled:
            self.update(phase="warming", message="warming the sensor up")
        self._warm_up()
        self.update(phase="done", message=self._result.summary, cell=None)
        return self._result

    # ----- cooling -----------------------------------------------------------------------------
    def _settle_for(self, setpoint: float, cells: list[Cell]) -> bool:
        policy = self.policy.cooling
        self.update(phase="cooling", message=f"cooling to {setpoint:g} °C", setpoint_c=setpoint)
        waited = 0.0
        while True:
            try:
                result = self._call_device(lambda: self.cooler.settle(setpoint), cells[0])
            except SettingRejected as err:  # e.g. a set-point below what the device accepts
                for cell in cells:
                    self.fail_cell(cell, f"the camera refused the set-point: {err}")
                return False
            if result.ok:
                log.info("%s: settled at %g °C after %.0f s", self.name, setpoint,
                         result.waited_s)
                return True
            if result.stopped or self.stop.is_set():
                raise RunPaused("stop requested while cooling")
            waited += result.waited_s
            if policy.unreachable == "abort":
                raise CoolingTimeout(result.reason)
            if policy.unreachable == "wait" and waited < policy.wait_max_s:
                self.event("warning", "cooling-wait", f"{result.reason}; still waiting")
                continue
            reason = result.reason + ("; gave up waiting" if policy.unreachable == "wait" else "")
            for cell in cells:
                self.fail_cell(cell, reason, state="skipped")
            return False

    def _warm_up(self) -> None:
        warmup = self.policy.warmup
        if not warmup.enabled:
            return
        try:
            self.cooler.warm_up(warmup, self.ambient_c)
        except DeviceUnavailable as err:
            log.warning("%s: warm-up skipped, camera unavailable: %s", self.name, err)

    def _on_cooler(self, state: CoolerState, message: str) -> None:
        self.update(temperature_c=state.temperature_c, power_pct=state.power_pct,
                     message=message)

    # ----- the capture port (the flats runner captures through these) --------------------------
    @property
    def writer(self) -> FrameWriter:
        if self._writer is None:
            raise RuntimeError("the writer exists only while run() is running")
        return self._writer

    def settings_for(self, cell: Cell) -> CaptureSettings:
        return CaptureSettings(gain=cell.gain, offset=cell.offset, binning=cell.binning,
                               readout_mode=cell.readout_mode)

    def done(self, cell: Cell) -> int:
        """Frames of ``cell`` in the library for this run (earlier sessions included)."""
        return self._done.get(cell.key, 0)

    def configure(self, cell: Cell) -> bool:
        """Apply the cell's settings. False (cell marked failed) if the camera refuses them or
        reads back other values than the cell asks for."""
        wanted = self.settings_for(cell)
        try:
            applied = self._call_device(lambda: self.camera.configure(wanted), cell)
        except SettingRejected as err:
            self.fail_cell(cell, str(err))
            return False
        problem = settings_mismatch(wanted, applied)
        if problem is not None:
            self.fail_cell(cell, problem)
            return False
        return True

    def fail_cell(self, cell: Cell, reason: str, *, state: str = "failed") -> None:
        self.library.index.set_cell_state(self.run_handle.run_id, cell.key, state, reason)
        target = self._result.failed if state == "failed" else self._result.skipped
        target.append(f"{cell.describe()}: {reason}")
        if state == "skipped":
            self.status.skipped_cells.append(cell.describe())
        self.event("error" if state == "failed" else "warning", f"cell-{state}",
                   f"{cell.describe()}: {reason}", cell)

    def shoot(self, cell: Cell, exposure_s: float) -> Shot:
        """Take one frame of ``cell`` at ``exposure_s``: stop and disk checks, the sensor within
        tolerance before the exposure (re-settling if not), retries and reconnects.
        Raises RunPaused, LibraryError."""
        frame_bytes = Library.frame_bytes(self.info, cell.binning)
        while True:
            if self.stop.is_set():
                raise RunPaused("stop requested")
            pending = self._writer.pending if self._writer is not None else 0
            self.library.check_space(frame_bytes * (pending + 1), self.options.min_free_mb)
            state = self._call_device(self.camera.cooler_state, cell)
            self._on_cooler(state, self.status.message)
            if abs(state.temperature_c - cell.setpoint_c) > self.policy.cooling.tolerance_c:
                self._resettle(cell, f"sensor at {state.temperature_c:.1f} °C before exposing")
                continue
            started = self.clock.monotonic()
            frame = self._acquire(cell, self.settings_for(cell), exposure_s)
            if frame.electrons_per_adu:
                self.electrons_per_adu[frame.settings.gain] = frame.electrons_per_adu
            stats = frame_stats(frame.data, self.saturation_adu())
            elapsed = self.clock.monotonic() - started
            self._frame_overhead_s = 0.8 * self._frame_overhead_s + 0.2 * max(
                0.0, elapsed - exposure_s)
            return Shot(frame, stats, state, cfa.normalize(frame.bayer_pattern))

    def levels(self, cell: Cell) -> Levels:
        """Bias and clipping levels at the cell's settings. The bias level comes from this run,
        else from the index, else from one bias frame (not kept); one frame is always taken
        while the camera's e-/ADU at this gain is unknown. Raises RunPaused, LibraryError."""
        bias_cell = replace(cell, kind="bias", filter=None, exposure_s=0.0, flat_set=None)
        bias = self._bias_level(cell, bias_cell)
        full_scale = float(self.saturation_adu())
        saturation = full_scale
        full_well = self.info.full_well_e
        egain = self.electrons_per_adu.get(cell.gain)
        if full_well and egain:  # the full well may come before the ADC's full scale
            saturation = min(full_scale, bias + full_well / egain)
        return Levels(bias_adu=bias, saturation_adu=saturation, full_scale_adu=full_scale)

    def _bias_level(self, cell: Cell, bias_cell: Cell) -> float:
        level, _ = self.refs.reference(bias_cell)
        if level is not None and cell.gain in self.electrons_per_adu:
            return level
        stored = self.library.index.bias_level(cell.gain, cell.offset, cell.binning,
                                               cell.readout_mode)
        if stored is not None and cell.gain in self.electrons_per_adu:
            self.refs.seed_bias(bias_cell, stored)
            return stored
        shot = self.shoot(bias_cell, self.info.min_exposure_s)
        self.refs.seed_bias(bias_cell, shot.stats.level_adu)
        self.event("info", "bias-reference", f"bias level {shot.stats.level_adu:.1f} ADU "
                   "measured for the flat search (1 frame, not kept)", cell)
        return shot.stats.level_adu

    def keep(self, shot: Shot, cell: Cell, extra: Extra) -> bool:
        """Check the frame (temperature; for dark-type cells light leaks and saturation) and
        hand it to the writer (True), or journal it as rejected (False). Raises CellFailed when
        the frame was taken with other settings than the cell's (the cell is marked failed)."""
        verdict = judge(shot.frame, shot.stats, cell, self.policy.cooling, self.policy.checks,
                        self.refs)
        if not verdict.ok:
            self.reject(cell, verdict.reason, verdict.kind, shot.stats)
            return False
        self._write(shot, cell, extra)
        return True

    def _write(self, shot: Shot, cell: Cell, extra: Extra | None = None) -> int:
        """Hand an accepted frame to the writer; returns its sequence number in the cell.
        Raises CellFailed (the cell is marked failed, the frame dropped) when the frame was
        taken with other settings than the cell's."""
        problem = settings_mismatch(self.settings_for(cell), shot.frame.settings)
        if problem is not None:
            self.fail_cell(cell, problem)
            raise CellFailed(f"{cell.describe()}: {problem}")
        seq = self.next_seq.get(cell.key, 1)
        ctx = FrameContext(camera_name=self.name, info=self.info, cell=cell,
                           plan_name=self.plan.name, run_id=self.run_handle.run_id, seq=seq,
                           cooler_power_pct=shot.cooler.power_pct, extra=extra)
        job = self.library.frame_job(shot.frame, ctx, folder=self.policy.folder,
                                     stats={"level_adu": round(shot.stats.level_adu, 2),
                                            "noise_adu": round(shot.stats.noise_adu, 3)})
        self.writer.submit(job)
        self.next_seq[cell.key] = seq + 1
        self._done[cell.key] = self.done(cell) + 1
        self._exposures[cell.key] = shot.frame.exposure_s
        self.update(cell_done=self._done[cell.key], eta_s=self._eta())
        if self._done[cell.key] == cell.count and self.on_cell_complete is not None:
            self.on_cell_complete(cell)
        return seq

    def reject(self, cell: Cell, reason: str, check: str, stats: FrameStats) -> None:
        """Journal a rejected frame (it is not written)."""
        self._result.rejected += 1
        self.update(rejected=self._result.rejected)
        self.event("warning", "frame-rejected", reason, cell,
                   {"check": check, "level_adu": round(stats.level_adu, 1)})

    def capture_dark_flats(self, cells: list[Cell]) -> None:
        """Add these dark-flat cells to the run and capture them, the flats runner preparing
        the first (panel off, cover closed, a bias reference). Raises RunPaused, LibraryError."""
        self.add_cells(cells)
        self._capture_fixed_cells(cells)

    def kept_exposures(self, cell: Cell) -> list[float]:
        """Exposures (s) of the frames kept for ``cell`` in this run, oldest first; waits for
        the writer. Raises LibraryError."""
        if self._writer is not None:
            self._writer.flush()
        return self.library.index.cell_exposures(self.run_handle.run_id, cell.key)

    def progress(self, message: str, *, phase: str | None = None,
                 cell: Cell | None = None) -> None:
        """Show what is happening; ``cell`` becomes the current cell with its counts."""
        changes: dict[str, object] = {"message": message}
        if phase is not None:
            changes["phase"] = phase
        if cell is not None:
            changes.update(cell=cell.describe(), cell_done=self.done(cell),
                           cell_total=cell.count)
        self.update(**changes)

    def add_cells(self, cells: list[Cell]) -> None:
        """Cells decided at run time (dark flats at the flats' exposures) join the run."""
        known = {c.key for c in self.extra_cells}
        new = [c for c in cells if c.key not in known]
        if not new:
            return
        self.extra_cells.extend(new)
        self.library.record_run_cells(self.run_handle.run_id, [*self.plan.cells,
                                                               *self.extra_cells])
        with self._status_lock:
            self.status.frames_total += sum(c.count for c in new)
            self.status.frames_done += sum(min(self.done(c), c.count) for c in new)

    # ----- bias, darks, dark flats -------------------------------------------------------------
    def _capture_fixed_cells(self, cells: list[Cell]) -> None:
        """Capture cells of fixed exposure; before the first dark flat the flats runner puts
        the panel off and the cover on."""
        darkened = False
        for cell in cells:
            if cell.kind == "darkflat" and not darkened and self.flats is not None:
                self.flats.prepare_dark_flats(self, cell)
                darkened = True
            self.capture_fixed(cell)

    def capture_fixed(self, cell: Cell) -> None:
        """Capture a cell whose exposure is fixed (bias, dark, dark flat) up to its count."""
        if not self.configure(cell):
            return
        try:
            self._capture_fixed(cell)
        except CellFailed as err:
            log.info("%s: %s", self.name, err)

    def _capture_fixed(self, cell: Cell) -> None:
        done = self.done(cell)
        self.update(phase="exposing", cell=cell.describe(), cell_done=done,
                    cell_total=cell.count, exposure_s=cell.exposure_s, message=cell.describe())
        attempts = 0
        checks = self.policy.checks
        while self.done(cell) < cell.count:
            shot = self.shoot(cell, cell.exposure_s)
            verdict = judge(shot.frame, shot.stats, cell, self.policy.cooling, checks,
                            self.refs)
            if not verdict.ok:
                attempts += 1
                self.reject(cell, verdict.reason, verdict.kind, shot.stats)
                if attempts >= checks.max_attempts_per_frame:
                    raise RunPaused(f"{attempts} frames in a row rejected for {cell.describe()}: "
                                    f"{verdict.reason}")
                if verdict.kind == "temperature":
                    self._resettle(cell, verdict.reason)
                continue
            attempts = 0
            self.refs.add(cell, shot.stats.level_adu)
            self._write(shot, cell)

    def _acquire(self, cell: Cell, settings: CaptureSettings, exposure_s: float) -> Frame:
        failures = 0
        max_attempts = self.policy.checks.max_attempts_per_frame
        while True:
            if self.stop.is_set():
                raise RunPaused("stop requested")
            try:
                return self._call_device(lambda: self.camera.expose(exposure_s, dark=cell.is_dark),
                                         cell, settings=settings, resettle=True)
            except ExposureFailed as err:
                if self.stop.is_set():
                    raise RunPaused("stop requested during an exposure") from None
                failures += 1
                self.event("warning", "exposure-failed", f"{type(err).__name__}: {err}", cell)
                self.camera.abort()
                if failures >= max_attempts:
                    raise RunPaused(f"{failures} exposures in a row failed for "
                                    f"{cell.describe()}: {err}") from err
                if self.clock.wait(self.stop, min(2.0**failures, 30.0)):
                    raise RunPaused("stop requested") from None

    def _resettle(self, cell: Cell, why: str, *, reconnecting: bool = False) -> None:
        """Wait for the cooler to settle at the cell's set-point again. ``reconnecting``: called
        inside :meth:`_call_device`'s loop, so a camera lost now belongs to that loop's one
        deadline (no second reconnect loop). Raises RunPaused (stop, no settling),
        DeviceUnavailable (``reconnecting`` only)."""
        log.info("%s: %s; waiting for the cooler", self.name, why)
        policy = self.policy.cooling

        def settle() -> SettleResult:
            return self.cooler.settle(cell.setpoint_c, dwell_s=min(policy.dwell_s, 30.0))

        result = settle() if reconnecting else self._call_device(settle, cell)
        if result.stopped:
            raise RunPaused("stop requested while cooling")
        if not result.ok:
            raise RunPaused(f"the sensor left its set-point and did not come back: "
                            f"{result.reason}")

    def _call_device(self, fn: Callable[[], T], cell: Cell, *,
                     settings: CaptureSettings | None = None, resettle: bool = False) -> T:
        """Call ``fn`` and return its result. While the camera is unavailable (``fn`` or the
        reconnect raises DeviceUnavailable): wait with back-off, reconnect, restore ``settings``
        (default: the cell's) and the set-point, (``resettle``) wait for the cooler, and call
        ``fn`` again. The camera may stay away at most ``reconnect_timeout_s`` clock seconds from
        the first failure, a camera that reconnects but fails again included (one deadline, in
        :func:`until_available`). Raises RunPaused; other device errors propagate."""
        timeout_s = self.options.reconnect_timeout_s
        lost = False

        def attempt() -> T:
            nonlocal lost
            if lost:
                self._restore(cell, settings or self.settings_for(cell))
                lost = False
                self.event("info", "reconnected",
                           "camera reconnected; settings and set-point restored", cell)
                if resettle:
                    self._resettle(cell, "after reconnecting", reconnecting=True)
                if self.stop.is_set():
                    raise RunPaused("stop requested")
                self.update(phase="exposing", message=cell.describe())
            return fn()

        def on_lost(err: DeviceUnavailable) -> None:
            nonlocal lost
            if not lost:
                self.event("warning", "device-lost", f"camera unavailable: {err}", cell)
                self.update(phase="reconnecting", message=f"camera unavailable: {err}")
            lost = True

        return until_available(attempt, clock=self.clock, stop=self.stop, timeout_s=timeout_s,
                               gave_up=lambda last: f"camera {self.name} unavailable for "
                                                    f"{timeout_s:.0f} s: {last}",
                               on_lost=on_lost)

    def _restore(self, cell: Cell, settings: CaptureSettings) -> None:
        """Reconnect the camera and apply ``settings`` and the cooler's target (else the cell's
        set-point) again. Raises DeviceUnavailable, SettingRejected."""
        self.camera.disconnect()
        self.camera.connect()
        self.camera.configure(settings)
        target = self.cooler.target_c
        self.camera.set_cooler(True, target if target is not None else cell.setpoint_c)

    # ----- bookkeeping -------------------------------------------------------------------------
    def _on_written(self, job: WriteJob) -> None:
        with self._status_lock:
            self._result.frames_written += 1
            self.status.frames_done += 1
            self.status.frames_session += 1
        self.reporter(self.status)

    def update(self, **changes: object) -> None:
        with self._status_lock:
            for key, value in changes.items():
                setattr(self.status, key, value)
        self.reporter(self.status)

    def event(self, level: str, kind: str, message: str, cell: Cell | None = None,
               data: dict[str, object] | None = None) -> None:
        getattr(log, "error" if level == "error" else "warning" if level == "warning"
                else "info")("%s: %s", self.name, message)
        self.library.index.event(self.run_handle.run_id, level, kind, message,
                                 cell.key if cell else None, data)

    def _eta(self) -> float:
        """Clock seconds of capture still to come: the frames left in every cell (flats at the
        exposure they were last taken at, or the plan's guess), plus the dark flats that the
        flats still to be taken will add. Cooling waits and the warm-up are not included."""
        left_s = 0.0
        for c in [*self.plan.cells, *self.extra_cells]:
            left = c.count - self.done(c)
            if left > 0:
                left_s += left * (self._exposure_of(c) + self._frame_overhead_s)
        decided = {flat_group(c) for c in self.extra_cells if c.kind == "darkflat"}
        for dark in expected_dark_flats(self.plan):
            group = flat_group(dark)
            if group in decided:
                continue
            taken = [self._exposures[c.key] for c in self.plan.cells
                     if c.kind == "flat" and flat_group(c) == group and c.key in self._exposures]
            exposure = sum(taken) / len(taken) if taken else dark.exposure_s
            left_s += dark.count * (exposure + self._frame_overhead_s)
        return left_s

    def _exposure_of(self, cell: Cell) -> float:
        if cell.kind != "flat":
            return cell.exposure_s
        return self._exposures.get(cell.key) or flat_exposure_guess(cell)

    def saturation_adu(self) -> int:
        step = 1 << max(0, 16 - self.info.bit_depth)
        return ((1 << self.info.bit_depth) - 1) * step

    def _seed_bias_references(self) -> None:
        """Bias levels from earlier sessions of this run, for the first darks' leak check."""
        levels = self.library.index.run_bias_levels(self.run_handle.run_id)
        by_key = {c.key: c for c in self.plan.cells}
        for key, level in levels.items():
            cell = by_key.get(key)
            if cell is not None:
                self.refs.seed_bias(cell, level)
