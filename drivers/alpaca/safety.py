"""ASCOM Alpaca safety / weather driver (:class:`drivers.contracts.SafetyMonitor`): SafetyMonitor
IsSafe, plus CloudCover from an ObservingConditions device when one is configured."""

from __future__ import annotations

import logging
from typing import Unpack

from calibd.drivers.alpaca._base import AlpacaDevice
from calibd.drivers.alpaca._base import Endpoint
from calibd.drivers.alpaca._base import Quirk

logger = logging.getLogger(__name__)


class _ObservingConditions(AlpacaDevice):
    _ascom_type = "ObservingConditions"

    def cloud_cover(self) -> float | None:
        """CloudCover as the server reports it; None when not implemented."""
        self._require()
        value = self._optional("CloudCover")
        return None if value is None else float(value)


class AlpacaSafetyMonitor(AlpacaDevice):
    """``SafetyMonitor`` ``device_number`` on ``host:port``; cloud cover from ObservingConditions
    ``conditions_device_number`` on the same server (None: no cloud cover).

    Cloud cover is reported in percent; a server with Quirk.CLOUD_COVER_FRACTION (alpaca-simulators
    reports 0..1) is scaled by 100.
    """

    _ascom_type = "SafetyMonitor"

    def __init__(
        self,
        *,
        conditions_device_number: int | None = None,
        **endpoint: Unpack[Endpoint],
    ) -> None:
        super().__init__(**endpoint)
        self._conditions: _ObservingConditions | None = None
        if conditions_device_number is not None:
            conditions = Endpoint(**endpoint)
            conditions["device_number"] = conditions_device_number
            self._conditions = _ObservingConditions(**conditions)

    def connect(self) -> None:
        """Connect the safety monitor and the ObservingConditions device (if configured).
        Raises DeviceUnavailable."""
        super().connect()
        if self._conditions is not None:
            self._conditions.connect()

    def disconnect(self) -> None:
        """Never raises."""
        super().disconnect()
        if self._conditions is not None:
            self._conditions.disconnect()

    def is_safe(self) -> bool:
        """IsSafe. One request; raises DeviceUnavailable."""
        self._require()
        return bool(self._get("IsSafe"))

    def cloud_cover_pct(self) -> float | None:
        """CloudCover in percent; None without an ObservingConditions device or when it does not
        measure cloud cover. Raises DeviceUnavailable."""
        conditions = self._conditions
        if conditions is None:
            return None
        if not conditions.connected:
            conditions.connect()
        value = conditions.cloud_cover()
        if value is None:
            return None
        if Quirk.CLOUD_COVER_FRACTION in conditions.quirks:
            value *= 100.0
        return value
