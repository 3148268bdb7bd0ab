"""The daemon: configuration, schedules, weather, camera workers, API, systemd protocol.

The main thread only loops: it handles the flags the signal handlers set (SIGTERM/SIGINT stop,
SIGHUP reload), polls the weather, and sends ``WATCHDOG=1`` while every part is healthy. Runs
happen in the camera workers; schedules fire from APScheduler's thread and only queue runs.
"""

from __future__ import annotations

import faulthandler
import fcntl
import logging
import os
import shutil
import signal
import threading
import time
from datetime import tzinfo
from pathlib import Path
from types import FrameType
from typing import IO
from typing import Any
from zoneinfo import ZoneInfo

from calibd.capture import __version__
from calibd.capture.config import Config
from calibd.capture.config import ScheduleConfig
from calibd.capture.config import UnsafeSchedule
from calibd.capture.config import load_config
from calibd.capture.daemon.alerts import AlertHub
from calibd.capture.daemon.alerts import camera_state
from calibd.capture.daemon.alerts import hub_from_config
from calibd.capture.daemon.alerts import mqtt_of
from calibd.capture.daemon.checks import device_problems
from calibd.capture.daemon.checks import startup_problems
from calibd.capture.daemon.control import ControlError
from calibd.capture.daemon.goal import goal_status
from calibd.capture.daemon.notify import Notifier
from calibd.capture.daemon.notify import watchdog_interval_s
from calibd.capture.daemon.plans_access import resolve_api_plan
from calibd.capture.daemon.scheduling import make_scheduler
from calibd.capture.daemon.scheduling import set_fire_target
from calibd.capture.daemon.scheduling import sync_jobs
from calibd.capture.daemon.view_data import CoolerHistory
from calibd.capture.daemon.view_data import Thumbnails
from calibd.capture.daemon.view_data import library_view
from calibd.capture.daemon.worker import CameraWorker
from calibd.capture.daemon.worker import RunRequest
from calibd.capture.daemon.worker import describe_error
from calibd.capture.devices import make_clock
from calibd.capture.devices import make_safety
from calibd.capture.devices import site_of
from calibd.capture.errors import ConfigError
from calibd.capture.errors import DaemonError
from calibd.capture.errors import LibraryError
from calibd.capture.errors import PlanError
from calibd.capture.errors import Problem
from calibd.capture.library.atomic import TEMP_SUFFIX
from calibd.capture.library.atomic import remove_leftovers
from calibd.capture.library.atomic import write_text
from calibd.capture.library.daemon_state import ActiveRun
from calibd.capture.library.daemon_state import DaemonState
from calibd.capture.library.index import Index
from calibd.capture.library.status import status_data
from calibd.capture.plans.load import load_plan
from calibd.capture.sequencer.status import RunStatus
from calibd.capture.textsafe import shown
from calibd.capture.yamlsrc import Located
from calibd.drivers.contracts import SafetyMonitor
from calibd.drivers.errors import DeviceError

log = logging.getLogger(__name__)
TICK_S = 0.5  # real seconds between main-loop passes
STATUS_EVERY_S = 10.0  # real seconds between STATUS= updates when nothing changed
ALERT_CHECK_S = 30.0  # real seconds between disk checks, digests and MQTT state refreshes


def resolve_plan_path(plan: Path, located: Located | None) -> Path:
    """Plan paths in the configuration are relative to the configuration file."""
    if plan.is_absolute() or located is None or located.file is None:
        return plan
    return (located.file.parent / plan).resolve()


def check_config(path: Path) -> tuple[Config, Located]:
    """Load the configuration and every schedule's plan, and run the start-up checks (token
    file, state folder, library root: :mod:`capture.daemon.checks`). Raises ConfigError /
    PlanError."""
    config, located = load_config(path)
    assert located is not None
    problems: list[Problem] = startup_problems(config, located)
    if config.library.root is None:
        problems.append(located.problem(("library",), "the daemon needs library.root"))
    tz_name = config.daemon.timezone
    if tz_name is not None:
        try:
            ZoneInfo(tz_name)
        except (KeyError, ValueError):
            problems.append(located.problem(("daemon", "timezone"),
                                            f"unknown time zone {tz_name!r}"))
    if problems:
        raise ConfigError(problems)
    for s in config.schedules:
        if s.enabled:
            load_plan(resolve_plan_path(s.plan, located))  # raises PlanError with its location
    return config, located


def check_devices(config: Config, located: Located) -> None:
    """``--check`` online: connect every device and resolve each enabled schedule's plan
    against its camera. Blocks while connecting. Raises ConfigError / PlanError."""
    plans: dict[str, list[Path]] = {}
    for s in config.schedules:
        if s.enabled:
            camera = s.camera or next(iter(config.cameras))
            path = resolve_plan_path(s.plan, located)
            if path not in plans.setdefault(camera, []):
                plans[camera].append(path)
    problems = device_problems(config, located, plans, make_clock(config.clock))
    if problems:
        raise ConfigError(problems)


def plans_dir(config: Config, located: Located | None) -> Path | None:
    """The API's plans folder (relative to the configuration file), or None."""
    folder = config.daemon.plans_dir
    return None if folder is None else resolve_plan_path(folder, located)


def api_token(config: Config) -> str | None:
    """The API token: inline, else read from ``token_file``. Raises ConfigError when the file
    cannot be read or holds no usable token."""
    api = config.daemon.api
    if api.token is not None or api.token_file is None:
        return api.token
    from calibd.capture.daemon.api import read_token_file

    try:
        return read_token_file(api.token_file)
    except (OSError, ValueError) as err:
        raise ConfigError([Problem(Path(api.token_file), None, "daemon.api.token_file",
                                   f"cannot use the token file: {err}")]) from None


def _weather_text(safe: bool, cloud_cover_pct: float | None) -> str:
    """What the safety monitor said, without guessing why (rain, wind and clouds all read as
    "unsafe"; the cloud cover is added where the device reports it)."""
    text = "safe" if safe else "unsafe (the safety monitor reports unsafe conditions)"
    if cloud_cover_pct is not None:
        text += f", cloud cover {cloud_cover_pct:.0f} %"
    return text


def local_timezone(name: str | None) -> tzinfo:
    if name:
        return ZoneInfo(name)
    from tzlocal import get_localzone

    zone: tzinfo = get_localzone()
    return zone


class Daemon:
    """``calibd daemon --config FILE``. Implements DaemonControl (for the API) and WorkerHost
    (for the camera workers)."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config, self.located = check_config(config_path)
        self.clock = make_clock(self.config.clock)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.watchdog_s = watchdog_interval_s()
        self.notifier = Notifier.from_environment(unset=True)  # children must not inherit it
        self.workers: dict[str, CameraWorker] = {}
        self.safety: SafetyMonitor | None = None
        self.safe: bool | None = None  # None until the safety monitor answered
        self.weather: str | None = None  # what the monitor said, for the log and status
        self.started = self.clock.now()
        self.api: Any = None
        self._lock_file: IO[str] | None = None
        self._unsafe_done: set[str] = set()
        self._status_text = ""
        self._status_at = 0.0
        self.alerts: AlertHub | None = None
        self.cooler_history = CoolerHistory()
        self.thumbnails = Thumbnails(self.library_root)
        self._skipped: dict[str, tuple[int | None, int]] = {}  # camera -> (run id, cells told)
        self._disk_low = False
        self._alert_check_at = -1e18
        state_dir = self.config.daemon.state_dir
        self.state = DaemonState(state_dir)
        self.tz = local_timezone(self.config.daemon.timezone)
        self.scheduler = make_scheduler(state_dir, self.clock, self.tz)

    # ----- WorkerHost ------------------------------------------------------------------------
    def config_snapshot(self) -> tuple[Config, Located | None]:
        with self._lock:
            return self.config, self.located

    def library_root(self) -> Path:
        root = self.config.library.root
        assert root is not None
        return root

    def run_started(self, request: RunRequest) -> None:
        self.state.add_active(ActiveRun(request.camera, str(request.plan), request.source,
                                        request.requested.isoformat()))

    def run_finished(self, request: RunRequest, keep_for_resume: bool, complete: bool) -> None:
        if request.upkeep and self.alerts is not None:
            self._alert_lacks(request)
        if not keep_for_resume:
            self.state.remove_active(request.camera, str(request.plan))
        if complete and request.source.startswith("unsafe:"):
            # Done for this cloudy spell: not queued again until it clears and clouds over.
            self._unsafe_done.add(request.source)
        self._send_status(force=True)

    def camera_faulted(self, camera: str, reason: str) -> None:
        """A camera worker paused itself after an error: keep it paused across restarts (so a
        crash that repeats is not retried in a loop); ``control resume`` releases it."""
        self.state.set_paused(camera, True, reason)
        self._send_status(force=True)

    # ----- alerts -----------------------------------------------------------------------------
    def alert(self, kind: str, camera: str | None, title: str, message: str) -> None:
        """Queue a notification (never blocks; nothing happens without targets)."""
        if self.alerts is not None:
            self.alerts.emit(kind, title, message, camera)

    def _alert_lacks(self, request: RunRequest) -> None:
        """After a library goal's run: what the library still lacks, if anything."""
        try:
            with self._lock:
                config = self.config
            index = Index(self.library_root())
            try:
                goals = self._goals(config, index, {})
            finally:
                index.close()
        except Exception as err:
            log.warning("cannot tell what the library lacks: %s", describe_error(err))
            return
        for goal in goals:
            if goal["schedule"] == request.schedule and goal["lacking"]:
                self.alert("library_lacks", request.camera, f"library goal {goal['schedule']}",
                           f"{len(goal['lacking'])} cell(s) still lacking; filled "
                           f"{goal['fills']}")

    def _check_alerts(self) -> None:
        """Now and then from the main loop: the library's free disk, held digests, MQTT."""
        now = time.monotonic()
        if self.alerts is None or now - self._alert_check_at < ALERT_CHECK_S:
            return
        self._alert_check_at = now
        limit_mb = self.config.daemon.notifications.disk_low_mb
        try:
            free_mb = shutil.disk_usage(self.library_root()).free / 1e6
        except OSError:
            free_mb = None
        if free_mb is not None:
            low = free_mb < limit_mb
            if low and not self._disk_low:
                self.alert("disk_low", None, "library disk low",
                           f"{free_mb:.0f} MB free under {self.library_root()} "
                           f"(alert below {limit_mb:.0f} MB)")
            self._disk_low = low
        self.alerts.flush_digests()
        self._publish_states()

    def _publish_states(self) -> None:
        mqtt = mqtt_of(self.alerts)
        if mqtt is not None:
            for name, worker in list(self.workers.items()):
                mqtt.publish_state(name, camera_state(worker.status()))

    # ----- DaemonControl ---------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self._lock:
            config = self.config
        try:
            jobs = {job.id: job for job in self.scheduler.get_jobs()}
        except Exception as err:  # the job store is unreadable: status still answers
            log.warning("schedules unknown: %s", describe_error(err))
            jobs = {}
        schedules = []
        for s in config.schedules:
            job = jobs.get(s.name)
            schedules.append({
                "name": s.name, "trigger": s.trigger, "camera": self._camera_of(s),
                "plan": str(resolve_plan_path(s.plan, self.located)), "enabled": s.enabled,
                "next_run_utc": job.next_run_time.isoformat()
                if job is not None and job.next_run_time else None})
        library: dict[str, Any] = {"root": str(self.library_root())}
        try:
            index = Index(self.library_root())
            try:
                data = status_data(self.library_root(), index, policy=config.library.policy,
                                   now=self.clock.now(),
                                   longitude_deg=config.site.longitude_deg if config.site
                                   else None)
                library.update(frames=data["frames"], bytes=data["bytes"], runs=[
                    {k: r[k] for k in ("id", "plan", "camera", "state", "planned", "done",
                                       "complete_cells", "masters_missing", "invalid_cells")}
                    | {"cells": len(r["cells"])}
                    for r in data["runs"][-20:]])
                library["goals"] = self._goals(config, index, jobs)
            finally:
                index.close()
        except LibraryError as err:
            library["error"] = str(err)
        except Exception as err:  # a damaged index must not take the status down with it
            log.warning("library status failed: %s", describe_error(err))
            library["error"] = f"cannot read the library index: {describe_error(err)}"
        return {
            "daemon": {"version": __version__, "pid": os.getpid(), "config": str(self.config_path),
                       "started_utc": self.started.isoformat(),
                       "now_utc": self.clock.now().isoformat(), "healthy": self.healthy(),
                       "safe": self.safe, "weather": self.weather},
            "cameras": {name: w.status() for name, w in self.workers.items()},
            "schedules": schedules,
            "library": library,
        }

    # ----- the web view (capture.daemon.web.ViewSource) -------------------------------------
    def live(self) -> dict[str, Any]:
        """The cameras and the daemon, without the library (cheap: streamed every second)."""
        return {"daemon": {"version": __version__, "now_utc": self.clock.now().isoformat(),
                           "healthy": self.healthy(), "safe": self.safe,
                           "weather": self.weather},
                "cameras": {name: w.status() for name, w in list(self.workers.items())}}

    def history(self) -> dict[str, list[dict[str, Any]]]:
        return self.cooler_history.snapshot()

    def library_view(self) -> dict[str, Any]:
        try:
            return library_view(self.library_root())
        except LibraryError as err:
            raise ControlError(str(err), 503) from None

    def thumbnail(self, master_id: int) -> bytes | None:
        try:
            return self.thumbnails.get(master_id)
        except LibraryError as err:
            raise ControlError(str(err), 503) from None

    def report_html(self) -> str:
        from calibd.capture.library.rescan import open_existing
        from calibd.capture.report.collect import collect
        from calibd.capture.report.render import render_html

        root = self.library_root()
        try:
            index = open_existing(root)
        except LibraryError as err:
            raise ControlError(str(err), 503) from None
        try:
            return render_html(collect(root, index))
        finally:
            index.close()

    def _goals(self, config: Config, index: Index, jobs: dict[str, Any]) -> list[dict[str, Any]]:
        """What each library goal (schedules with ``upkeep``) lacks and when it is filled."""
        names = {}
        for s in config.schedules:
            if s.upkeep:
                path = resolve_plan_path(s.plan, self.located)
                try:
                    names[s.name] = load_plan(path)[0].name or path.stem
                except PlanError:
                    names[s.name] = path.stem
        next_runs = {name: job.next_run_time.isoformat() if job.next_run_time else None
                     for name, job in jobs.items()}
        running = {name: w.running_source() for name, w in self.workers.items()}
        return goal_status(config, index, self.clock, plan_names=names,
                           camera_of=self._camera_of, next_runs=next_runs, safe=self.safe,
                           running=running)

    def start(self, *, camera: str | None, plan: str | None, schedule: str | None) -> str:
        with self._lock:
            config = self.config
        if schedule is not None:
            found = next((s for s in config.schedules if s.name == schedule), None)
            if found is None:
                raise ControlError(f"no schedule named {shown(schedule, 60)!r}", 404)
            cam = camera or self._camera_of(found)
            path = resolve_plan_path(found.plan, self.located)
            source = f"api:{schedule}"
        elif plan is not None:
            path = resolve_api_plan(plan, plans_dir(config, self.located))
            try:
                plan_camera = load_plan(path)[0].camera
            except PlanError as err:
                raise ControlError(f"the plan is invalid: {err}") from None
            wanted = camera or plan_camera
            if wanted is None and len(config.cameras) > 1:
                raise ControlError("several cameras are configured: name one (or set the "
                                   "plan's camera)")
            cam = wanted or next(iter(config.cameras))
            source = "api"
        else:
            raise ControlError("give a plan or a schedule")
        if cam not in self.workers:
            raise ControlError(f"no camera named {shown(cam, 60)!r}", 404)
        try:
            load_plan(path)
        except PlanError as err:
            raise ControlError(f"the plan is invalid: {err}") from None
        return self.workers[cam].submit(RunRequest(cam, path, source, self.clock.now()))

    def pause(self, camera: str) -> str:
        worker = self._worker(camera)
        self.state.set_paused(camera, True, "paused by the operator")
        return worker.pause()

    def resume(self, camera: str) -> str:
        worker = self._worker(camera)
        self.state.set_paused(camera, False)
        return worker.resume()

    def stop(self, camera: str) -> str:
        return self._worker(camera).stop()

    def _worker(self, camera: str) -> CameraWorker:
        worker = self.workers.get(camera)
        if worker is None:
            raise ControlError(f"no camera named {shown(camera, 60)!r}", 404)
        return worker

    # ----- schedules and weather -------------------------------------------------------------
    def _camera_of(self, schedule: ScheduleConfig) -> str:
        return schedule.camera or next(iter(self.config.cameras))

    def fire(self, name: str) -> None:
        """A timed schedule fired (APScheduler's thread): queue its plan."""
        with self._lock:
            schedule = next((s for s in self.config.schedules if s.name == name), None)
        now = self.clock.now()
        if schedule is None or not schedule.enabled:
            log.info("schedule %s fired but is no longer configured", name)
            return
        camera = self._camera_of(schedule)
        self.state.record_fire(name, now.isoformat(), camera)
        log.info("schedule %s fired at %s", name, now.strftime("%Y-%m-%d %H:%M:%S UTC"))
        path = resolve_plan_path(schedule.plan, self.located)
        self.workers[camera].submit(RunRequest(camera, path, f"{schedule.trigger}:{name}", now,
                                               upkeep=schedule.upkeep))

    def _poll_weather(self) -> None:
        with self._lock:
            unsafe_schedules = [s for s in self.config.schedules
                                if isinstance(s, UnsafeSchedule) and s.enabled]
        if self.safety is None:
            return
        try:
            safe = self.safety.is_safe()
        except DeviceError as err:
            log.warning("weather unknown (%s): keeping the current runs", shown(err, 200))
            return
        self.weather = _weather_text(safe, self._cloud_cover())
        if safe != self.safe:
            log.info("weather: %s", self.weather)
            if not safe:
                self.alert("unsafe", None, "safety monitor: unsafe", self.weather)
            if safe:
                self._unsafe_done.clear()
        self.safe = safe
        for s in unsafe_schedules:
            camera = self._camera_of(s)
            worker = self.workers[camera]
            prefix = f"unsafe:{s.name}"
            if not safe and not worker.has_source(prefix) and prefix not in self._unsafe_done:
                self.state.record_fire(s.name, self.clock.now().isoformat(), "unsafe")
                # again=False: resume the plan's run; a completed plan is not started over.
                worker.submit(RunRequest(camera, resolve_plan_path(s.plan, self.located),
                                         prefix, self.clock.now(), again=False,
                                         upkeep=s.upkeep))
            elif safe and s.when_safe == "yield" and worker.yield_source(prefix):
                log.info("%s: clear sky, %s yields (it resumes when it clouds over)", camera,
                         s.name)

    def _cloud_cover(self) -> float | None:
        assert self.safety is not None
        try:
            return self.safety.cloud_cover_pct()
        except DeviceError:
            return None

    # ----- lifecycle -------------------------------------------------------------------------
    def healthy(self) -> bool:
        scheduler_ok = getattr(self.scheduler, "_thread", None) is not None and \
            self.scheduler._thread.is_alive()
        return scheduler_ok and all(w.alive for w in self.workers.values())

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT. Returns the exit code (0 after a clean stop).
        Raises DaemonError when it cannot start (locked state folder, API port taken)."""
        faulthandler.enable()  # a watchdog SIGABRT then logs every thread's stack
        self._take_lock()
        previous = self._install_signals()
        try:
            self._start()
            self.notifier.ready(f"calibd {__version__}: " + self._summary())
            interval = self.watchdog_s
            last_ping = 0.0
            last_weather = -1e18
            while not self._stop.is_set():
                if self._reload.is_set():
                    self._reload.clear()
                    self._do_reload()
                now_c = self.clock.monotonic()
                if now_c - last_weather >= self.config.daemon.weather_poll_s:
                    last_weather = now_c
                    self._poll_weather()
                if interval is not None and time.monotonic() - last_ping >= interval \
                        and self.healthy():
                    self.notifier.watchdog()
                    last_ping = time.monotonic()
                self._send_status()
                self._check_alerts()
                self._stop.wait(TICK_S)
            self._shutdown()
            return 0
        finally:
            self._restore_signals(previous)
            set_fire_target(None)
            if self._lock_file is not None:
                self._lock_file.close()

    def request_stop(self) -> None:
        self._stop.set()

    def _start(self) -> None:
        config = self.config
        self.library_root().mkdir(parents=True, exist_ok=True)
        try:
            self.alerts = hub_from_config(config.daemon.notifications, self.clock.monotonic)
        except ValueError as err:
            raise DaemonError(str(err)) from None
        paused = self.state.paused()
        for name in config.cameras:
            self._add_worker(name, held=name in paused, reason=paused.get(name))
        if config.safety is not None:
            self._connect_safety(config)
        set_fire_target(self.fire)
        # Start paused so the job store is open: jobs already stored keep their next run time
        # (missed fires then follow the misfire policy) instead of being re-added from now.
        self.scheduler.start(paused=True)
        sync_jobs(self.scheduler, list(config.schedules), site_of(config), self.tz)
        self.scheduler.resume()
        for active in self.state.active():
            if active.source.startswith("unsafe:"):
                continue  # the weather decides whether it runs again
            worker = self.workers.get(active.camera)
            if worker is None:
                self.state.remove_active(active.camera, active.plan)
                continue
            log.info("%s: resuming %s after a restart", active.camera, Path(active.plan).name)
            worker.submit(RunRequest(active.camera, Path(active.plan), "resume",
                                     self.clock.now(), again=False))
        self._start_api(config)

    def _add_worker(self, name: str, held: bool = False, reason: str | None = None) -> None:
        worker = CameraWorker(name, self, on_status=self._on_run_status, on_alert=self.alert)
        self.workers[name] = worker
        worker.start(held=held, reason=reason)

    def _connect_safety(self, config: Config) -> None:
        assert config.safety is not None
        if self.safety is not None:
            self.safety.disconnect()
        self.safety = make_safety(config.safety, self.clock)
        try:
            self.safety.connect()
        except DeviceError as err:
            log.warning("safety monitor unavailable for now: %s", err)

    def _start_api(self, config: Config) -> None:
        api_cfg = config.daemon.api
        if not api_cfg.enabled:
            return
        from calibd.capture.daemon.api import ApiServer

        token = api_token(config)
        self.api = ApiServer(self, host=api_cfg.host, port=api_cfg.port, token=token)
        try:
            self.api.start()
        except OSError as err:
            raise DaemonError(f"the API cannot listen on {api_cfg.host}:{api_cfg.port}: "
                              f"{err}") from err
        port = self.api.port
        state_dir = config.daemon.state_dir
        remove_leftovers(state_dir.glob(f".*{TEMP_SUFFIX}"))  # of a daemon killed mid-write
        try:
            write_text(state_dir / "api.port", f"{port}\n")
        except OSError as err:
            raise DaemonError(f"cannot write {state_dir / 'api.port'}: {err.strerror}") from err
        log.info("API on http://%s:%d%s", api_cfg.host, port,
                 "" if token else " (no token: status only, commands refused)")

    def _shutdown(self) -> None:
        self.notifier.stopping()
        self.alert("daemon_stopping", None, "calibd stopping",
                   "the daemon is stopping (runs resume at the next start)")
        log.info("stopping (runs are remembered and resume at the next start)")
        self.scheduler.shutdown(wait=False)
        for worker in self.workers.values():
            worker.shutdown()
        deadline = time.monotonic() + self.config.daemon.stop_timeout_s
        for name, worker in self.workers.items():
            if not worker.join(max(0.1, deadline - time.monotonic())):
                log.error("%s did not stop within %.0f s", name, self.config.daemon.stop_timeout_s)
        if self.api is not None:
            self.api.stop()
        if self.safety is not None:
            self.safety.disconnect()
        if self.alerts is not None:
            self._publish_states()
            self.alerts.stop()

    def _do_reload(self) -> None:
        self.notifier.reloading()
        try:
            config, located = check_config(self.config_path)
            token = api_token(config)
        except (ConfigError, PlanError) as err:
            log.error("configuration reload failed, keeping the previous configuration: %s",
                      str(err).replace("\n", "; "))
            self.notifier.ready("reload failed, running with the previous configuration")
            return
        with self._lock:
            old = self.config
            self.config, self.located = config, located
        for name in config.cameras:
            if name not in self.workers:
                self._add_worker(name)
        for name in list(self.workers):
            if name not in config.cameras:
                log.warning("camera %s was removed from the configuration: it stops after its "
                            "current run", name)
                self.workers.pop(name).retire()
        if config.safety != old.safety and config.safety is not None:
            self._connect_safety(config)
        self.tz = local_timezone(config.daemon.timezone)
        sync_jobs(self.scheduler, list(config.schedules), site_of(config), self.tz)
        if self.api is not None:
            self.api.token = token
        log.info("configuration reloaded: %d schedule(s), %d camera(s)",
                 len(config.schedules), len(config.cameras))
        self.notifier.ready("configuration reloaded")

    def _on_run_status(self, camera: str, status: RunStatus) -> None:
        self._send_status()
        self.cooler_history.add(camera, status, self.clock.now())
        if self.alerts is None:
            return
        run_id, told = self._skipped.get(camera, (status.run_id, 0))
        if run_id != status.run_id:
            told = 0
        for cell in status.skipped_cells[told:]:
            self.alert("cell_skipped", camera, f"{status.plan}: cell skipped", cell)
        self._skipped[camera] = (status.run_id, len(status.skipped_cells))

    def _summary(self) -> str:
        parts = [w.summary() for w in self.workers.values()]
        if self.safe is not None:
            parts.append("weather safe" if self.safe else "weather unsafe")
        return "; ".join(parts) if parts else "no cameras"

    def _send_status(self, force: bool = False) -> None:
        text = self._summary()
        now = time.monotonic()
        if force or (text != self._status_text and now - self._status_at >= 1.0) or \
                now - self._status_at >= STATUS_EVERY_S:
            self._status_text = text
            self._status_at = now
            self.notifier.status(text)

    def _take_lock(self) -> None:
        state_dir = self.config.daemon.state_dir
        path = state_dir / "daemon.lock"
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise DaemonError(f"another calibd daemon is using {state_dir}") from None
        self._lock_file = fh

    def _install_signals(self) -> dict[int, Any]:
        def on_stop(signum: int, frame: FrameType | None) -> None:
            self._stop.set()

        def on_reload(signum: int, frame: FrameType | None) -> None:
            self._reload.set()

        previous: dict[int, Any] = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_stop),
                    signal.SIGINT: signal.signal(signal.SIGINT, on_stop),
                    signal.SIGHUP: signal.signal(signal.SIGHUP, on_reload)}
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

