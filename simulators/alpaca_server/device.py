"""What every Alpaca device of this server shares: running a member call, the common members
(Connected, Connect/Disconnect/Connecting, DeviceState, Name, ..., Action), connection checks and
the translation of simulator errors.

A device subclass implements member ``m`` for GET as ``get_m(params)`` and for PUT as
``put_m(params)`` (``m`` is the lower-case URL name); a GET member whose value never changes is an
entry of the class's ``constants`` instead, one that reads an attribute of the device an entry of
its ``attributes`` (both merged with the base classes' entries). Which members
exist, which HTTP methods they take and their parameters is declared once in :mod:`.members`, and
requests are validated there before they reach a device; a declared member without a handler
answers NotImplemented (0x400). Handlers never block for long: slow device work (exposures, wheel
and cover moves, panel warm-up) runs in background threads, as on real Alpaca devices, and clients
poll.
"""

from __future__ import annotations

import logging
import operator
import threading
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import KW_ONLY
from dataclasses import dataclass
from dataclasses import field
from importlib import metadata
from typing import Any
from typing import ClassVar
from typing import Generic
from typing import Protocol
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from calibd.drivers.clock import Clock
from calibd.drivers.errors import DeviceError
from calibd.simulators.alpaca_server.members import MEMBERS
from calibd.simulators.alpaca_server.protocol import AlpacaError
from calibd.simulators.alpaca_server.protocol import ErrorCode
from calibd.simulators.alpaca_server.protocol import Params
from calibd.simulators.alpaca_server.protocol import alpaca_error_from
from calibd.simulators.alpaca_server.protocol import format_utc
from calibd.simulators.alpaca_server.protocol import not_implemented

log = logging.getLogger(__name__)

#: Members that work without a connection (ASCOM Platform 7 clarification).
_NO_CONNECTION_NEEDED = frozenset(
    {
        "connected",
        "connect",
        "disconnect",
        "connecting",
        "name",
        "description",
        "driverinfo",
        "driverversion",
        "interfaceversion",
        "supportedactions",
    }
)

DRIVER_INFO = "calibd Alpaca server for simulated devices (simulators.alpaca_server)"

#: An Action handler: receives the Parameters string, returns the Action's string result.
ActionHandler = Callable[[str], str]


def driver_version() -> str:
    """The installed calibd version ("0.0" when not installed as a package)."""
    try:
        return metadata.version("calibd")
    except metadata.PackageNotFoundError:
        return "0.0"


@dataclass(frozen=True)
class ImageResult:
    """A camera image to send as ImageBytes or JSON ImageArray: uint16, [row, column]."""

    data: npt.NDArray[np.uint16]


@dataclass(eq=False)
class AlpacaDevice:
    """Base of the server's devices. Thread-safe: handlers may run concurrently (one HTTP
    connection per thread); state changes happen under ``self._lock``."""

    type_name: ClassVar[str] = ""  # management API name: "Camera"
    #: URL name: ``type_name`` in lower case ("camera"), set for each subclass.
    device_type: ClassVar[str] = ""
    interface_version: ClassVar[int] = 1
    #: GET members with a fixed value (URL name -> value), answered like a ``get_`` handler.
    constants: ClassVar[Mapping[str, Any]] = {"driverinfo": DRIVER_INFO, "connecting": False}
    #: GET members that read an attribute of the device (URL name -> dotted attribute path).
    attributes: ClassVar[Mapping[str, str]] = {
        "name": "name",
        "description": "description",
        "interfaceversion": "interface_version",
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Sets ``device_type`` from ``type_name``. A handler or constant for a member or
        method that :mod:`.members` does not declare would never be reached: refuse such a class
        at import time. Raises TypeError."""
        super().__init_subclass__(**kwargs)
        cls.device_type = cls.type_name.lower()
        for table in ("constants", "attributes"):
            merged: dict[str, Any] = {}
            for klass in reversed(cls.__mro__):
                merged.update(vars(klass).get(table, {}))
            setattr(cls, table, merged)
        if not cls.device_type:
            return
        declared = MEMBERS[cls.device_type]
        for member in (*cls.constants, *cls.attributes):
            spec = declared.get(member)
            if spec is None or spec.get is None:
                raise TypeError(f"{cls.__name__}: {member!r} in constants/attributes is not a "
                                "GET member in members.py")
        for attr in dir(cls):
            verb, _, member = attr.partition("_")
            if verb in ("get", "put") and member and callable(getattr(cls, attr)):
                spec = declared.get(member)
                if spec is None or (spec.get if verb == "get" else spec.put) is None:
                    raise TypeError(f"{cls.__name__}.{attr}: not declared in members.py")

    number: int
    _: KW_ONLY
    name: str
    description: str
    unique_id: str
    clock: Clock
    actions: dict[str, ActionHandler] = field(init=False, default_factory=dict)
    _lock: threading.RLock = field(init=False, default_factory=threading.RLock)

    @property
    def label(self) -> str:
        """``type/number``, for messages and logs."""
        return f"{self.device_type}/{self.number}"

    # -- routing -----------------------------------------------------------------------------

    def handle(self, verb: str, member: str, params: Params) -> Any:
        """Run member ``member`` for HTTP ``verb`` ("GET" or "PUT") and return its value (None
        for PUT methods without one). The request must already have passed
        :func:`.members.validate`; then NotImplemented comes first, NotConnected next.

        Blocks only briefly. Raises AlpacaError (everything the device refuses, including
        NotImplemented, NotConnected and simulator errors translated by
        :func:`alpaca_error_from`).
        """
        handler = getattr(self, f"{verb.lower()}_{member}", None)
        if handler is None and verb == "GET":
            handler = self._declared_getter(member)
        if not callable(handler):
            raise not_implemented(f"{self.label}: {member} is not implemented")
        if member not in _NO_CONNECTION_NEEDED:
            self.require_connected()
        try:
            return handler(params)
        except DeviceError as err:
            raise alpaca_error_from(err) from err

    def _declared_getter(self, member: str) -> Callable[[Params], Any] | None:
        """The handler of a GET member declared in ``constants`` or ``attributes``, else None."""
        if member in self.constants:
            value = self.constants[member]
            return lambda params: value
        if member in self.attributes:
            read = operator.attrgetter(self.attributes[member])
            return lambda params: read(self)
        return None

    def require_connected(self) -> None:
        """Raises AlpacaError NotConnected (0x407) unless the device is connected."""
        if not self._is_connected():
            raise AlpacaError(
                ErrorCode.NOT_CONNECTED, f"{self.label} is not connected: connect it first"
            )

    # -- connection hooks (subclasses) ---------------------------------------------------------

    def _is_connected(self) -> bool:
        raise NotImplementedError

    def _connect(self) -> None:
        """Connect (idempotent, quick). Called without ``self._lock`` held."""
        raise NotImplementedError

    def _disconnect(self) -> None:
        """Disconnect, ending background work first (may wait briefly for it). Called without
        ``self._lock`` held."""
        raise NotImplementedError

    def _device_state(self) -> Sequence[tuple[str, Any]]:
        """The operational properties DeviceState reports (TimeStamp is added)."""
        return ()

    def shutdown(self) -> None:
        """Stop background work when the server stops (never raises)."""

    # -- common members ----------------------------------------------------------------------

    def get_driverversion(self, params: Params) -> str:
        return driver_version()

    def get_supportedactions(self, params: Params) -> list[str]:
        return sorted(self.actions)

    def get_connected(self, params: Params) -> bool:
        return self._is_connected()

    def put_connected(self, params: Params) -> None:
        wanted = params.boolean("Connected")
        if wanted:
            self._connect()
        else:
            self._disconnect()
        log.info("%s %s", self.label, "connected" if wanted else "disconnected")

    def put_connect(self, params: Params) -> None:
        """Platform 7 Connect(): completes at once here, so Connecting is always False."""
        self._connect()
        log.info("%s connected", self.label)

    def put_disconnect(self, params: Params) -> None:
        self._disconnect()
        log.info("%s disconnected", self.label)

    def get_devicestate(self, params: Params) -> list[dict[str, Any]]:
        state = [{"Name": name, "Value": value} for name, value in self._device_state()]
        state.append({"Name": "TimeStamp", "Value": format_utc(self.clock.now())})
        return state

    def put_action(self, params: Params) -> str:
        """Action(Action, Parameters): names are matched ignoring case."""
        name = params.text("Action")
        argument = params.raw("Parameters") or ""
        for known, run in self.actions.items():
            if known.lower() == name.lower():
                return run(argument)
        raise AlpacaError(
            ErrorCode.ACTION_NOT_IMPLEMENTED,
            f"{self.label}: action {name!r} is not supported (supported: "
            f"{', '.join(sorted(self.actions)) or 'none'})",
        )


class Connectable(Protocol):
    """A simulator's connection switch."""

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...


S = TypeVar("S", bound=Connectable)


def in_background(name: str, work: Callable[[], None]) -> None:
    """Run ``work`` in a daemon thread called ``name``; returns at once."""
    threading.Thread(target=work, name=name, daemon=True).start()


class SimulatorDevice(AlpacaDevice, Generic[S]):
    """A device over one simulator, :attr:`sim`, made from it, the server's clock and the
    identity the server gives it; Name is the class's ``sim_name``, Description its
    ``sim_description`` (or what :meth:`_description` makes of the simulator).

    The connection flag lives here (the simulators do not report theirs). Connect connects the
    simulator too; Disconnect disconnects it unless ``disconnects_sim`` is False: a simulator
    shared with another device, or one that must finish a move started in the background.
    """

    sim_name: ClassVar[str] = ""
    sim_description: ClassVar[str] = ""
    disconnects_sim: ClassVar[bool] = True
    #: How a move run by :meth:`_move_in_background` that ends in a DeviceError is logged.
    move_error_level: ClassVar[int] = logging.WARNING
    _connected = False
    _moving = False

    def __init__(self, sim: S, clock: Clock, *, unique_id: str, number: int = 0) -> None:
        super().__init__(number, name=self.sim_name, description=self._description(sim),
                         unique_id=unique_id, clock=clock)
        self.sim = sim

    def _description(self, sim: S) -> str:
        return self.sim_description

    def _is_connected(self) -> bool:
        return self._connected

    def _connect(self) -> None:
        self.sim.connect()
        self._connected = True

    def _disconnect(self) -> None:
        self._connected = False
        if self.disconnects_sim:
            self.sim.disconnect()

    def _move_in_background(self, what: str, work: Callable[[], None]) -> None:
        """Run the blocking simulator call ``work`` (a move called ``what``) in a daemon thread
        while ``_moving`` reads True; returns at once. A DeviceError ends the move and is logged
        at ``move_error_level``."""

        def run() -> None:
            try:
                work()
            except DeviceError as err:
                log.log(self.move_error_level, "%s: %s failed: %s", self.label, what, err)
            finally:
                self._moving = False

        self._moving = True
        in_background(f"{self.device_type}-{what}", run)
