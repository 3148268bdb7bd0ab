"""The driver side of the INDI XML protocol (version 1.7), as much as a camera double needs,
and :class:`DriverDevice`, the property bookkeeping every device double shares.

A driver reads ``getProperties`` / ``new*Vector`` (and the ``def*``/``set*`` messages of devices it
snoops) from standard input and writes ``def*``/``set*``/``del``/``message`` elements to standard
output. Input is an endless sequence of top-level XML elements: it is parsed incrementally under
a synthetic root, and any single element larger than ``MAX_ELEMENT_BYTES`` ends the driver (a
broken server is not worth surviving).
"""

from __future__ import annotations

import base64
import contextlib
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import BinaryIO
from typing import TextIO
from typing import cast
from xml.sax.saxutils import escape
from xml.sax.saxutils import quoteattr

MAX_ELEMENT_BYTES = 1 << 20  # a client's new*Vector is tiny; anything bigger is garbage


class OutOfRange(ValueError):
    """A client's number lies outside its element's range."""


@dataclass
class Element:
    """One member of a vector. ``value``: float (number), bool (switch), str (text/light)."""

    name: str
    label: str
    value: float | bool | str
    min: float = 0.0
    max: float = 0.0
    step: float = 0.0
    fmt: str = "%g"


@dataclass
class Vector:
    """One INDI property. ``kind``: number | switch | text | light | blob;
    ``perm``: ro | wo | rw; ``rule`` (switches): OneOfMany | AtMostOne | AnyOfMany.

    ``after_range_alert`` (numbers): how the driver answers a value outside an element's range.
    ``"Ok"`` (most vectors): its handler stores the values with ``IUUpdateNumber``, which
    reports Alert with "… Valid range is from … to …" and changes nothing, and then reports the
    vector Ok anyway, at once (seen from the real ``indi_simulator_ccd`` for ``CCD_GAIN``,
    ``CCD_OFFSET``, ``CCD_TEMP_RAMP`` and ``indi_simulator_lightpanel`` for
    ``FLAT_LIGHT_INTENSITY``). ``None``: the driver checks the range itself and reports a single
    Alert (``INDI::CCD`` exposure, set-point and binning, the wheel's slot, the polling period);
    also kept for the vectors whose real answer is neither (``CCD_FRAME``: two Alerts; the
    telescope's coordinates: none)."""

    kind: str
    name: str
    label: str
    group: str
    perm: str
    elements: list[Element]
    state: str = "Idle"
    rule: str = "OneOfMany"
    timeout: int = 60
    defined: bool = False
    device: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    after_range_alert: str | None = "Ok"

    def __getitem__(self, name: str) -> Element:
        for element in self.elements:
            if element.name == name:
                return element
        raise KeyError(f"{self.name} has no element {name!r}")

    def has(self, name: str) -> bool:
        return any(e.name == name for e in self.elements)

    def on(self) -> str | None:
        """The first switch that is On (switch vectors)."""
        return next((e.name for e in self.elements if e.value is True), None)

    def select(self, name: str) -> None:
        """One-of-many: turn ``name`` on and every other element off."""
        self[name]  # raises KeyError for an unknown element
        for element in self.elements:
            element.value = element.name == name

    def new_numbers(self, members: list[tuple[str, str]]) -> dict[str, float]:
        """A client's ``newNumberVector`` members that name elements of this vector, as numbers.
        Raises ValueError (a message to report with Alert) for a value that is not a number,
        OutOfRange (a ValueError, its message worded as :attr:`after_range_alert` says) for one
        outside its element's range (when it has one)."""
        try:
            values = {name: float(text) for name, text in members if self.has(name)}
        except ValueError:
            raise ValueError("value is not a number") from None
        for name, value in values.items():
            e = self[name]
            if not e.max > e.min or e.min <= value <= e.max:
                continue
            if self.after_range_alert is None:
                raise OutOfRange(f"{name} value {value:g} out of range [{e.min:g}, {e.max:g}]")
            raise OutOfRange(f"Error: Invalid range for {e.label} ({name}). Valid range is from "
                             f"{e.min:g} to {e.max:g}. Requested value is {value:g}")
        return values


_TAGS = {"number": "Number", "switch": "Switch", "text": "Text", "light": "Light", "blob": "BLOB"}


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _value_text(vec: Vector, element: Element) -> str:
    if vec.kind == "switch":
        return "On" if element.value is True else "Off"
    if vec.kind == "number":
        return repr(float(element.value))  # full precision, not the display format
    return escape(str(element.value))


def render_def(vec: Vector) -> str:
    """``def<Kind>Vector`` for ``vec`` (all elements)."""
    tag = _TAGS[vec.kind]
    attrs = (f"device={quoteattr(vec.device)} name={quoteattr(vec.name)} "
             f"label={quoteattr(vec.label)} group={quoteattr(vec.group)} "
             f"state={quoteattr(vec.state)} timestamp={quoteattr(_stamp())}")
    if vec.kind != "light":
        attrs += f" perm={quoteattr(vec.perm)} timeout={quoteattr(str(vec.timeout))}"
    if vec.kind == "switch":
        attrs += f" rule={quoteattr(vec.rule)}"
    parts = [f"<def{tag}Vector {attrs}>"]
    for e in vec.elements:
        if vec.kind == "number":
            parts.append(
                f"<defNumber name={quoteattr(e.name)} label={quoteattr(e.label)} "
                f"format={quoteattr(e.fmt)} min={quoteattr(repr(e.min))} "
                f"max={quoteattr(repr(e.max))} step={quoteattr(repr(e.step))}>"
                f"{_value_text(vec, e)}</defNumber>")
        elif vec.kind == "blob":
            parts.append(f"<defBLOB name={quoteattr(e.name)} label={quoteattr(e.label)}/>")
        else:
            parts.append(f"<def{tag} name={quoteattr(e.name)} label={quoteattr(e.label)}>"
                         f"{_value_text(vec, e)}</def{tag}>")
    parts.append(f"</def{tag}Vector>\n")
    return "".join(parts)


def render_set(vec: Vector, message: str | None = None) -> str:
    """``set<Kind>Vector`` with every element's current value (not for BLOBs)."""
    tag = _TAGS[vec.kind]
    attrs = (f"device={quoteattr(vec.device)} name={quoteattr(vec.name)} "
             f"state={quoteattr(vec.state)} timestamp={quoteattr(_stamp())}")
    if message:
        attrs += f" message={quoteattr(message)}"
    body = "".join(f"<one{tag} name={quoteattr(e.name)}>{_value_text(vec, e)}</one{tag}>"
                   for e in vec.elements)
    return f"<set{tag}Vector {attrs}>{body}</set{tag}Vector>\n"


def render_blob(device: str, name: str, element: str, data: bytes, fmt: str) -> str:
    """``setBLOBVector`` carrying ``data`` base64-encoded (state Ok)."""
    encoded = base64.b64encode(data).decode("ascii")
    return (f"<setBLOBVector device={quoteattr(device)} name={quoteattr(name)} state=\"Ok\" "
            f"timestamp={quoteattr(_stamp())}><oneBLOB name={quoteattr(element)} "
            f"size=\"{len(data)}\" format={quoteattr(fmt)} len=\"{len(encoded)}\">"
            f"{encoded}</oneBLOB></setBLOBVector>\n")


def render_del(device: str, name: str) -> str:
    return (f"<delProperty device={quoteattr(device)} name={quoteattr(name)} "
            f"timestamp={quoteattr(_stamp())}/>\n")


def render_snoop(device: str, name: str | None = None) -> str:
    """Ask indiserver to forward another device's properties to this driver."""
    prop = f" name={quoteattr(name)}" if name else ""
    return f"<getProperties version=\"1.7\" device={quoteattr(device)}{prop}/>\n"


class Writer:
    """Serialised, flushed writes to the server (standard output)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._lock = threading.Lock()

    def send(self, text: str) -> None:
        with self._lock:
            self._out.write(text)
            self._out.flush()


@dataclass(frozen=True)
class Incoming:
    """One top-level element from the server: its tag, attributes and ``{member: text}`` in
    order (``oneNumber``/``oneSwitch``/``oneText`` and snooped ``def*``/``one*`` members), and
    the ``max`` of snooped ``defNumber`` members."""

    tag: str
    attrs: dict[str, str]
    members: list[tuple[str, str]]
    maxima: dict[str, float] = field(default_factory=dict)


def read_messages(stream: BinaryIO | None = None) -> Iterator[Incoming]:
    """Parse the server's stream into :class:`Incoming` elements until end of input."""
    src = stream or sys.stdin.buffer
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    parser.feed(b"<indi>")
    depth = 0
    size = 0
    root: ET.Element | None = None
    while True:
        chunk = src.read1(65536) if hasattr(src, "read1") else src.read(65536)
        if not chunk:
            return
        size += len(chunk)
        parser.feed(chunk)
        for pair in parser.read_events():
            event, elem = cast(tuple[str, ET.Element], pair)
            if event == "start":
                if depth == 0:
                    root = elem
                depth += 1
                continue
            depth -= 1
            if depth != 1:
                continue
            members = [(c.get("name", ""), (c.text or "").strip()) for c in elem]
            maxima = {}
            for c in elem:
                with contextlib.suppress(TypeError, ValueError):
                    maxima[c.get("name", "")] = float(c.get("max", ""))
            if root is not None:
                root.remove(elem)
            yield Incoming(elem.tag, dict(elem.attrib), members, maxima)
            size = 0
        if size > MAX_ELEMENT_BYTES:
            raise ValueError("an element from the server exceeds the size limit")


def dispatch_forever(handler: Callable[[Incoming], None], stream: BinaryIO | None = None) -> None:
    """Feed every incoming element to ``handler`` until the server closes standard input."""
    for message in read_messages(stream):
        handler(message)


def connection_vectors(driver_name: str, executable: str, version: str,
                       interface: str) -> list[Vector]:
    """``CONNECTION`` and ``DRIVER_INFO``, which every driver defines as soon as it starts
    (``INDI::DefaultDevice``); ``interface`` is the driver's interface bit mask, in decimal."""
    return [
        Vector("switch", "CONNECTION", "Connection", "Main Control", "rw",
               [Element("CONNECT", "Connect", False), Element("DISCONNECT", "Disconnect", True)]),
        Vector("text", "DRIVER_INFO", "Driver Info", "General Info", "ro", [
            Element("DRIVER_NAME", "Name", driver_name),
            Element("DRIVER_EXEC", "Exec", executable),
            Element("DRIVER_VERSION", "Version", version),
            Element("DRIVER_INTERFACE", "Interface", interface)]),
    ]


class DriverDevice:
    """One INDI device a double serves: its properties by name, each defined to clients or not.

    The vectors given to the constructor are the early ones, defined at every ``getProperties``
    from the start; the others come and go with ``CONNECTION`` (:meth:`on_connect`,
    :meth:`on_disconnect`). :meth:`handle` is called for every message from the server (one
    thread): it answers ``getProperties`` for this device, ignores a ``new*Vector`` for a vector
    that is unknown or not defined, answers a number that is not one or out of range with Alert
    and the reason (then, as most real drivers, at once with the vector's
    :attr:`Vector.after_range_alert` state), and passes the rest to the ``on_*`` hooks under
    :attr:`lock`. After :meth:`start`, a thread calls :meth:`poll` under the lock every
    :meth:`poll_interval_s` seconds while connected. Writes are serialised by the writer.
    """

    def __init__(self, device: str, writer: Writer, early: list[Vector]) -> None:
        self.device = device
        self.out = writer
        self.lock = threading.RLock()
        self.connected = False
        self.props: dict[str, Vector] = {}
        for vec in early:
            self._add(vec)
        self.early_names = frozenset(self.props)
        self._stop = threading.Event()

    # ------------------------------------------------------------------ properties

    def _add(self, vec: Vector) -> None:
        """Keep ``vec`` as this device's (not yet defined to clients)."""
        vec.device = self.device
        self.props[vec.name] = vec

    def _define(self, vec: Vector) -> None:
        """Send ``def*Vector``: clients see ``vec`` from now on."""
        vec.defined = True
        self.out.send(render_def(vec))

    def _undefine(self, vec: Vector) -> None:
        """Send ``delProperty``: clients no longer see ``vec`` (the device may keep it)."""
        vec.defined = False
        self.out.send(render_del(self.device, vec.name))

    def _set(self, vec: Vector, state: str | None = None, message: str | None = None) -> None:
        """Change ``vec``'s state (when given) and send its values, with ``message``, to
        clients, if it is defined."""
        if state is not None:
            vec.state = state
        if vec.defined:
            self.out.send(render_set(vec, message))

    def _own(self) -> list[Vector]:
        """The vectors that are not early ones (those of a connected device)."""
        return [v for v in self.props.values() if v.name not in self.early_names]

    # ------------------------------------------------------------------ poll thread

    def start(self) -> None:
        """Start the poll thread (a daemon thread; :meth:`stop` ends it)."""
        threading.Thread(target=self._poll_loop, name=f"{self.device} poll", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def poll_interval_s(self) -> float:
        """Real seconds between two polls."""
        raise NotImplementedError

    def poll(self) -> None:
        """Called every poll while connected (under the lock)."""

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_interval_s()):
            try:
                with self.lock:
                    if self.connected:
                        self.poll()
            except Exception as err:  # a driver keeps running; the server logs standard error
                print(f"{self.device}: poll failed: {err!r}"[:300], file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ messages

    def handle(self, msg: Incoming) -> None:
        """One message from the server (see the class)."""
        device = msg.attrs.get("device")
        if msg.tag == "getProperties":
            if device in (None, self.device):
                with self.lock:
                    for each in self.props.values():
                        if each.defined or each.name in self.early_names:
                            self._define(each)
            return
        if device != self.device:
            self.on_snooped(msg)
            return
        with self.lock:
            vec = self.props.get(msg.attrs.get("name", ""))
            if vec is None or not vec.defined:
                return
            if msg.tag == "newNumberVector":
                try:
                    values = vec.new_numbers(msg.members)
                except ValueError as err:
                    self._set(vec, "Alert", str(err))
                    if isinstance(err, OutOfRange) and vec.after_range_alert is not None:
                        self._set(vec, vec.after_range_alert)
                    return
                self.on_number(vec, values)
            elif msg.tag == "newSwitchVector":
                on = [name for name, text in msg.members if text == "On" and vec.has(name)]
                if vec.name == "CONNECTION":
                    self._connection("CONNECT" in on)
                else:
                    self.on_switches(vec, on, msg.members)
            elif msg.tag == "newTextVector":
                self.on_text(vec, msg.members)

    def _connection(self, connect: bool) -> None:
        conn = self.props["CONNECTION"]
        if connect and not self.connected:
            self.on_connect()
            self.connected = True
        elif not connect and self.connected:
            self.on_disconnect()
            self.connected = False
        conn.select("CONNECT" if connect else "DISCONNECT")
        self._set(conn, "Ok" if connect else "Idle")

    def on_connect(self) -> None:
        """A client connected the device: add and define its other vectors."""
        raise NotImplementedError

    def on_disconnect(self) -> None:
        """A client disconnected the device: undefine its other vectors."""
        raise NotImplementedError

    def on_number(self, vec: Vector, values: dict[str, float]) -> None:
        """A client's valid numbers for ``vec`` (by element name); by default they are taken
        and ``vec`` reported Ok."""
        for name, value in values.items():
            vec[name].value = value
        self._set(vec, "Ok")

    def on_switches(self, vec: Vector, on: list[str], members: list[tuple[str, str]]) -> None:
        """A client's ``newSwitchVector`` for ``vec`` (not ``CONNECTION``): ``on`` names the
        elements of ``vec`` it turns On, ``members`` is every ``(element, On|Off)`` it sent."""
        raise NotImplementedError

    def on_text(self, vec: Vector, members: list[tuple[str, str]]) -> None:
        """A client's ``newTextVector`` for ``vec``; ignored by default."""

    def on_snooped(self, msg: Incoming) -> None:
        """A message about another device (one this driver snoops); ignored by default."""
