"""Plain-Python copies of what an indiserver reported, guarded by the connection's condition.

Written only by the pyindi-client callbacks (see :mod:`drivers.indi._conn`), read by callers
under the same lock. Nothing here touches PyIndi.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field

BLOB_QUEUE_LEN = 2  # images kept per BLOB property when nobody takes them (memory bound)
MESSAGE_QUEUE_LEN = 50
_MSG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?:\s*")


@dataclass(frozen=True)
class ServerAddress:
    """Where an indiserver listens: TCP ``host:port``, or its local (abstract) Unix socket."""

    host: str = "localhost"
    port: int = 7624
    socket_path: str | None = None

    def client_args(self) -> tuple[str, int]:
        """Arguments for ``BaseClient.setServer``; ``localhost:/path`` selects the Unix socket."""
        if self.socket_path:
            return f"localhost:{self.socket_path}", self.port
        return self.host, self.port

    def __str__(self) -> str:
        if self.socket_path:
            return f"indiserver at unix:{self.socket_path}"
        return f"indiserver at {self.host}:{self.port}"


@dataclass(frozen=True)
class PropSnapshot:
    """A copy of one INDI property as the device last reported it.

    ``values``: numbers as float, switches as bool (On), texts as str, lights as their state
    name. ``limits`` (numbers only): element -> (min, max, step); min == max means "no limits"
    in INDI. ``version`` increases with every update of any property on the connection.
    ``alerted``: the version of this property's latest report in state Alert (0: none yet).
    A device may refuse a request with Alert and restore Ok in the next breath (the INDI
    library's range check does), so a waiter that looks only at the latest report can miss the
    refusal: ask ``alerted_since(before)`` instead. ``busied``: the same for state Busy (a
    motion that starts and stops between two looks still shows it started).
    """

    device: str
    name: str
    kind: str  # "number" | "switch" | "text" | "light" | "blob"
    state: str  # "Idle" | "Ok" | "Busy" | "Alert"
    writable: bool
    values: Mapping[str, float | bool | str]
    limits: Mapping[str, tuple[float, float, float]]
    version: int
    readable: bool = True  # False for write-only (IP_WO) vectors: their values are not news
    alerted: int = 0
    busied: int = 0

    def alerted_since(self, version: int) -> bool:
        """True when the device reported this property in state Alert after ``version``."""
        return self.alerted > version

    def busy_since(self, version: int) -> bool:
        """True when the device reported this property in state Busy after ``version``."""
        return self.busied > version

    def number(self, element: str) -> float:
        """The element's value as float (KeyError if absent)."""
        value = self.values[element]
        return float(value) if not isinstance(value, str) else float("nan")

    def is_on(self, element: str) -> bool:
        return bool(self.values.get(element, False))


@dataclass
class BlobRecord:
    """One received BLOB element: the bytes were copied in the callback."""

    device: str
    prop: str
    element: str
    fmt: str
    data: bytes | bytearray
    version: int
    received_monotonic: float


@dataclass(frozen=True)
class Session:
    """Identifies one life of a device on one life of the server connection."""

    server_gen: int
    device_gen: int


@dataclass
class _DeviceEntry:
    gen: int
    interface: int | None = None


@dataclass
class ConnState:
    """Everything the callbacks write. Guarded by IndiConnection._cond."""

    version: int = 0
    server_up: bool = False
    server_gen: int = 0
    devices: dict[str, _DeviceEntry] = field(default_factory=dict)
    props: dict[tuple[str, str], PropSnapshot] = field(default_factory=dict)
    blobs: dict[tuple[str, str], collections.deque[BlobRecord]] = field(default_factory=dict)
    messages: collections.deque[tuple[int, str, str]] = field(
        default_factory=lambda: collections.deque(maxlen=MESSAGE_QUEUE_LEN)
    )
    definitions: int = 0  # property definitions seen (new properties, not updates)
    disconnects: int = 0  # serverDisconnected callbacks seen
    callback_errors: int = 0
    last_callback_error: str = ""

    def bump(self) -> int:
        self.version += 1
        return self.version

    def prop(self, device: str, name: str) -> PropSnapshot | None:
        return self.props.get((device, name))

    def answer(self, device: str, name: str, since: int, *,
               accept_busy: bool = False) -> PropSnapshot | None:
        """Property ``name``'s report after connection version ``since`` (a request) once it
        answers: reported Alert since then (even if another report followed), or no longer
        Busy (with ``accept_busy``, Busy answers too). None while no such report is in."""
        snap = self.props.get((device, name))
        if snap is None or snap.version <= since:
            return None
        if snap.state == "Busy" and not accept_busy and not snap.alerted_since(since):
            return None
        return snap

    def session(self, device: str) -> Session | None:
        entry = self.devices.get(device)
        if not self.server_up or entry is None:
            return None
        return Session(self.server_gen, entry.gen)

    def session_valid(self, device: str, session: Session | None) -> bool:
        if session is None or self.session(device) != session:
            return False
        conn = self.props.get((device, "CONNECTION"))
        return conn is not None and conn.is_on("CONNECT")

    def take_blob(self, device: str, prop: str, after_version: int) -> BlobRecord | None:
        queue = self.blobs.get((device, prop))
        while queue:
            record = queue.popleft()
            if record.version > after_version:
                return record
        return None

    def messages_since(self, device: str, version: int, until: int | None = None) -> list[str]:
        """The device's messages after connection version ``version`` (up to ``until``)."""
        last = self.version if until is None else until
        return [text for v, dev, text in self.messages if dev == device and version < v <= last]

    def last_message(self, device: str) -> str | None:
        for _, dev, text in reversed(self.messages):
            if dev == device:
                return text
        return None
