"""INDI weather station as a safety monitor (``WEATHER_STATUS`` / ``WEATHER_PARAMETERS``)."""

from __future__ import annotations

import logging
from typing import Unpack

from calibd.drivers.indi._conn import IndiConnection
from calibd.drivers.indi._device import Endpoint
from calibd.drivers.indi._device import IndiDevice
from calibd.drivers.indi._state import PropSnapshot

log = logging.getLogger(__name__)

CLOUD_COVER_ELEMENTS = ("WEATHER_CLOUD_COVER", "WEATHER_CLOUDS", "WEATHER_CLOUD_COVERAGE")
FIRST_REPORT_WAIT_S = 5.0  # how long connect() waits for the station's first status


class IndiSafetyMonitor(IndiDevice):
    """A weather station satisfying :class:`drivers.contracts.SafetyMonitor`.

    ``IndiSafetyMonitor(host=..., port=..., device="Weather Simulator")``. Safe means the overall
    WEATHER_STATUS state is Ok or Busy (INDI's "warning") and the station reported no danger
    since the previous :meth:`is_safe`; Alert (danger) and Idle (no reading yet) are unsafe. The
    station pushes its status, so a danger that came and went between two checks (a gust, a
    shower) is still seen: that check reads unsafe, once. Cloud cover (percent) comes from
    WEATHER_PARAMETERS ``cloud_cover_element`` or the first of :data:`CLOUD_COVER_ELEMENTS` the
    station reports; None when it has none.
    """

    _required = ("WEATHER_STATUS",)

    def __init__(
        self,
        *,
        cloud_cover_element: str | None = None,
        **endpoint: Unpack[Endpoint],
    ) -> None:
        super().__init__(**endpoint)
        self.cloud_cover_element = cloud_cover_element
        # The connection and its version when is_safe() (or connect()) last looked: an Alert
        # reported after it is a danger that check has not answered yet.
        self._checked: tuple[IndiConnection | None, int] = (None, 0)

    def connect(self) -> None:
        """Connect server and device (idempotent), then wait up to 5 s (at most
        ``connect_timeout_s``) for the station's first status report: until then the status is
        Idle, which reads as unsafe. Raises DeviceUnavailable."""
        if self.connected:
            return
        self._connect_device()
        conn = self._require()
        self._checked = (conn, conn.version())
        reported = conn.wait_until(
            lambda st: _reported(st.prop(self.device, "WEATHER_STATUS")),
            min(FIRST_REPORT_WAIT_S, self.connect_timeout_s),
            device=self.device,
            session=self._session,
        )
        if reported is None:
            log.warning("%s: no weather status yet; reads as unsafe until it reports", self.device)

    def is_safe(self) -> bool:
        """From the station's reports (no I/O): False while the last WEATHER_STATUS is Alert or
        Idle, and once (logged, with the station's message) when it was reported Alert since
        the previous call (or connect) and has recovered since. Raises DeviceUnavailable."""
        conn = self._require()
        last_conn, last_version = self._checked
        seen = last_version if last_conn is conn else 0  # a new connection: all its reports
        self._checked = (conn, conn.version())
        snap = self._prop("WEATHER_STATUS")
        if snap is None:
            return False
        reason = self._alert_reason(snap, seen, fallback="no message")
        if snap.state != "Alert" and reason is not None:
            log.warning("%s: the weather station reported danger (WEATHER_STATUS Alert: %s) "
                        "since the last check, now %s: unsafe", self.device, reason, snap.state)
            return False
        return snap.state in ("Ok", "Busy")

    def cloud_cover_pct(self) -> float | None:
        """Cloud cover in percent where the station reports it, else None. Raises
        DeviceUnavailable."""
        self._require()
        params = self._prop("WEATHER_PARAMETERS")
        if params is None:
            return None
        names = (self.cloud_cover_element,) if self.cloud_cover_element else CLOUD_COVER_ELEMENTS
        for name in names:
            if name in params.values:
                return params.number(name)
        return None


def _reported(snap: PropSnapshot | None) -> bool | None:
    return True if snap is not None and snap.state != "Idle" else None
