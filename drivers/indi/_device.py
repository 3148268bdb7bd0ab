"""Common base of the INDI device adapters: connecting a device, setting values, mapping errors."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Required
from typing import TypedDict
from typing import Unpack

from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import SettingRejected
from calibd.drivers.indi._conn import IndiConnection
from calibd.drivers.indi._conn import PropSnapshot
from calibd.drivers.indi._conn import ServerAddress
from calibd.drivers.indi._conn import Session
from calibd.drivers.indi._conn import acquire
from calibd.drivers.indi._conn import release
from calibd.drivers.indi._state import ConnState

log = logging.getLogger(__name__)

DEFAULT_SET_TIMEOUT_S = 10.0  # real seconds for a device to answer a new value
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+ -]{0,63}")


def _plain_name(name: str) -> bool:
    """True for an element name that is safe to send back (non-empty, no markup)."""
    return _PLAIN_NAME.fullmatch(name) is not None


class Endpoint(TypedDict, total=False):
    """The keyword arguments every INDI device takes (see :class:`IndiDevice`)."""

    device: Required[str]
    host: str
    port: int
    socket_path: str | None
    connect_timeout_s: float
    polling_ms: int | None


class SetOptions(TypedDict, total=False):
    """The keyword options of :meth:`IndiDevice._set_number` and :meth:`IndiDevice._set_switch`.
    Each may be left out; its default is in brackets.

    ``device`` (None: this object's device)
        Another device on the same connection that defines the property (e.g. a dust cap).
    ``accept_busy`` (False)
        A Busy report counts as the answer (the device started a motion), not only Ok or Idle.
    ``timeout_s`` (None: ``set_timeout_s``)
        Real seconds to wait for the device's answer.
    """

    device: str | None
    accept_busy: bool
    timeout_s: float | None


class IndiDevice:
    """One INDI device on a shared server connection.

    Keyword-only configuration: ``host``/``port`` (TCP) or ``socket_path`` (indiserver's local
    socket, ``-u``), ``device`` (the INDI device name), ``connect_timeout_s`` (real seconds for
    server + device connection), ``polling_ms`` (sets the device's POLLING_PERIOD on every connect
    when it has one; None leaves it alone).
    """

    _required: tuple[str, ...] = ()  # properties that must be defined once connected

    def __init__(
        self,
        *,
        device: str,
        host: str = "localhost",
        port: int = 7624,
        socket_path: str | None = None,
        connect_timeout_s: float = 10.0,
        polling_ms: int | None = None,
        set_timeout_s: float = DEFAULT_SET_TIMEOUT_S,
    ) -> None:
        if not device:
            raise SettingRejected("an INDI device name is required")
        self.device = device
        self.address = ServerAddress(host=host, port=port, socket_path=socket_path)
        self.connect_timeout_s = connect_timeout_s
        self.polling_ms = polling_ms
        self.set_timeout_s = set_timeout_s
        self._conn: IndiConnection | None = None
        self._session: Session | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.device!r} on {self.address})"

    # ------------------------------------------------------------------ connection

    @property
    def connected(self) -> bool:
        """True while the server connection and this device's session are alive (no I/O)."""
        conn, session = self._conn, self._session
        if conn is None or session is None or conn.reset_requested:
            return False
        return conn.read(lambda st: st.session_valid(self.device, session))

    def _connect_device(self, extra_devices: Iterable[str] = ()) -> None:
        """Connect server and device(s) and wait for the required properties. Blocks up to
        ``connect_timeout_s`` per step. Raises DeviceUnavailable."""
        if self._conn is None:
            self._conn = acquire(self.address)
        conn = self._conn
        self._session = None
        conn.ensure_server(self.connect_timeout_s)
        for name in (self.device, *extra_devices):
            self._connect_one(conn, name)
        self._session = conn.read(lambda st: st.session(self.device))
        missing = self._wait_props(conn, self.device, self._required)
        if missing:
            self._session = None
            raise DeviceUnavailable(
                f"device did not define {', '.join(missing)} after connecting",
                device=self.device,
            )
        if self.polling_ms is not None and conn.prop(self.device, "POLLING_PERIOD"):
            self._set_number("POLLING_PERIOD", {"PERIOD_MS": float(self.polling_ms)})

    def _connect_one(self, conn: IndiConnection, name: str) -> None:
        timeout = self.connect_timeout_s

        def present(st: ConnState) -> PropSnapshot | bool | None:
            if not st.server_up:
                return False
            return st.prop(name, "CONNECTION")

        found = conn.wait_until(present, timeout)
        if not isinstance(found, PropSnapshot):
            offered = conn.read(lambda st: sorted(st.devices))
            if found is False:
                raise DeviceUnavailable(f"lost connection to {conn.address}", device=name)
            if not offered:
                conn.request_reset()  # a server that sent nothing at all is re-opened next time
            raise DeviceUnavailable(
                f"{conn.address} does not offer this device (offered: "
                f"{', '.join(offered) or 'none'})",
                device=name,
            )
        if found.is_on("CONNECT") and found.state != "Alert":
            return
        before = conn.version()
        log.info("%s: connecting device", name)
        conn.send_switch(name, "CONNECTION", {"CONNECT": True, "DISCONNECT": False})

        def done(st: ConnState) -> PropSnapshot | bool | None:
            if not st.server_up:
                return False
            snap = st.answer(name, "CONNECTION", before)
            if snap is None or snap.alerted_since(before) or snap.is_on("CONNECT"):
                return snap
            return None

        snap = conn.wait_until(done, timeout)
        if snap is None:
            conn.request_reset()  # a server that does not answer at all is re-opened next time
        if snap is False:
            raise DeviceUnavailable(f"lost connection to {conn.address}", device=name)
        # The detail is what the device said since the request (up to its Alert), never an
        # older message. Without an Alert, ``done`` returned only with CONNECT on.
        detail: str | None
        if isinstance(snap, PropSnapshot):
            detail = self._alert_reason(snap, before, name)
        else:
            detail = self._message_since(before, name) or f"no answer within {timeout:g} s"
        if detail is not None:
            raise DeviceUnavailable(f"device did not connect: {detail}", device=name)

    def _wait_props(self, conn: IndiConnection, device: str, names: Iterable[str]) -> list[str]:
        wanted = tuple(names)

        def all_there(st: ConnState) -> bool | None:
            return True if all(st.prop(device, n) for n in wanted) else None

        if conn.wait_until(all_there, self.connect_timeout_s):
            return []
        return [n for n in wanted if conn.prop(device, n) is None]

    def _release(self) -> None:
        conn, self._conn, self._session = self._conn, None, None
        if conn is not None:
            release(conn)

    def disconnect(self) -> None:
        """Forget the device and drop this object's share of the server connection (the last
        user disconnects from the server). The INDI device itself stays connected for other
        clients. Never raises."""
        try:
            self._release()
        except Exception as err:
            log.debug("%s: disconnect: %r", self, err)

    # ------------------------------------------------------------------ helpers

    def _require(self) -> IndiConnection:
        """The connection, if this device's session is alive; else DeviceUnavailable."""
        conn, session = self._conn, self._session
        if conn is None or session is None:
            raise DeviceUnavailable("not connected", device=self.device)
        if not conn.read(lambda st: st.session_valid(self.device, session)):
            raise DeviceUnavailable(
                conn.read(lambda st: conn._lost_reason(self.device)), device=self.device
            )
        return conn

    def _prop(self, name: str, device: str | None = None) -> PropSnapshot | None:
        conn = self._conn
        return conn.prop(device or self.device, name) if conn else None

    def _send_abort(self, name: str) -> None:
        """Switch ``name``'s ABORT element on (an ``…_ABORT_…`` property) without waiting for an
        answer. Never raises: an abort is best effort (a failure is logged at debug level; the
        caller's own wait keeps its deadline)."""
        conn = self._conn
        if conn is None:
            return
        try:
            conn.send_switch(self.device, name, {"ABORT": True})
        except Exception as err:
            log.debug("%s: %s not sent: %r", self.device, name, err)

    def _message_since(self, version: int, device: str | None = None,
                       until: int | None = None) -> str | None:
        """The device's latest message after connection version ``version`` (and not after
        ``until``, e.g. a snapshot's ``alerted``: a device sends the reason of an Alert before
        or with the report, and may say something else once it has recovered)."""
        conn = self._conn
        if conn is None:
            return None
        dev = device or self.device
        msgs = conn.read(lambda st: st.messages_since(dev, version, until))
        return msgs[-1] if msgs else None

    def _alert_reason(self, snap: PropSnapshot, before: int, device: str | None = None,
                      fallback: str = "state Alert") -> str | None:
        """Why the device refused: None unless ``snap``'s property was reported Alert since
        connection version ``before`` (the request), even if another report followed; else the
        device's last message up to that Alert, or ``fallback`` when it said nothing."""
        if not snap.alerted_since(before):
            return None
        return self._message_since(before, device, snap.alerted) or fallback

    def _set_number(
        self,
        name: str,
        changes: Mapping[str, float],
        **options: Unpack[SetOptions],
    ) -> PropSnapshot:
        """Send ``changes`` (other elements keep their current values), checked against the
        property's limits first, and wait for the device's answer (:class:`SetOptions`).
        Returns the device's update. Raises SettingRejected (out of limits, Alert),
        DeviceUnavailable."""

        def send(conn: IndiConnection, dev: str, snap: PropSnapshot) -> None:
            values: dict[str, float] = {k: snap.number(k) for k in snap.values}
            for element, value in changes.items():
                if element not in values:
                    raise SettingRejected(f"{name} has no element {element}", device=dev)
                lo, hi, _ = snap.limits.get(element, (0.0, 0.0, 0.0))
                if not math.isfinite(value) or (hi > lo and not lo <= value <= hi):
                    raise SettingRejected(
                        f"{name}.{element} = {value:g} is outside the device's range"
                        f" [{lo:g}, {hi:g}]",
                        device=dev,
                    )
                values[element] = float(value)
            conn.send_number(dev, name, values)

        return self._set(name, "number", send, options)

    def _set_switch(
        self,
        name: str,
        on: str,
        **options: Unpack[SetOptions],
    ) -> PropSnapshot:
        """Turn switch ``on`` of a one-of-many vector on (the others off) and wait for the
        device's answer (:class:`SetOptions`). Returns the device's update. Raises
        SettingRejected (unknown element, Alert), DeviceUnavailable."""

        def send(conn: IndiConnection, dev: str, snap: PropSnapshot) -> None:
            if on not in snap.values:
                raise SettingRejected(f"{name} has no element {on}", device=dev)
            # Elements with odd names (an empty one has been seen in CCD_TRANSFER_FORMAT) are
            # left out: for a one-of-many vector the device turns them off by itself.
            states = {k: k == on for k in snap.values if k == on or _plain_name(k)}
            conn.send_switch(dev, name, states)

        return self._set(name, "switch", send, options)

    def _set(
        self,
        name: str,
        kind: str,
        send: Callable[[IndiConnection, str, PropSnapshot], None],
        options: SetOptions,
    ) -> PropSnapshot:
        """Check that ``options``' device defines a ``kind`` property ``name``, call
        ``send(conn, dev, current snapshot)`` (which validates and sends) and wait for the
        device's answer as ``options`` say (their defaults are applied here, the one place).
        Raises TypeError (an unknown option, before anything is sent), SettingRejected (from
        ``send``, Alert), DeviceUnavailable."""
        unknown = sorted(options.keys() - SetOptions.__optional_keys__)
        if unknown:
            raise TypeError(f"unknown option(s) for setting {name}: {', '.join(unknown)}")
        dev = options.get("device") or self.device
        accept_busy = options.get("accept_busy", False)
        timeout_s = options.get("timeout_s")
        conn = self._require()
        current = conn.prop(dev, name)
        if current is None or current.kind != kind:
            raise DeviceUnavailable(f"device has no {kind} property {name}", device=dev)
        session = conn.read(lambda st: st.session(dev))
        before = conn.version()
        send(conn, dev, current)

        timeout = self.set_timeout_s if timeout_s is None else timeout_s
        snap = conn.wait_until(lambda st: st.answer(dev, name, before, accept_busy=accept_busy),
                               timeout, device=dev, session=session)
        if snap is None:
            conn.request_reset()  # a silent server is re-opened by the next connect()
            raise DeviceUnavailable(f"no answer to {name} within {timeout:g} s", device=dev)
        reason = self._alert_reason(snap, before, dev)
        if reason is not None:
            raise SettingRejected(f"{name} refused: {reason}", device=dev)
        return snap
