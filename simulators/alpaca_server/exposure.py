"""The camera's exposure machinery: one exposure at a time in a background thread.

``SimulatedCamera.expose`` blocks for the exposure plus read-out (clock time); :class:`Exposures`
runs it in a thread and publishes what an Alpaca client polls: CameraState (Exposing until the
exposure time has passed, then Reading, then Idle — or Error when the simulator failed), percent
completed, ImageReady and the image cropped to the subframe, and the last duration / start time.
Abort discards the exposure; Stop ends it early and reads out what was exposed.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

import numpy as np
import numpy.typing as npt

from calibd.drivers.alpaca.camera import CameraStates
from calibd.drivers.clock import Clock
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import ExposureFailed
from calibd.simulators.alpaca_server.protocol import invalid_operation
from calibd.simulators.camera import SimulatedCamera

log = logging.getLogger(__name__)

#: Real seconds an abort, stop or disconnect waits for the exposure thread to end.
INTERRUPT_WAIT_S = 5.0

Subframe = tuple[int, int, int, int]  # start x, start y, num x, num y (binned pixels)
Image = npt.NDArray[np.uint16]


class Exposures:
    """Runs exposures of ``camera`` one at a time. Thread-safe; ``label`` names it in logs."""

    def __init__(self, camera: SimulatedCamera, clock: Clock, label: str) -> None:
        self._camera = camera
        self._clock = clock
        self._label = label
        self._lock = threading.Lock()
        self._state = CameraStates.IDLE
        self._worker: threading.Thread | None = None
        self._started = 0.0  # clock.monotonic() at start
        self._duration = 0.0
        self._interrupt: str | None = None  # "abort" or "stop" for the running exposure
        self._image: Image | None = None
        self._last: tuple[float, datetime] | None = None  # exposure s, start UTC

    # -- what clients poll -------------------------------------------------------------------

    def state(self) -> CameraStates:
        """CameraState now (Exposing turns into Reading once the exposure time has passed)."""
        state = self._state
        if state == CameraStates.EXPOSING and self._elapsed() >= self._duration:
            return CameraStates.READING
        return state

    def _elapsed(self) -> float:
        return self._clock.monotonic() - self._started

    def image_ready(self) -> bool:
        return self._image is not None and self._state == CameraStates.IDLE

    def percent_completed(self) -> int:
        """0..100: exposure progress; 100 while reading out or with an image ready."""
        state = self.state()
        if state == CameraStates.EXPOSING and self._duration > 0:
            return max(0, min(100, int(100 * self._elapsed() / self._duration)))
        if state == CameraStates.READING:
            return 100
        return 100 if self.image_ready() else 0

    def image(self) -> Image:
        """The last image, [row, column]. Raises AlpacaError InvalidOperation when none is
        ready."""
        with self._lock:
            image = self._image if self.image_ready() else None
        if image is None:
            raise invalid_operation("no image ready: start an exposure and wait for ImageReady")
        return image

    def last(self) -> tuple[float, datetime] | None:
        """(exposure seconds, start UTC) of the last finished exposure, None before any."""
        return self._last

    def busy(self) -> bool:
        worker = self._worker
        return worker is not None and worker.is_alive()

    # -- control -----------------------------------------------------------------------------

    def start(self, duration: float, *, dark: bool, sub: Subframe,
              settings: CaptureSettings) -> None:
        """Start an exposure of ``duration`` clock seconds with the camera already configured
        to ``settings``; returns at once. Raises AlpacaError InvalidOperation while busy."""
        with self._lock:
            if self.busy():
                raise invalid_operation(
                    f"the camera is busy ({self.state().name.lower()}): wait for ImageReady "
                    "or abort the exposure"
                )
            self._image, self._interrupt = None, None
            self._started, self._duration = self._clock.monotonic(), duration
            self._state = CameraStates.EXPOSING
            worker = threading.Thread(
                target=self._run,
                args=(duration, dark, sub, settings, self._clock.now()),
                name=f"alpaca-{self._label}-exposure",
                daemon=True,
            )
            self._worker = worker
            worker.start()

    def interrupt(self, how: str) -> None:
        """``how`` = "abort" (discard) or "stop" (read out early). A no-op when idle. Waits up
        to INTERRUPT_WAIT_S real seconds for the exposure thread to end. The simulator's abort
        is repeated while waiting: it may come before the simulator has started (and reset its
        abort flag)."""
        with self._lock:
            worker = self._worker
            if worker is None or not worker.is_alive():
                return
            if how == "stop" and self.state() != CameraStates.EXPOSING:
                return  # already reading out: the image comes anyway
            self._interrupt = how
        deadline = time.monotonic() + INTERRUPT_WAIT_S
        while worker.is_alive() and time.monotonic() < deadline:
            self._camera.abort()
            worker.join(0.02)
        if worker.is_alive():
            log.warning("%s: the exposure did not end within %.0f s of %s", self._label,
                        INTERRUPT_WAIT_S, how)
        log.info("%s: exposure %s", self._label, "aborted" if how == "abort" else "stopped")

    # -- the exposure thread -----------------------------------------------------------------

    def _run(self, duration: float, dark: bool, sub: Subframe, settings: CaptureSettings,
             start_utc: datetime) -> None:
        result: tuple[Image, float, datetime] | None = None
        failure = ""
        try:
            frame = self._camera.expose(duration, dark=dark)
            result = (frame.data, frame.exposure_s, frame.start_utc)
        except ExposureFailed as err:
            if self._interrupt == "stop":
                result = self._stopped_frame(duration, settings, start_utc)
            else:
                failure = str(err)
        except DeviceError as err:
            failure = str(err)
        except Exception as err:  # a simulator bug must not leave the camera Exposing forever
            log.exception("%s: exposure crashed", self._label)
            failure = f"internal error: {err!r}"
        with self._lock:
            if self._interrupt == "abort":
                self._state = CameraStates.IDLE
            elif result is None:
                self._state = CameraStates.ERROR
                log.warning("%s: exposure failed: %s", self._label, failure)
            else:
                data, exposure_s, started = result
                sx, sy, nx, ny = sub
                self._image = np.ascontiguousarray(data[sy : sy + ny, sx : sx + nx])
                self._last = (exposure_s, started)
                self._state = CameraStates.IDLE

    def _stopped_frame(self, duration: float, settings: CaptureSettings,
                       start_utc: datetime) -> tuple[Image, float, datetime]:
        """Read out what was exposed until the stop (at least ExposureMin). The camera has no
        shutter, so light reaches it as during any exposure."""
        cam = self._camera
        elapsed = min(duration, max(cam.info.min_exposure_s, self._elapsed()))
        data = cam.sensor.frame(
            exposure_s=elapsed,
            temperature_c=cam.cooler.temperature_c(),
            gain=settings.gain,
            offset=settings.offset,
            binning=settings.binning,
            readout_mode=settings.readout_mode,
            light=cam.light() if cam.light is not None else None,
        )
        return data, elapsed, start_utc
