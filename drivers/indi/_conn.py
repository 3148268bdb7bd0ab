"""One shared pyindi-client connection per indiserver, and the thread-safe state it feeds.

Threading model
---------------
pyindi-client runs its callbacks on one listener thread; ``connectServer()`` and
``disconnectServer()`` also run ``serverConnected``/``serverDisconnected`` synchronously on the
*calling* thread. So:

* every callback body is wrapped (an exception escaping a callback silently kills the listener)
  and only copies data into :class:`ConnState` under :attr:`IndiConnection._cond`: property
  snapshots (plain Python values, a global version number per update), device generations,
  messages, and BLOB bytes (``getblobdata()`` returns a fresh ``bytearray``) appended to a bounded
  per-property queue. No I/O, no logging, no parsing in a callback.
* callers wait on the condition for the *device's* update (a version newer than the one seen
  before sending), always with a deadline, and never hold the condition while calling PyIndi
  (callbacks may run on the caller's own thread). PyIndi calls from our threads are serialised
  by :attr:`IndiConnection._io_lock`, which callbacks never take.
* values are sent as freshly built stand-alone property vectors; the client library's own device
  tree (the "local copy", which shows what was sent rather than what the device did) is never read
  or written outside the listener thread.
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
import weakref
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import TypeVar

from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.indi._client import client_class
from calibd.drivers.indi._client import retire
from calibd.drivers.indi._quiet import native_output_to_log
from calibd.drivers.indi._state import _MSG_PREFIX
from calibd.drivers.indi._state import BLOB_QUEUE_LEN
from calibd.drivers.indi._state import BlobRecord
from calibd.drivers.indi._state import ConnState
from calibd.drivers.indi._state import PropSnapshot
from calibd.drivers.indi._state import ServerAddress
from calibd.drivers.indi._state import Session
from calibd.drivers.indi._state import _DeviceEntry

__all__ = [
    "BlobRecord",
    "IndiConnection",
    "PropSnapshot",
    "ServerAddress",
    "Session",
    "acquire",
    "release",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


def _state_name(prop: Any) -> str:
    try:
        return str(prop.getStateAsString())
    except Exception:
        return "Idle"


class IndiConnection:
    """A pyindi-client ``BaseClient`` plus the state its callbacks maintain.

    Shared by every device object of a process that talks to the same server (see
    :func:`acquire`). Thread-safe. Raises only :class:`drivers.errors.DeviceUnavailable`.
    """

    def __init__(self, address: ServerAddress) -> None:
        self.address = address
        self._cond = threading.Condition(threading.Lock())
        self._io_lock = threading.RLock()  # serialises PyIndi calls made from our threads
        self._connect_lock = threading.Lock()
        self._state = ConnState()
        self._reset_requested = False
        self._reported_errors = 0
        self._client: Any = None
        self._pyindi: Any = None
        self._ever_connected = False
        self._refs = 0
        self._closed = False

    # ------------------------------------------------------------------ callbacks (listener)

    def _cb_new_device(self, dev: Any) -> None:
        name = str(dev.getDeviceName())
        with self._cond:
            st = self._state
            gen = st.bump()
            old = st.devices.get(name)
            st.devices[name] = _DeviceEntry(gen=gen, interface=old.interface if old else None)
            self._cond.notify_all()

    def _cb_remove_device(self, dev: Any) -> None:
        name = str(dev.getDeviceName())
        with self._cond:
            st = self._state
            st.bump()
            st.devices.pop(name, None)
            for key in [k for k in st.props if k[0] == name]:
                del st.props[key]
            for key in [k for k in st.blobs if k[0] == name]:
                del st.blobs[key]
            self._cond.notify_all()

    def _cb_property(self, prop: Any, new: bool) -> None:
        py = self._pyindi
        device = str(prop.getDeviceName())
        name = str(prop.getName())
        ptype = prop.getType()
        state = _state_name(prop)
        writable = prop.getPermission() != py.IP_RO
        readable = prop.getPermission() != py.IP_WO
        values: dict[str, float | bool | str] = {}
        limits: dict[str, tuple[float, float, float]] = {}
        blobs: list[tuple[str, str, bytes | bytearray]] = []
        if ptype == py.INDI_NUMBER:
            kind = "number"
            for w in py.PropertyNumber(prop):
                values[str(w.getName())] = float(w.getValue())
                limits[str(w.getName())] = (
                    float(w.getMin()),
                    float(w.getMax()),
                    float(w.getStep()),
                )
        elif ptype == py.INDI_SWITCH:
            kind = "switch"
            for w in py.PropertySwitch(prop):
                values[str(w.getName())] = w.getState() == py.ISS_ON
        elif ptype == py.INDI_TEXT:
            kind = "text"
            for w in py.PropertyText(prop):
                values[str(w.getName())] = str(w.getText())
        elif ptype == py.INDI_LIGHT:
            kind = "light"
            for w in py.PropertyLight(prop):
                values[str(w.getName())] = str(w.getStateAsString())
        elif ptype == py.INDI_BLOB:
            kind = "blob"
            for w in py.PropertyBlob(prop):
                size = int(w.getBlobLen())
                if size <= 0:
                    continue
                fmt = str(w.getFormat())
                # getblobdata() copies into a new bytearray; it is unsafe on compressed blobs.
                if fmt.endswith(".z") or fmt.endswith(".fz"):
                    data: bytes | bytearray = w.getBlobAsString().encode("utf-8", "surrogateescape")
                else:
                    data = w.getblobdata()
                blobs.append((str(w.getName()), fmt, data))
                values[str(w.getName())] = fmt
        else:
            kind = "other"
        now = time.monotonic()
        with self._cond:
            st = self._state
            version = st.bump()
            if new:
                st.definitions += 1
            previous = st.props.get((device, name))
            alerted = version if state == "Alert" else (previous.alerted if previous else 0)
            busied = version if state == "Busy" else (previous.busied if previous else 0)
            st.props[(device, name)] = PropSnapshot(
                device, name, kind, state, writable, values, limits, version, readable, alerted,
                busied,
            )
            if name == "DRIVER_INFO" and "DRIVER_INTERFACE" in values:
                entry = st.devices.get(device)
                if entry is not None:
                    try:
                        entry.interface = int(str(values["DRIVER_INTERFACE"]))
                    except ValueError:
                        entry.interface = None
            for element, fmt, data in blobs:
                queue = st.blobs.setdefault(
                    (device, name), collections.deque(maxlen=BLOB_QUEUE_LEN)
                )
                queue.append(BlobRecord(device, name, element, fmt, data, version, now))
            self._cond.notify_all()

    def _cb_remove_property(self, prop: Any) -> None:
        key = (str(prop.getDeviceName()), str(prop.getName()))
        with self._cond:
            self._state.bump()
            self._state.props.pop(key, None)
            self._cond.notify_all()

    def _cb_message(self, dev: Any, message_id: int) -> None:
        device = str(dev.getDeviceName())
        text = _MSG_PREFIX.sub("", str(dev.messageQueue(message_id))).strip()
        with self._cond:
            version = self._state.bump()
            self._state.messages.append((version, device, text))
            self._cond.notify_all()

    def _cb_server(self, up: bool) -> None:
        with self._cond:
            st = self._state
            st.bump()
            st.server_gen += 1
            st.server_up = up
            if not up:
                st.disconnects += 1
                st.devices.clear()
                st.props.clear()
                st.blobs.clear()
            self._cond.notify_all()

    def _cb_failed(self, err: BaseException) -> None:
        # Called from the callback wrappers' except clause: record, never raise, never log here.
        try:
            with self._cond:
                self._state.callback_errors += 1
                self._state.last_callback_error = repr(err)[:300]
        except BaseException:
            pass

    # ------------------------------------------------------------------ server connection

    def _make_client(self) -> Any:
        try:
            import PyIndi
        except ImportError as err:
            raise DeviceUnavailable(
                "pyindi-client is not installed (pip install --no-deps pyindi-client==2.3.0)"
            ) from err
        self._pyindi = PyIndi
        client = client_class(PyIndi)(weakref.ref(self))
        client.setServer(*self.address.client_args())
        return client

    def ensure_server(self, timeout_s: float) -> None:
        """Connect to the server unless already connected and healthy; blocks up to
        ``timeout_s`` real seconds. After a loss (or :meth:`request_reset`) it always calls
        ``disconnectServer()`` first: pyindi-client cannot ``connectServer()`` again otherwise.
        Raises DeviceUnavailable."""
        with self._connect_lock:
            if self._closed:
                raise DeviceUnavailable(f"{self.address}: connection closed")
            with self._cond:
                healthy = self._state.server_up and not self._reset_requested
            if healthy:
                return
            with self._io_lock:
                if self._client is None:
                    self._client = self._make_client()
                client = self._client
                if self._ever_connected:
                    try:
                        with native_output_to_log():
                            client.disconnectServer()
                    except Exception as err:
                        log.debug("%s: disconnectServer failed: %r", self.address, err)
                seconds = max(1, int(timeout_s))
                client.setConnectionTimeout(seconds, 0)
                log.info("connecting to %s", self.address)
                drops = self.read(lambda st: st.disconnects)
                with native_output_to_log():
                    ok = bool(client.connectServer())
                self._ever_connected = self._ever_connected or ok
            if not ok:
                raise DeviceUnavailable(f"cannot connect to {self.address}")
            self._reset_requested = False
            # The socket thread may report the connection closed *before* connectServer()
            # reports it open: then serverConnected comes last and would look healthy.
            with self._cond:
                dropped = self._state.disconnects != drops
                if dropped:
                    self._state.server_up = False
                    self._state.server_gen += 1
                    self._cond.notify_all()
            if dropped or not self.wait_until(lambda st: True if st.server_up else None, timeout_s):
                raise DeviceUnavailable(f"{self.address} closed the connection")

    @property
    def reset_requested(self) -> bool:
        """True after :meth:`request_reset` until the next successful (re)connect."""
        return self._reset_requested

    def request_reset(self) -> None:
        """Make the next :meth:`ensure_server` drop and re-open the connection."""
        self._reset_requested = True

    def close(self) -> None:
        """Disconnect from the server. Never raises."""
        self._closed = True
        with self._io_lock:
            client, self._client = self._client, None
            if client is None:
                return
            if self._ever_connected:
                try:
                    with native_output_to_log():
                        disconnected = client.disconnectServer()
                    if not disconnected:
                        log.debug("%s: disconnectServer reported no connection", self.address)
                except Exception as err:
                    log.debug("%s: disconnectServer failed: %r", self.address, err)
            retire(client)

    # ------------------------------------------------------------------ reading state

    def read(self, fn: Callable[[ConnState], T]) -> T:
        """Run ``fn`` on the state under the lock (``fn`` must be quick and not block)."""
        with self._cond:
            return fn(self._state)

    def prop(self, device: str, name: str) -> PropSnapshot | None:
        with self._cond:
            return self._state.prop(device, name)

    def version(self) -> int:
        with self._cond:
            return self._state.version

    def notify(self) -> None:
        """Wake every waiter (e.g. after setting an abort flag)."""
        with self._cond:
            self._cond.notify_all()

    def wait_until(
        self,
        predicate: Callable[[ConnState], T | None],
        timeout_s: float,
        *,
        device: str | None = None,
        session: Session | None = None,
    ) -> T | None:
        """Block until ``predicate(state)`` returns non-None (returned) or ``timeout_s`` real
        seconds pass (returns None). With ``device`` and ``session``, raises
        DeviceUnavailable as soon as that device's session ends (server lost, driver restarted,
        device disconnected)."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while True:
                st = self._state
                if device is not None and not st.session_valid(device, session):
                    raise DeviceUnavailable(self._lost_reason(device), device=device)
                result = predicate(st)
                if result is not None:
                    self._report_callback_errors()
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._report_callback_errors()
                    return None
                self._cond.wait(min(remaining, 1.0))

    def _lost_reason(self, device: str) -> str:
        st = self._state
        if not st.server_up:
            return f"lost connection to {self.address}"
        if device not in st.devices:
            return f"device is gone from {self.address} (driver restarted?)"
        return "device disconnected or restarted"

    def _report_callback_errors(self) -> None:
        st = self._state
        if st.callback_errors != self._reported_errors:
            self._reported_errors = st.callback_errors
            log.warning(
                "%s: %d pyindi callback error(s), last: %s",
                self.address,
                st.callback_errors,
                st.last_callback_error,
            )

    # ------------------------------------------------------------------ sending

    def _check_up(self, device: str) -> Any:
        with self._cond:
            up = self._state.server_up
        if not up or self._client is None:
            raise DeviceUnavailable(f"not connected to {self.address}", device=device)
        return self._client

    def send_number(self, device: str, name: str, values: Mapping[str, float]) -> None:
        """Send a new number vector (all ``values`` elements). Raises DeviceUnavailable."""
        self._send_vector(device, name, "Number", values, lambda py, el, v: el.setValue(float(v)))

    def send_switch(self, device: str, name: str, states: Mapping[str, bool]) -> None:
        """Send a new switch vector. Raises DeviceUnavailable."""
        self._send_vector(
            device,
            name,
            "Switch",
            states,
            lambda py, el, on: el.setState(py.ISS_ON if on else py.ISS_OFF),
        )

    def _send_vector(
        self,
        device: str,
        name: str,
        kind: str,
        values: Mapping[str, Any],
        assign: Callable[[Any, Any, Any], None],
    ) -> None:
        """Build PyIndi's ``Property<kind>`` from ``values`` (``assign(module, element, value)``
        sets one element) and send it with the client's ``sendNew<kind>``. Raises
        DeviceUnavailable."""
        with self._io_lock:
            client = self._check_up(device)
            py = self._pyindi
            vec = getattr(py, f"Property{kind}")(len(values))
            vec.setDeviceName(device)
            vec.setName(name)
            for i, (element, value) in enumerate(values.items()):
                vec[i].setName(element)
                assign(py, vec[i], value)
            getattr(client, f"sendNew{kind}")(vec)

    def enable_blobs(self, device: str, prop: str) -> None:
        """Ask the server to send ``device.prop`` BLOBs to this client as well (B_ALSO)."""
        with self._io_lock:
            client = self._check_up(device)
            client.setBLOBMode(self._pyindi.B_ALSO, device, prop)

    # ------------------------------------------------------------------ sharing

    def _acquire(self) -> None:
        self._refs += 1

    def _release(self) -> bool:
        self._refs -= 1
        return self._refs <= 0


# ---------------------------------------------------------------------- the shared registry

_registry: dict[ServerAddress, IndiConnection] = {}
_registry_lock = threading.Lock()


def acquire(address: ServerAddress) -> IndiConnection:
    """The process-wide connection to ``address`` (created on first use, not yet connected)."""
    with _registry_lock:
        conn = _registry.get(address)
        if conn is None:
            conn = IndiConnection(address)
            _registry[address] = conn
        conn._acquire()
        return conn


def release(conn: IndiConnection) -> None:
    """Drop one user of ``conn``; the last one disconnects it. Never raises."""
    with _registry_lock:
        last = conn._release()
        if last and _registry.get(conn.address) is conn:
            del _registry[conn.address]
    if last:
        conn.close()


@atexit.register
def _close_all() -> None:
    # A live listener thread at interpreter exit can abort the process: disconnect first.
    with _registry_lock:
        conns = list(_registry.values())
        _registry.clear()
    for conn in conns:
        conn.close()
