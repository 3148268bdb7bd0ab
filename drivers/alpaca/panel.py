"""ASCOM Alpaca CoverCalibrator driver (:class:`drivers.contracts.FlatPanel`)."""

from __future__ import annotations

import enum
import logging

from calibd.drivers.alpaca._mover import AlpacaMover
from calibd.drivers.contracts import CoverState
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import NotSupported

logger = logging.getLogger(__name__)


class CalibratorStatus(enum.IntEnum):
    """ASCOM CalibratorStatus."""

    NOT_PRESENT = 0
    OFF = 1
    NOT_READY = 2
    READY = 3
    UNKNOWN = 4
    ERROR = 5


class AlpacaFlatPanel(AlpacaMover):
    """A flat panel / dust cover behind an Alpaca CoverCalibrator.

    ``wait_timeout_s`` (clock seconds, default 60) bounds light changes and cover moves unless a
    call gets its own ``timeout_s``. ``light`` waits for CalibratorState Ready, ``off`` for Off,
    the cover calls for CoverState Open / Closed.
    """

    _ascom_type = "CoverCalibrator"
    _poll_s = 0.1

    # What the device has (read at connect).
    _max_brightness = 0
    _has_calibrator = False
    _has_cover = False

    def _after_connect(self) -> None:
        state = int(self._get("CalibratorState"))
        self._has_calibrator = state != CalibratorStatus.NOT_PRESENT
        self._max_brightness = int(self._get("MaxBrightness")) if self._has_calibrator else 0
        self._has_cover = int(self._get("CoverState")) != CoverState.NOT_PRESENT.value

    @property
    def max_brightness(self) -> int:
        """Largest accepted brightness (0 without a calibrator; read at connect)."""
        return self._max_brightness

    @property
    def has_cover(self) -> bool:
        return self._has_cover

    def _calibrator_reached(self, target: CalibratorStatus) -> bool:
        state = int(self._get("CalibratorState"))
        if state == CalibratorStatus.ERROR:
            raise DeviceUnavailable("the calibrator reports Error", device=self.label)
        return state == target

    def light(self, brightness: int, *, timeout_s: float | None = None) -> None:
        """CalibratorOn(brightness), then wait for CalibratorState Ready.

        Raises SettingRejected (out of range, the device's message), NotSupported (no calibrator),
        DeviceUnavailable (unreachable, Error state, not ready by the deadline).
        """
        self._require()
        if not self._has_calibrator:
            raise NotSupported("this CoverCalibrator has no calibrator", device=self.label)
        dev = self._dev
        self._call(
            lambda: dev.CalibratorOn(int(brightness)),
            what=f"CalibratorOn({brightness})",
            context="setting",
        )
        self._wait(
            f"light at {brightness}",
            lambda: self._calibrator_reached(CalibratorStatus.READY),
            timeout_s,
        )

    def off(self, *, timeout_s: float | None = None) -> None:
        """CalibratorOff(), then wait for CalibratorState Off. Raises DeviceUnavailable; a panel
        without calibrator is already off."""
        self._require()
        if not self._has_calibrator:
            return
        self._call(self._dev.CalibratorOff, what="CalibratorOff()", context="setting")
        self._wait("light off", lambda: self._calibrator_reached(CalibratorStatus.OFF), timeout_s)

    def brightness(self) -> int:
        """Current brightness, 0 when off or without a calibrator. Raises DeviceUnavailable."""
        self._require()
        if not self._has_calibrator:
            return 0
        if int(self._get("CalibratorState")) != CalibratorStatus.READY:
            return 0
        return int(self._get("Brightness"))

    def cover_state(self) -> CoverState:
        """CoverState. Raises DeviceUnavailable."""
        self._require()
        return CoverState(int(self._get("CoverState")))

    def _move_cover(self, method: str, target: CoverState, timeout_s: float | None) -> None:
        self._require()
        if not self._has_cover:
            raise NotSupported("this CoverCalibrator has no cover", device=self.label)
        self._command_until(method, "cover", self.cover_state, target, CoverState.ERROR,
                            timeout_s)

    def open_cover(self, *, timeout_s: float | None = None) -> None:
        """OpenCover(), then wait for CoverState Open. Raises NotSupported, DeviceUnavailable."""
        self._move_cover("OpenCover", CoverState.OPEN, timeout_s)

    def close_cover(self, *, timeout_s: float | None = None) -> None:
        """CloseCover(), then wait for CoverState Closed. Raises NotSupported, DeviceUnavailable."""
        self._move_cover("CloseCover", CoverState.CLOSED, timeout_s)
