"""One camera's run queue: a thread that runs plans one after another on that camera.

Several cameras run concurrently, each in its own worker. A run can be stopped for a reason:
``shutdown`` (SIGTERM: the run is remembered and resumes at the next start), ``pause`` (held
until resumed), ``stop`` (dropped), ``yield`` (the weather cleared; the next unsafe spell resumes
it). A run that fails for a device or disk reason is retried later with back-off.

Nothing that goes wrong in a run ends the worker: any other error (a bug, a damaged library
index) pauses the camera with the reason, which ``calibd status`` shows; the run stays at the
head of the queue and ``control resume`` tries it again. A paused run (operator or error) is
continued by ``resume`` without a restart.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any
from typing import Protocol

from calibd.capture.config import Config
from calibd.capture.daemon.goal import goal_upkeep
from calibd.capture.errors import CoolingTimeout
from calibd.capture.errors import InputError
from calibd.capture.errors import LibraryError
from calibd.capture.errors import RunPaused
from calibd.capture.library.index import IndexDamaged
from calibd.capture.library.store import index_damaged
from calibd.capture.runner import prepare
from calibd.capture.runner import run_prepared
from calibd.capture.sequencer.sequencer import SequencerOptions
from calibd.capture.sequencer.status import RunStatus
from calibd.capture.textsafe import shown
from calibd.capture.yamlsrc import Located
from calibd.drivers.clock import Clock
from calibd.drivers.errors import DeviceError

log = logging.getLogger(__name__)

RETRY_FIRST_S = 600.0  # clock seconds before a failed run is tried again, doubling
RETRY_MAX_S = 4 * 3600.0
REASON_MAX_CHARS = 400  # a pause reason as status shows it


def describe_error(err: BaseException) -> str:
    """One bounded printable line naming the error (for status and the pause reason)."""
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return shown(text, REASON_MAX_CHARS - 1)  # device and file text: escaped, capped


@dataclass(frozen=True)
class RunRequest:
    camera: str
    plan: Path
    source: str  # "cron:<schedule>", "dusk:<schedule>", "unsafe:<schedule>", "api", "resume"
    requested: datetime  # clock time
    again: bool = True  # a completed plan runs again (schedules); False: only resume
    upkeep: bool = False  # a library goal: only the cells the library lacks
    not_before: datetime | None = None  # retry back-off
    retry_s: float = 0.0

    @property
    def schedule(self) -> str | None:
        return self.source.split(":", 1)[1] if ":" in self.source else None


class WorkerHost(Protocol):
    """What a worker needs from the daemon."""

    clock: Clock

    def config_snapshot(self) -> tuple[Config, Located | None]:
        ...

    def library_root(self) -> Path:
        ...

    def run_started(self, request: RunRequest) -> None:
        ...

    def run_finished(self, request: RunRequest, keep_for_resume: bool, complete: bool) -> None:
        ...

    def camera_faulted(self, camera: str, reason: str) -> None:
        """A run on ``camera`` failed unexpectedly: the worker paused; remember it."""
        ...


class CameraWorker:
    def __init__(self, name: str, host: WorkerHost,
                 on_status: Callable[[str, RunStatus], None] | None = None,
                 on_alert: Callable[[str, str, str, str], None] | None = None) -> None:
        """``on_alert(kind, camera, title, message)`` hears how runs end (must not block)."""
        self.name = name
        self.host = host
        self.on_status = on_status
        self.on_alert = on_alert
        self._queue: deque[RunRequest] = deque()
        self._cond = threading.Condition()
        self._held = False
        self._reason: str | None = None  # why the camera is paused (operator or error)
        self._closing = False
        self._current: RunRequest | None = None
        self._stop = threading.Event()
        self._stop_reason = ""
        self._status: RunStatus | None = None
        self._last: dict[str, Any] = {}
        self._paused_run: RunRequest | None = None  # stopped by a pause, first in the queue
        self._paused_status: RunStatus | None = None  # its last progress
        self._thread = threading.Thread(target=self._loop, name=f"calibd-{name}", daemon=True)
        self.crashed: BaseException | None = None

    # ----- control -----------------------------------------------------------------------------
    def start(self, held: bool = False, reason: str | None = None) -> None:
        self._held = held
        self._reason = (reason or "paused by the operator") if held else None
        self._thread.start()

    def submit(self, request: RunRequest) -> str:
        """Queue a run unless the same plan is already running or queued."""
        with self._cond:
            if self._current is not None and self._current.plan == request.plan:
                return f"{self.name}: {request.plan.name} is already running"
            if any(r.plan == request.plan for r in self._queue):
                return f"{self.name}: {request.plan.name} is already queued"
            self._queue.append(request)
            self._cond.notify_all()
        log.info("%s: queued %s (%s)", self.name, request.plan.name, request.source)
        return f"{self.name}: {request.plan.name} queued ({len(self._queue)} in the queue)"

    def pause(self, reason: str = "paused by the operator") -> str:
        with self._cond:
            self._held = True
            self._reason = reason
            running = self._current is not None
        if running:
            self._stop_current("pause")
        return f"{self.name}: paused" + (" (the running plan stops and resumes later)"
                                         if running else "")

    def resume(self) -> str:
        with self._cond:
            self._held = False
            self._reason = None
            paused = self._paused_run
            self._cond.notify_all()
        return f"{self.name}: resumed" + (f" ({paused.plan.name} continues)" if paused else "")

    def stop(self) -> str:
        with self._cond:
            dropped = len(self._queue)
            self._queue.clear()
            self._paused_run = self._paused_status = None
            running = self._current is not None
        if running:
            self._stop_current("stop")
        return f"{self.name}: stopped" + (f", {dropped} queued run(s) dropped" if dropped else "")

    def yield_source(self, prefix: str) -> bool:
        """Stop the current run (and drop queued ones) that came from ``prefix`` sources."""
        with self._cond:
            kept = [r for r in self._queue if not r.source.startswith(prefix)]
            self._queue = deque(kept)
            current = self._current
        if current is not None and current.source.startswith(prefix):
            self._stop_current("yield")
            return True
        return False

    def running_source(self) -> str | None:
        with self._cond:
            return self._current.source if self._current is not None else None

    def has_source(self, prefix: str) -> bool:
        with self._cond:
            return any(r.source.startswith(prefix) for r in self._queue) or (
                self._current is not None and self._current.source.startswith(prefix))

    def retire(self) -> None:
        """Drop the queue and end the thread after the current run (which finishes)."""
        with self._cond:
            self._queue.clear()
            self._paused_run = self._paused_status = None
            self._closing = True
            self._cond.notify_all()

    def shutdown(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._stop_current("shutdown")

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.crashed is None

    @property
    def held(self) -> bool:
        return self._held

    def status(self) -> dict[str, Any]:
        """A snapshot for the API. While paused, ``plan``/``run`` are those of the paused run
        (it continues on resume) and ``reason`` says why the camera is paused."""
        with self._cond:
            current, queue = self._current, list(self._queue)
            status, held, reason = self._status, self._held, self._reason
            if current is None and self._paused_run is not None:
                current, status = self._paused_run, self._paused_status
                queue = [r for r in queue if r is not self._paused_run]
                running = False
            elif current is None and held and queue:  # e.g. paused before a restart
                current, status, queue = queue[0], None, queue[1:]
                running = False
            else:
                running = current is not None
        state = "running" if running else "paused" if held else "idle"
        if running and self._stop.is_set():
            state = "stopping"
        return {
            "state": state,
            "reason": reason if held else None,
            "plan": str(current.plan) if current else None,
            "source": current.source if current else None,
            "run": status.to_dict() if (status is not None and current is not None) else None,
            "queue": [{"plan": str(r.plan), "source": r.source,
                       "not_before": r.not_before.isoformat() if r.not_before else None}
                      for r in queue],
            "last": dict(self._last),
        }

    def summary(self) -> str:
        """One line for systemd's STATUS=."""
        with self._cond:
            current, status = self._current, self._status
        if current is None:
            if self._held and self._reason:
                return f"{self.name} paused ({self._reason[:80]})"
            return f"{self.name} {'paused' if self._held else 'idle'}"
        if status is None:
            return f"{self.name} starting {current.plan.name}"
        text = f"{self.name} {status.plan} {status.frames_done}/{status.frames_total}"
        if status.cell:
            text += f" [{status.cell} {status.cell_done}/{status.cell_total}]"
        elif status.message:
            text += f" [{status.message}]"
        return text

    # ----- the thread --------------------------------------------------------------------------
    def _stop_current(self, reason: str) -> None:
        with self._cond:
            if self._current is None:
                return
            self._stop_reason = reason
        self._stop.set()

    def _next(self) -> RunRequest | None:
        clock = self.host.clock
        with self._cond:
            while True:
                if self._closing:
                    return None
                if not self._held and self._queue:
                    now = clock.now()
                    for i, r in enumerate(self._queue):
                        if r.not_before is None or r.not_before <= now:
                            del self._queue[i]
                            if r is self._paused_run:
                                self._paused_run = self._paused_status = None
                            self._current = r
                            self._stop = threading.Event()
                            self._stop_reason = ""
                            self._status = None
                            return r
                self._cond.wait(0.5)

    def _loop(self) -> None:
        try:
            while True:
                request = self._next()
                if request is None:
                    return
                try:
                    self._run(request)
                except Exception as err:  # outside the run itself (state, disconnect)
                    self._fault(request, err)
                finally:
                    with self._cond:
                        self._current = None
        except BaseException as err:  # SystemExit and the like: reported through health
            self.crashed = err
            log.exception("%s: worker crashed", self.name)

    def _alert(self, kind: str, title: str, message: str) -> None:
        if self.on_alert is not None:
            try:
                self.on_alert(kind, self.name, title, message)
            except Exception:  # a notification must never end a run
                log.exception("%s: cannot queue the %s alert", self.name, kind)

    def _report(self, status: RunStatus) -> None:
        self._status = status
        if self.on_status is not None:
            self.on_status(self.name, status)

    def _run(self, request: RunRequest) -> None:
        host = self.host
        host.run_started(request)
        config, located = host.config_snapshot()
        lib = config.library
        options = SequencerOptions(stop_policy=config.daemon.stop_policy,
                                   write_queue=lib.write_queue, write_queue_mb=lib.write_queue_mb,
                                   fsync=lib.fsync,
                                   min_free_mb=lib.min_free_mb)
        log.info("%s: running %s (%s)", self.name, request.plan, request.source)
        keep = False
        complete = False
        prepared = None
        try:
            prepared = prepare(request.plan, config, located, self.name, clock=host.clock,
                               library=host.library_root())
            outcome = run_prepared(prepared, host.library_root(), again=request.again,
                                   stop=self._stop, reporter=self._report, options=options,
                                   masters=config.masters,
                                   upkeep=goal_upkeep(config, located, request.schedule)
                                   if request.upkeep else None)
            complete = outcome.nothing_to_do or (outcome.result is not None
                                                 and outcome.result.complete)
            self._last = {"plan": str(request.plan), "message": outcome.message,
                          "finished_utc": host.clock.now().isoformat(), "ok": True}
            log.info("%s: %s", self.name, outcome.message)
            if not outcome.nothing_to_do:
                self._alert("run_finished", f"{request.plan.name} "
                            + ("complete" if complete else "ended"), outcome.message)
        except RunPaused as err:
            reason = self._stop_reason
            keep = reason in ("shutdown", "pause") or not self._stop.is_set()
            self._last = {"plan": str(request.plan), "message": str(err),
                          "finished_utc": host.clock.now().isoformat(), "ok": False,
                          "stopped_by": reason or "failure"}
            if not self._stop.is_set():  # the run paused itself (device gone, repeated errors)
                # The sky flats' observatory says "ALARM:" when the shutter did not close or
                # the mount did not park (capture.flats.observatory): its own alert kind.
                alarm = "ALARM:" in str(err)
                self._alert("observatory_alarm" if alarm else "run_failed",
                            "observatory alarm" if alarm else f"{request.plan.name} stopped",
                            str(err))
                self._retry(request, str(err))
            elif reason == "pause":
                self._hold_for_resume(request)
        except InputError as err:
            log.error("%s: %s cannot run: %s", self.name, request.plan, shown(err, 300))
            self._alert("run_failed", f"{request.plan.name} cannot run", str(err))
            self._last = {"plan": str(request.plan), "message": str(err), "ok": False,
                          "finished_utc": host.clock.now().isoformat()}
        except LibraryError as err:
            keep = True
            if isinstance(err, IndexDamaged) or index_damaged(err):
                self._fault(request, err)
            else:
                self._failed(request, err)
        except CoolingTimeout as err:
            keep = True
            self._alert("cooler_unsettled", "cooler did not settle", str(err))
            self._failed(request, err, alert=False)
        except DeviceError as err:
            keep = True
            self._failed(request, err)
        except Exception as err:  # a bug or a damaged index: pause this camera, keep going
            keep = True
            self._fault(request, err)
        finally:
            try:
                if prepared is not None:
                    prepared.setup.disconnect()
            finally:
                host.run_finished(request, keep, complete)

    def _failed(self, request: RunRequest, err: Exception, alert: bool = True) -> None:
        """A device, cooling or disk failure: try the run again later."""
        log.error("%s: %s failed: %s", self.name, request.plan, shown(err, 300))
        if alert:
            self._alert("run_failed", f"{request.plan.name} failed", describe_error(err))
        self._last = {"plan": str(request.plan), "message": str(err), "ok": False,
                      "finished_utc": self.host.clock.now().isoformat()}
        self._retry(request, str(err))

    def _fault(self, request: RunRequest, err: Exception) -> None:
        """Anything unexpected: pause the camera with the reason; the run waits at the head of
        the queue for ``resume``. The daemon and the other cameras go on."""
        reason = f"{request.plan.name}: {describe_error(err)}"
        log.error("%s: paused after an error in %s", self.name, reason, exc_info=err)
        self._alert("run_paused", "camera paused after an error", reason)
        with self._cond:
            self._held = True
            self._reason = reason
        self._hold_for_resume(request)
        self._last = {"plan": str(request.plan), "message": reason, "ok": False,
                      "finished_utc": self.host.clock.now().isoformat(), "stopped_by": "error"}
        try:
            self.host.camera_faulted(self.name, reason)
        except Exception:  # the daemon's own state is unusable: the pause still holds
            log.exception("%s: could not record the pause", self.name)

    def _hold_for_resume(self, request: RunRequest) -> None:
        """Put a stopped run back at the head of the queue (it continues on resume)."""
        with self._cond:
            if self._closing:
                return
            self._queue = deque(r for r in self._queue if r.plan != request.plan)
            held = replace(request, again=False, not_before=None, retry_s=0.0)
            self._queue.appendleft(held)
            self._paused_run = held
            self._paused_status = self._status

    def _retry(self, request: RunRequest, why: str) -> None:
        delay = min(RETRY_MAX_S, request.retry_s * 2 if request.retry_s else RETRY_FIRST_S)
        when = self.host.clock.now() + timedelta(seconds=delay)
        log.warning("%s: %s will be tried again at %s (%s)", self.name, request.plan.name,
                    when.strftime("%Y-%m-%d %H:%M UTC"), why)
        with self._cond:
            if not self._closing and not any(r.plan == request.plan for r in self._queue):
                self._queue.append(replace(request, not_before=when, retry_s=delay,
                                           again=False))
