"""The one exception tree of calibd's device layer.

Drivers translate every vendor or transport failure into one of these at their boundary
(``raise ExposureFailed(...) from err``); the sequencer's retry policy keys on the class:

* :class:`DeviceUnavailable` -> reconnect with back-off, retake the frame, else pause the run.
* :class:`ExposureFailed` / :class:`ExposureTimeout` -> abort and retake (bounded retries).
* :class:`SettingRejected` -> bad input: never retried, reported with the device's own message.
* :class:`NotSupported` -> the device lacks the capability: the plan asked for something impossible.
"""

from __future__ import annotations


class DeviceError(Exception):
    """Root of every device-layer failure. Raise a subclass, never this class itself."""

    def __init__(self, message: str, *, device: str | None = None) -> None:
        super().__init__(message)
        self.device = device

    def __str__(self) -> str:
        base = super().__str__()
        return f"{self.device}: {base}" if self.device else base


class DeviceUnavailable(DeviceError, ConnectionError):
    """The device or its server cannot be reached: not connected, vanished from USB, server down,
    or an SDK call that never returned (the device is then marked unavailable). Recoverable by a
    reconnect."""


class ExposureFailed(DeviceError):
    """An exposure started (or was meant to start) but produced no usable image: the device
    reported an error, the image was short or corrupt, or the exposure was aborted."""


class ExposureTimeout(ExposureFailed):
    """An exposure or its download did not finish by its deadline. The driver has tried to abort
    it; the frame must be retaken."""


class SettingRejected(DeviceError, ValueError):
    """The device refused a setting (gain, offset, binning, set-point, exposure out of range, an
    unknown filter name, ...). Carries the device's own message. Never retried."""


class NotSupported(DeviceError):
    """The device lacks a capability the caller asked for (no cooler, no cover, no modes)."""
