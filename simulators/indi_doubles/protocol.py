"""The driver side of the INDI XML protocol (version 1.7), as much as a camera double needs.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO, TextIO, cast
from xml.sax.saxutils import escape, quoteattr

MAX_ELEMENT_BYTES = 1 << 20  # a client's new*Vector is tiny; anything bigger is garbage


def poll_until_stopped(stop: threading.Event, interval_s: Callable[[], float],
                       lock: threading.Lock | threading.RLock, connected: Callable[[], bool],
                       poll: Callable[[], None], what: str) -> None:
    """A device double's poll thread: every ``interval_s()`` seconds until ``stop`` is set,
    ``poll()`` under ``lock`` while ``connected()``. A failed poll is reported on standard error
    (which indiserver logs) as ``WHAT failed: ...`` and the loop goes on, as a driver does."""
    while not stop.wait(interval_s()):
        try:
            with lock:
                if connected():
                    poll()
        except Exception as err:  # a driver keeps running; the server logs standard error
            print(f"{what} failed: {err!r}"[:300], file=sys.stderr, flush=True)


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
    ``perm``: ro | wo | rw; ``rule`` (switches): OneOfMany | AtMostOne | AnyOfMany."""

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
        Raises ValueError (a message to report with Alert) for a value that is not a number or
        is outside its element's range (when it has one)."""
        try:
            values = {name: float(text) for name, text in members if self.has(name)}
        except ValueError:
            raise ValueError("value is not a number") from None
        for name, value in values.items():
            e = self[name]
            if e.max > e.min and not e.min <= value <= e.max:
                raise ValueError(f"{name} value {value:g} out of range [{e.min:g}, {e.max:g}]")
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


def render_message(device: str, text: str) -> str:
    return (f"<message device={quoteattr(device)} timestamp={quoteattr(_stamp())} "
            f"message={quoteattr(text)}/>\n")


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
