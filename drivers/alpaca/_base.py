"""Plumbing shared by every Alpaca device: alpyca access bounded by our own timeouts, translation of
alpyca / transport failures into :mod:`drivers.errors`, connection handling, and the known
deviations ("quirks") of particular Alpaca servers.

alpyca (import ``alpaca``) is imported lazily, here and in the device modules only.

Why the timeouts are ours: alpyca sends every property/method call through one ``requests.Session``
per device with a fixed 5 s timeout, and holds a *class-wide* lock (``Device._ctid_lock``) for the
whole HTTP request. One slow server therefore delays every Alpaca device in the process for as long
as a request may take. We replace the session's timeout by ``timeout_s`` (see
:class:`_BoundSession`) and never send an image download through alpyca (see
:mod:`drivers.alpaca.imagebytes`).
"""

from __future__ import annotations

import enum
import http.client
import json
import logging
import math
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import ClassVar
from typing import Literal
from typing import TypedDict
from typing import TypeVar
from urllib.parse import urlencode

from calibd.drivers.clock import Clock
from calibd.drivers.clock import RealClock
from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import NotSupported
from calibd.drivers.errors import SettingRejected

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: What a call was doing, which decides how a failure is classified.
Context = Literal["query", "setting", "exposure"]

# ASCOM Alpaca error numbers (Alpaca API reference, "Alpaca error numbers").
NOT_IMPLEMENTED = 0x400
INVALID_VALUE = 0x401
VALUE_NOT_SET = 0x402
NOT_CONNECTED = 0x407
INVALID_WHILE_PARKED = 0x408
INVALID_WHILE_SLAVED = 0x409
INVALID_OPERATION = 0x40B
ACTION_NOT_IMPLEMENTED = 0x40C
OPERATION_CANCELLED = 0x40E

#: InterfaceVersion from which a device type has Connect()/Disconnect()/Connecting (Platform 7).
PLATFORM7_INTERFACE: Mapping[str, int] = {
    "camera": 4,
    "covercalibrator": 2,
    "dome": 3,
    "filterwheel": 3,
    "focuser": 4,
    "observingconditions": 2,
    "rotator": 4,
    "safetymonitor": 3,
    "switch": 3,
    "telescope": 4,
}


class Quirk(enum.StrEnum):
    """Known deviations of an Alpaca server from the specification that the drivers work around."""

    #: AbortExposure returns the camera to Idle, but the exposure keeps running in the background
    #: and later sets ImageReady (with its own image) on top of whatever exposure came next.
    ABORT_KEEPS_EXPOSING = "abort-keeps-exposing"
    #: In Gains-list mode, writing Gain = i makes Gain read back i + 1.
    GAIN_INDEX_READBACK_PLUS_ONE = "gain-index-readback-plus-one"
    #: ObservingConditions.CloudCover is a fraction 0..1 instead of percent 0..100.
    CLOUD_COVER_FRACTION = "cloud-cover-fraction"


#: Quirk sets of servers recognised by :func:`fingerprint_server`.
KNOWN_SERVER_QUIRKS: Mapping[str, frozenset[Quirk]] = {
    "alpaca-simulators": frozenset(
        {Quirk.ABORT_KEEPS_EXPOSING, Quirk.GAIN_INDEX_READBACK_PLUS_ONE, Quirk.CLOUD_COVER_FRACTION}
    ),
}


def http_get_json(
    host: str,
    port: int,
    path: str,
    *,
    timeout_s: float,
    params: Mapping[str, str] | None = None,
    max_bytes: int = 4 * 1024 * 1024,
) -> Any:
    """GET ``path`` on ``host:port`` and decode the JSON answer.

    Blocks at most about ``timeout_s`` per socket operation (connect, each read). Used for the
    management API, discovery and server fingerprinting, never for device calls. Raises OSError
    (unreachable, timeout), ValueError (HTTP status other than 200, not JSON, too large).
    """
    query = f"?{urlencode(params)}" if params else ""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path + query, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read(max_bytes + 1)
        if len(body) > max_bytes:
            raise ValueError(f"GET {path}: answer larger than {max_bytes} bytes")
        if resp.status != 200:
            text = body[:200].decode("utf-8", "replace")
            raise ValueError(f"GET {path}: HTTP {resp.status} {resp.reason}: {text}")
        return json.loads(body)
    finally:
        conn.close()


def fingerprint_server(host: str, port: int, timeout_s: float) -> str | None:
    """Name of a recognised Alpaca server implementation at ``host:port``, or None.

    alpaca-simulators answers ``GET /`` with ``{"message": "Alpaca Observatory Simulator", ...}``;
    that reply does not depend on its device configuration. Blocks up to ``timeout_s``; never
    raises.
    """
    try:
        doc = http_get_json(host, port, "/", timeout_s=timeout_s, max_bytes=64 * 1024)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    if isinstance(doc, dict) and doc.get("message") == "Alpaca Observatory Simulator":
        return "alpaca-simulators"
    return None


def _alpaca_number(err: BaseException) -> int | None:
    """The Alpaca error number (or HTTP status) carried by an alpyca exception, else None."""
    if not type(err).__module__.startswith("alpaca"):
        return None
    number = getattr(err, "number", None)
    return number if isinstance(number, int) else None


def _alpaca_message(err: BaseException) -> str:
    message = getattr(err, "message", None)
    return str(message) if message else str(err)


def translate(err: BaseException, *, context: Context, what: str, device: str) -> DeviceError:
    """Map an alpyca / transport exception to the :mod:`drivers.errors` class to raise ``from err``.

    * unreachable, refused, reset, timed out, NotConnected -> DeviceUnavailable
    * InvalidValue; ValueNotSet, InvalidOperation, Parked/Slaved on a setting -> SettingRejected
      (with the device's own message)
    * NotImplemented (ActionNotImplemented outside an exposure) -> NotSupported
    * any other device error during an exposure -> ExposureFailed; elsewhere -> DeviceUnavailable
    """
    if isinstance(err, DeviceError):
        return err
    name = type(err).__name__
    number = _alpaca_number(err)
    if number is not None:
        message = _alpaca_message(err)
        if name == "AlpacaRequestException":  # HTTP status outside 200..203
            text = f"{what}: HTTP {number}: {message}"
            if number in (400, 422) and context == "setting":
                return SettingRejected(text, device=device)
            if number in (400, 404) and context == "query":
                return NotSupported(text, device=device)
            if context == "exposure":
                return ExposureFailed(text, device=device)
            return DeviceUnavailable(text, device=device)
        text = f"{what}: {message} (Alpaca error 0x{number:X})"
        if number == NOT_CONNECTED:
            return DeviceUnavailable(text, device=device)
        if number == INVALID_VALUE:
            return SettingRejected(text, device=device)
        if number == NOT_IMPLEMENTED:
            return NotSupported(text, device=device)
        if context == "setting" and number in (
            VALUE_NOT_SET,  # alpaca-simulators rejects bad binning / read-out modes with this
            INVALID_OPERATION,
            INVALID_WHILE_PARKED,
            INVALID_WHILE_SLAVED,
        ):
            return SettingRejected(text, device=device)
        if context == "exposure":
            # includes 0x40C, which alpaca-simulators uses for "Camera is not idle"
            return ExposureFailed(text, device=device)
        if number in (VALUE_NOT_SET, ACTION_NOT_IMPLEMENTED):
            return NotSupported(text, device=device)
        return DeviceUnavailable(text, device=device)
    if isinstance(err, OSError):  # requests' exceptions are OSErrors, so are socket errors
        kind = "timed out" if "Timeout" in name or isinstance(err, TimeoutError) else "failed"
        return DeviceUnavailable(f"{what}: request {kind}: {err}", device=device)
    text = f"{what}: unexpected answer ({name}: {err})"
    if context == "exposure":
        return ExposureFailed(text, device=device)
    return DeviceUnavailable(text, device=device)


class _BoundSession:
    """Stands in for an alpyca device's ``requests.Session``: forces our (connect, read) timeout
    on every request in place of alpyca's fixed 5 s, and our ClientID if one was given.

    Relies on alpyca 3.1 calling ``self.rqs.get(url, params=..., timeout=...)`` and
    ``self.rqs.put(url, data=..., timeout=...)``; anything else is delegated unchanged.
    """

    def __init__(self, inner: Any, timeout: tuple[float, float], client_id: int | None) -> None:
        self._inner = inner
        self._timeout = timeout
        self._client_id = client_id

    def get(self, url: str, **kwargs: Any) -> Any:
        kwargs["timeout"] = self._timeout
        if self._client_id is not None:
            kwargs["params"] = {**(kwargs.get("params") or {}), "ClientID": str(self._client_id)}
        return self._inner.get(url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Any:
        kwargs["timeout"] = self._timeout
        if self._client_id is not None:
            kwargs["data"] = {**(kwargs.get("data") or {}), "ClientID": str(self._client_id)}
        return self._inner.put(url, **kwargs)

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def positive_seconds(name: str, value: float) -> float:
    """``value`` as a float; raises ValueError naming the option ``name`` unless it is a positive
    finite number of seconds."""
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number of seconds, got {value}")
    return float(value)


class Endpoint(TypedDict, total=False):
    """The keyword arguments every Alpaca device takes (see :class:`AlpacaDevice`)."""

    host: str
    port: int
    device_number: int
    timeout_s: float
    client_id: int | None
    clock: Clock | None
    quirks: Iterable[str] | None


class AlpacaDevice:
    """Base of the Alpaca device drivers: one device ``device_type/device_number`` on ``host:port``.

    Every I/O call blocks at most ``timeout_s`` real seconds per HTTP request (connect and read
    each) and raises only :mod:`drivers.errors` classes. After a transport failure or a
    NotConnected answer :attr:`connected` turns False until :meth:`connect` succeeds again.

    ``quirks``: None = recognise the server at connect (:func:`fingerprint_server`) and apply the
    quirks known for it; an iterable of :class:`Quirk` values forces exactly that set.
    """

    #: The ASCOM device type as ASCOM spells it ("CoverCalibrator"), which is also the name of
    #: alpyca's class for it; :attr:`device_type` and alpyca's module name are derived from it.
    _ascom_type: ClassVar[str] = ""
    #: ``Can…`` properties read at every connect (before :meth:`_after_connect`); :meth:`_can`.
    _capabilities: ClassVar[tuple[str, ...]] = ()
    #: How :meth:`_need` names the device ("the mount reports CanPark = False").
    _noun: ClassVar[str] = "device"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 11111,
        device_number: int = 0,
        timeout_s: float = 5.0,
        client_id: int | None = None,
        clock: Clock | None = None,
        quirks: Iterable[str] | None = None,
    ) -> None:
        if not 0 <= device_number <= 0xFFFFFFFF:
            raise ValueError(f"device_number must be 0..4294967295, got {device_number}")
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = int(port)
        self.device_number = int(device_number)
        self.timeout_s = positive_seconds("timeout_s", timeout_s)
        self.client_id = client_id
        self._clock: Clock = clock or RealClock()
        self._forced_quirks = None if quirks is None else frozenset(Quirk(q) for q in quirks)
        self._quirks: frozenset[Quirk] = self._forced_quirks or frozenset()
        self.server_kind: str | None = None
        self.interface_version = 0
        self._dev: Any = None
        self._connected = False
        self._capable: dict[str, bool] = {}

    # -- identity ------------------------------------------------------------------------------

    @property
    def device_type(self) -> str:
        """The Alpaca API's name of the device type: the ASCOM one in lower case ("dome")."""
        return self._ascom_type.lower()

    @property
    def label(self) -> str:
        """``alpaca://host:port/type/n``: how log lines and errors name this device."""
        return f"alpaca://{self.host}:{self.port}/{self.device_type}/{self.device_number}"

    @property
    def quirks(self) -> frozenset[Quirk]:
        """The server deviations being worked around (decided at connect)."""
        return self._quirks

    @property
    def connected(self) -> bool:
        """True while the device answers (a flag: never does I/O)."""
        return self._connected

    # -- calls -----------------------------------------------------------------------------------

    def _new_alpyca(self) -> Any:
        import importlib

        module = importlib.import_module(f"alpaca.{self.device_type}")
        factory = getattr(module, self._ascom_type)
        dev = factory(f"{self.host}:{self.port}", self.device_number)
        inner = getattr(dev, "rqs", None)
        if inner is not None:
            connect_s = min(self.timeout_s, 5.0)
            dev.rqs = _BoundSession(inner, (connect_s, self.timeout_s), self.client_id)
        else:  # pragma: no cover - only with an alpyca that changed its internals
            logger.warning("%s: cannot bound alpyca's request timeout (no .rqs)", self.label)
        return dev

    def _call(self, fn: Callable[[], T], *, what: str, context: Context = "query") -> T:
        """Run one alpyca call, translating every failure. Marks the device unavailable on
        transport / NotConnected failures."""
        if self._dev is None:
            raise DeviceUnavailable("not connected: call connect() first", device=self.label)
        try:
            return fn()
        except Exception as err:
            mapped = translate(err, context=context, what=what, device=self.label)
            if isinstance(mapped, DeviceUnavailable):
                self._connected = False
            raise mapped from err

    def _get(self, name: str, *, context: Context = "query") -> Any:
        """Read the alpyca property ``name``."""
        dev = self._dev
        return self._call(lambda: getattr(dev, name), what=name, context=context)

    def _set(self, name: str, value: Any) -> None:
        """Write the alpyca property ``name``; a refusal raises SettingRejected."""
        dev = self._dev
        self._call(lambda: setattr(dev, name, value), what=f"{name} = {value!r}", context="setting")

    def _optional(self, name: str) -> Any | None:
        """Read ``name``; None when the device does not implement it (or has no value yet)."""
        try:
            return self._get(name)
        except NotSupported:
            return None

    def _require(self) -> None:
        if not self._connected or self._dev is None:
            raise DeviceUnavailable("not connected: call connect() first", device=self.label)

    def _can(self, capability: str) -> bool:
        """Whether the device reported the ``Can…`` property ``capability`` True at the last
        connect (one of :attr:`_capabilities`; False where it lacks the property). No I/O."""
        return self._capable.get(capability, False)

    def _need(self, capability: str) -> None:
        """Raise NotSupported unless :meth:`_can` ``capability``."""
        if not self._can(capability):
            raise NotSupported(f"the {self._noun} reports {capability} = False",
                               device=self.label)

    # -- connection ------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect the device (idempotent: a connected device that still says Connected is left
        alone). Uses Connect()/Connecting on Platform 7 devices, Connected = True otherwise, then
        lets the subclass read its capabilities and restore what it had set before.

        Blocks up to a few ``timeout_s`` (Platform 7: until Connecting ends, at most
        6 x ``timeout_s``). Raises DeviceUnavailable (unreachable, unknown device number, refused).
        """
        if self._connected and self._dev is not None:
            try:
                if bool(self._get("Connected")):
                    return
            except DeviceError:
                pass
            logger.info("%s: the device no longer reports Connected; reconnecting", self.label)
        self._connected = False
        old, self._dev = self._dev, None
        if old is not None:
            _close_quietly(old)
        try:
            self._dev = self._new_alpyca()
            self._open_connection()
            self._connected = True
            self._capable = {name: bool(self._optional(name)) for name in self._capabilities}
            self._after_connect()
        except DeviceError as err:
            self._connected = False
            if isinstance(err, DeviceUnavailable):
                raise
            raise DeviceUnavailable(f"cannot connect: {err}", device=self.label) from err
        logger.info(
            "%s connected (interface v%d, server %s, quirks %s)",
            self.label,
            self.interface_version,
            self.server_kind or "unrecognised",
            ",".join(sorted(self._quirks)) or "none",
        )

    def _open_connection(self) -> None:
        if self._forced_quirks is None:
            self.server_kind = fingerprint_server(self.host, self.port, self.timeout_s)
            self._quirks = KNOWN_SERVER_QUIRKS.get(self.server_kind or "", frozenset())
        try:
            self.interface_version = int(self._get("InterfaceVersion"))
        except NotSupported:  # interface version 1 devices lack the property
            self.interface_version = 1
        dev = self._dev
        if self.interface_version >= PLATFORM7_INTERFACE.get(self.device_type, 99):
            self._call(dev.Connect, what="Connect()", context="setting")
            deadline = self._clock.monotonic() + 6 * self.timeout_s
            while bool(self._get("Connecting")):
                if self._clock.monotonic() > deadline:
                    raise DeviceUnavailable("Connect() did not finish", device=self.label)
                self._clock.sleep(0.1)
        else:
            # Not alpyca's Connect(): for pre-Platform-7 devices it emulates Connect() with a
            # thread and a sticky "already connected" flag that would make a reconnect a no-op.
            self._set("Connected", True)
        if not bool(self._get("Connected")):
            raise DeviceUnavailable("the device refused to connect", device=self.label)

    def _after_connect(self) -> None:
        """Subclass hook: read capabilities, restore earlier settings. Raises DeviceError."""

    def disconnect(self) -> None:
        """Disconnect (Connected = False, or Disconnect()). Never raises; blocks up to
        ``timeout_s``."""
        dev, self._dev = self._dev, None
        was_connected, self._connected = self._connected, False
        if dev is None:
            return
        try:
            if was_connected:
                if self.interface_version >= PLATFORM7_INTERFACE.get(self.device_type, 99):
                    dev.Disconnect()
                else:
                    dev.Connected = False
        except Exception as err:  # disconnect never raises
            logger.debug("%s: disconnect failed: %s", self.label, err)
        finally:
            _close_quietly(dev)


def _close_quietly(dev: Any) -> None:
    try:
        session = getattr(dev, "rqs", None)
        if session is not None:
            session.close()
    except Exception as err:  # best effort cleanup
        logger.debug("closing an alpyca session failed: %s", err)
