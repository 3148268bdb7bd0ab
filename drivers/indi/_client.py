"""The pyindi-client ``BaseClient`` subclass, and keeping closed clients alive.

Every callback forwards to the connection (held by weak reference) inside a ``try`` that catches
everything: an exception escaping a callback silently kills the listener thread.
"""

from __future__ import annotations

import collections
import threading
import time
import weakref
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from calibd.drivers.indi._conn import IndiConnection


def client_class(py: Any) -> type:
    """The BaseClient subclass, built once PyIndi is imported. Every callback is wrapped."""
    cached: type | None = getattr(client_class, "_cached", None)
    if cached is not None:
        return cached

    class _Client(py.BaseClient):  # type: ignore[misc]
        def __init__(self, sink: weakref.ref[IndiConnection]) -> None:
            super().__init__()
            self._sink = sink

        def _call(self, method: str, *args: Any) -> None:
            conn = None
            try:
                conn = self._sink()
                if conn is not None:
                    getattr(conn, method)(*args)
            except BaseException as err:
                if conn is not None:
                    conn._cb_failed(err)

        def newDevice(self, dev: Any) -> None:  # noqa: N802 - PyIndi API
            self._call("_cb_new_device", dev)

        def removeDevice(self, dev: Any) -> None:  # noqa: N802
            self._call("_cb_remove_device", dev)

        def newProperty(self, prop: Any) -> None:  # noqa: N802
            self._call("_cb_property", prop, True)

        def updateProperty(self, prop: Any) -> None:  # noqa: N802
            self._call("_cb_property", prop, False)

        def removeProperty(self, prop: Any) -> None:  # noqa: N802
            self._call("_cb_remove_property", prop)

        def newMessage(self, dev: Any, message_id: int) -> None:  # noqa: N802
            self._call("_cb_message", dev, message_id)

        def serverConnected(self) -> None:  # noqa: N802
            self._call("_cb_server", True)

        def serverDisconnected(self, code: int) -> None:  # noqa: N802
            self._call("_cb_server", False)

    client_class._cached = _Client  # type: ignore[attr-defined]
    return _Client


# libindi's TcpSocket destructor waits only 2 s for its socket thread and then destroys the
# still-joinable std::thread, which aborts the process. A client object destroyed while its thread
# is still inside a Python callback (waiting for the GIL the destructor holds) does exactly that.
# So closed clients are kept alive for a while and destroyed only long after their disconnect.
RETIRE_S = 30.0
_retired: collections.deque[tuple[float, Any]] = collections.deque()
_retired_lock = threading.Lock()


def retire(client: Any) -> None:
    """Keep a closed client object alive for RETIRE_S seconds before it may be destroyed."""
    now = time.monotonic()
    with _retired_lock:
        _retired.append((now, client))
        while _retired and now - _retired[0][0] > RETIRE_S:
            _retired.popleft()
