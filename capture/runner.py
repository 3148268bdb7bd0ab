"""Run a plan file end to end: configuration -> camera -> resolved plan -> library -> sequencer.

Shared by ``calibd run`` and the daemon. Each step raises the error the CLI maps to an exit code:
InputError (2) for a bad plan or configuration, anything else (1) for failures.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from calibd.capture.config import CameraConfig
from calibd.capture.config import Config
from calibd.capture.config import MastersConfig
from calibd.capture.config import pick_camera
from calibd.capture.devices import Setup
from calibd.capture.devices import make_clock
from calibd.capture.devices import make_setup
from calibd.capture.errors import ConfigError
from calibd.capture.errors import PlanError
from calibd.capture.flats.devices import check_flat_devices
from calibd.capture.flats.memory import FlatMemory
from calibd.capture.flats.runner import FlatRunner
from calibd.capture.library.library import Library
from calibd.capture.library.policy import LibraryPolicy
from calibd.capture.library.upkeep import holdings
from calibd.capture.library.upkeep import needs
from calibd.capture.masters.auto import AutoMasters
from calibd.capture.masters.service import build_missing
from calibd.capture.plans.cells import Cell
from calibd.capture.plans.load import load_plan
from calibd.capture.plans.load import plan_digest
from calibd.capture.plans.model import SensorSet
from calibd.capture.plans.resolve import CameraContext
from calibd.capture.plans.resolve import ResolvedPlan
from calibd.capture.plans.resolve import resolve
from calibd.capture.sensor import store as sensor_store
from calibd.capture.sequencer.sequencer import RunResult
from calibd.capture.sequencer.sequencer import Sequencer
from calibd.capture.sequencer.sequencer import SequencerOptions
from calibd.capture.sequencer.status import Reporter
from calibd.capture.sequencer.status import no_report
from calibd.capture.yamlsrc import Located
from calibd.drivers.clock import Clock
from calibd.drivers.contracts import Camera
from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import NotSupported

log = logging.getLogger(__name__)

@dataclass
class Prepared:
    """A plan resolved against a connected camera, ready to run or to report on."""

    plan: ResolvedPlan
    located: Located
    setup: Setup
    camera_config: CameraConfig
    clock: Clock
    ambient_c: float | None
    sensor_c: float | None  # the sensor's temperature now (for estimates)

    @property
    def camera(self) -> Camera:
        return self.setup.camera

    @property
    def camera_name(self) -> str:
        return self.setup.name


@dataclass(frozen=True)
class Upkeep:
    """Run a plan as a library goal: capture only the cells the library lacks under
    ``policy`` (missing, unfinished or stale), resuming the plan's unfinished run."""

    policy: LibraryPolicy
    longitude_deg: float | None = None
    rank: Callable[[Cell], int] | None = None  # lower first (e.g. cells recent lights need)


@dataclass
class Outcome:
    result: RunResult | None
    message: str
    nothing_to_do: bool = False


def prepare(plan_path: Path, config: Config, config_located: Located | None,
            camera_name: str | None = None, clock: Clock | None = None,
            library: Path | None = None) -> Prepared:
    """Load the plan, pick and connect its camera, resolve the plan. ``clock``: the daemon's
    (shared by every run); by default one is made from the configuration. ``library``: where
    a stored sensor result (``calibd sensor analyze``) may give the unity gain and warnings
    about offsets that clip.

    Blocks while connecting. Raises PlanError/ConfigError (bad input) or DeviceError.
    """
    plan, located = load_plan(plan_path)
    wanted = camera_name or plan.camera
    try:
        name = pick_camera(config, wanted, config_located)
    except ConfigError as err:
        if camera_name is None and plan.camera is not None:
            raise PlanError([located.problem(("camera",), err.first.message)]) from None
        raise
    cam_cfg = config.cameras[name]
    clock = clock or make_clock(config.clock)
    setup = make_setup(name, config, clock)
    setup.connect()
    camera = setup.camera
    ambient = cam_cfg.ambient_c
    sensor = None
    try:
        state = camera.cooler_state()
        sensor = state.temperature_c
        if ambient is None:
            ambient = state.heatsink_c
    except NotSupported:
        pass
    measured = sensor_store.stored(library, name) if library is not None else None
    mode = plan.defaults.readout_mode or camera.info.readout_modes[0]
    unity = sensor_store.measured_unity(measured, mode) if measured is not None else None
    ctx = CameraContext(info=camera.info, unity_gain=cam_cfg.unity_gain,
                        default_offset=cam_cfg.offset, ambient_c=ambient,
                        measured_unity_gain=None if unity is None else round(unity))
    resolved = resolve(plan, located, ctx)
    if measured is not None:
        if unity is not None and cam_cfg.unity_gain is None and any(
                c.gain_label == "unity" for c in resolved.cells):
            resolved.warnings.append(f"unity gain {round(unity)}: measured (1 e-/ADU, "
                                     "calibd sensor analyze)")
        resolved.warnings.extend(sensor_store.offset_warnings(
            measured, [(c.gain, c.offset, c.binning, c.readout_mode) for c in resolved.cells
                       if c.kind != "flat"]))
    check_flat_devices(resolved, located, setup)
    return Prepared(resolved, located, setup, cam_cfg, clock, ambient, sensor)


def run_prepared(
    prepared: Prepared,
    library_root: Path,
    *,
    new: bool = False,
    again: bool = False,
    stop: threading.Event | None = None,
    reporter: Reporter = no_report,
    options: SequencerOptions | None = None,
    masters: MastersConfig | None = None,
    upkeep: Upkeep | None = None,
) -> Outcome:
    """Resume or start the run and capture until done. Blocks for the whole run.

    ``new`` always starts a new run; otherwise an unfinished run of the plan is resumed, and
    when the last run is complete ``again`` starts a new one (a schedule firing) instead of
    reporting that there is nothing to do (the CLI). ``upkeep``: only the cells the library
    lacks, in the unfinished run of the plan if there is one, else in a new run.

    Raises RunPaused, CoolingTimeout, LibraryError, DeviceError.
    """
    plan = prepared.plan
    stop = stop or threading.Event()
    if all(isinstance(s, SensorSet) for s in plan.plan.sets):
        masters = None  # pairs for the sensor analysis, not frames to stack
    with Library.open(library_root, camera=prepared.camera_name,
                      clock=prepared.clock, info=prepared.camera.info) as library:
        digest = plan_digest(prepared.located)
        reopen = None
        if upkeep is not None and not new:
            lacking = needs(plan.cells, holdings(
                library.index, prepared.camera_name, upkeep.policy, prepared.clock.now(),
                longitude_deg=upkeep.longitude_deg), upkeep.rank)
            if not lacking:
                return Outcome(None, f"library goal met: every cell of {plan.name!r} on "
                                     f"{prepared.camera_name} is held and valid",
                               nothing_to_do=True)
            order = {n.key: i for i, n in enumerate(lacking)}
            plan = ResolvedPlan(plan.plan, plan.name, plan.source,
                                sorted((c for c in plan.cells if c.key in order),
                                       key=lambda c: order[c.key]), list(plan.warnings))
            open_run = library.index.find_open_run(plan.name, prepared.camera_name,
                                                   plan.plan.folder or "")
            if open_run is not None:
                library.check_run(open_run.id)
            new = open_run is None
            log.info("library goal %s: %d cell(s) lacking (%s)", plan.name, len(lacking),
                     "; ".join(f"{n.key}: {n.reason}" for n in lacking[:5]))
        elif not new:
            last = library.last_run(plan, prepared.camera_name)
            open_run = library.index.find_open_run(plan.name, prepared.camera_name,
                                                   plan.plan.folder or "")
            for run in {r.id for r in (last, open_run) if r is not None}:
                library.check_run(run)  # what is counted must be whole
            if last is not None and last.state == "complete" and again:
                _build_missing_masters(library, last.id, masters)
                new = True
            elif last is not None and last.state == "complete":
                missing = library.missing_frames(last.id, plan)
                if not missing:
                    extra = _build_missing_masters(library, last.id, masters)
                    return Outcome(None, f"nothing to do: run {last.id} of plan {plan.name!r} "
                                         f"on {prepared.camera_name} completed at "
                                         f"{last.finished_utc}{extra}; use --new to capture it "
                                         "again", nothing_to_do=True)
                log.info("plan %s gained %d frame(s) since run %d completed: adding them to "
                         "that run", plan.name, missing, last.id)
                reopen = last.id
        handle = library.begin_run(plan, prepared.camera_name, digest, new=new, reopen=reopen)
        if handle.resumed:
            done = sum(min(handle.done.get(c.key, (0, 0))[0], c.count) for c in plan.cells)
            log.info("resuming run %d of %s: %d of %d frames already in the library",
                     handle.run_id, plan.name, done, plan.frames)
        else:
            log.info("starting run %d of %s: %d frames", handle.run_id, plan.name, plan.frames)
        watcher = _abort_on_stop(prepared.camera, stop, options)
        auto = None
        try:
            flats = None
            if any(c.kind == "flat" for c in plan.cells):
                flats = FlatRunner(prepared.setup, FlatMemory(library.index),
                                   clock=prepared.clock, stop=stop,
                                   reconnect_timeout_s=(options or SequencerOptions())
                                   .reconnect_timeout_s)
            if masters is not None and masters.auto:
                auto = AutoMasters(library.root, handle.run_id, masters)
            sequencer = Sequencer(camera=prepared.camera, camera_name=prepared.camera_name,
                                  clock=prepared.clock, library=library, plan=plan, run=handle,
                                  stop=stop, reporter=reporter, options=options,
                                  ambient_c=prepared.ambient_c, flats=flats,
                                  on_cell_complete=auto.cell_complete if auto else None)
            result = sequencer.run()
        except BaseException:
            if auto is not None:  # no master is left half-written behind the library's lock
                auto.stop()
            raise
        finally:
            watcher.set()
        message = result.summary
        if auto is not None:
            # Capture is over: the camera (and a simulator's frame buffers) can go before the
            # last masters are built.
            prepared.setup.disconnect()
            try:
                built = auto.finish()  # failures were logged as they happened
                message += f"; masters: {built.summary()}"
            except Exception as err:  # the frames are safe; masters can be built later
                log.error("building masters failed: %s (calibd masters build retries)", err)
                message += f"; masters not built: {err}"
        return Outcome(result, message)


def _build_missing_masters(library: Library, run_id: int, masters: MastersConfig | None
                           ) -> str:
    """Masters are part of a complete run: build those a crash after its last frame left
    missing (automatic masters only). Returns what to add to the message ("" if none)."""
    if masters is None or not masters.auto:
        return ""
    report = build_missing(library.index, masters, run_id=run_id)
    if not report.built and not report.failed:
        return ""
    log.info("run %d was complete but %s", run_id, report.summary())
    return f"; its missing masters: {report.summary()}"


def _abort_on_stop(camera: Camera, stop: threading.Event,
                   options: SequencerOptions | None) -> threading.Event:
    """Abort a running exposure as soon as ``stop`` is set (policy "abort")."""
    finished = threading.Event()
    if options is not None and options.stop_policy == "finish":
        return finished

    def watch() -> None:
        while not finished.is_set():
            if stop.wait(0.2):
                try:
                    camera.abort()
                except DeviceError as err:  # abort() should not raise; be safe anyway
                    log.debug("abort after stop failed: %s", err)
                return

    threading.Thread(target=watch, name="calibd-stop-watch", daemon=True).start()
    return finished
