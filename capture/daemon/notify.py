"""The systemd notify protocol (``sd_notify(3)``) without libsystemd.

systemd passes a ``NOTIFY_SOCKET`` to ``Type=notify`` services: an ``AF_UNIX`` datagram socket,
given as a file system path or, with a leading ``@``, an abstract socket name. Each datagram
is a set of newline-separated ``KEY=VALUE`` assignments (``READY=1``, ``STATUS=...``,
``WATCHDOG=1``, ``STOPPING=1``, ...). With ``NotifyAccess=main`` systemd accepts them only from
the main process, which every thread of the daemon is.

:class:`Notifier` never raises: a daemon must not die because its supervisor went away. Without
``NOTIFY_SOCKET`` (started by hand, in tests) every call is a no-op. The first failed send is
logged at DEBUG, later ones are silent until a send succeeds again.

:func:`watchdog_interval_s` says how often to send ``WATCHDOG=1`` (half of ``WatchdogSec=``),
following ``sd_watchdog_enabled(3)``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: ``STATUS=`` texts longer than this (characters) are shortened; systemctl shows one line.
MAX_STATUS_CHARS = 400


def _address(value: str) -> str | bytes | None:
    """The ``sendto`` address for a ``NOTIFY_SOCKET`` value, or None when unusable."""
    if value.startswith("@"):  # abstract namespace: a leading NUL byte instead of the '@'
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # e.g. "vsock:CID:PORT" (VM guests): not needed on an observatory PC


def _one_line(text: str) -> str:
    """``text`` as a single line of at most :data:`MAX_STATUS_CHARS` characters."""
    line = " ".join(text.split())
    if len(line) > MAX_STATUS_CHARS:
        line = line[: MAX_STATUS_CHARS - 1] + "…"
    return line


class Notifier:
    """Sends notify messages to systemd, when there is a ``NOTIFY_SOCKET``.

    Thread-safe: one socket, used under a lock. Every method returns quickly (a datagram on a
    local socket, sent without blocking) and never raises; the ``bool`` results say whether the
    message was handed to the socket, which tests and logs may use but the daemon need not.
    """

    def __init__(self, address: str | None) -> None:
        """``address``: a ``NOTIFY_SOCKET`` value (``/run/systemd/notify`` or ``@name``), or
        None for a notifier that does nothing. Creates no socket yet (that happens on the
        first send)."""
        self._raw = address or None
        self._address = _address(address) if address else None
        if address and self._address is None:
            log.debug("unsupported NOTIFY_SOCKET %r: systemd notifications disabled", address)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._failing = False
        self._closed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, *,
                         unset: bool = False) -> Notifier:
        """A notifier for ``environ["NOTIFY_SOCKET"]`` (default: ``os.environ``).

        ``unset=True`` removes ``NOTIFY_SOCKET`` (and the watchdog variables) from
        ``os.environ`` so that child processes do not inherit it, like ``sd_notify(1, ...)``;
        read :func:`watchdog_interval_s` first if you need it."""
        env = os.environ if environ is None else environ
        notifier = cls(env.get("NOTIFY_SOCKET"))
        if unset:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)
        return notifier

    @property
    def enabled(self) -> bool:
        """True when there is a usable notify socket address (messages are sent)."""
        return self._address is not None and not self._closed

    def notify(self, *assignments: str) -> bool:
        """Send ``assignments`` (``"KEY=VALUE"`` each, no newlines inside) as one datagram.

        Returns True when the datagram was sent, False when disabled or the send failed
        (logged at DEBUG the first time in a row). Never blocks and never raises."""
        if not assignments or not self.enabled:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        with self._lock:
            if self._closed or self._address is None:
                return False
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX,
                                               socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    self._sock.setblocking(False)
                self._sock.sendto(payload, self._address)
            except OSError as err:
                if not self._failing:
                    log.debug("cannot notify systemd at %s: %s", self._raw, err)
                self._failing = True
                self._drop_socket()
                return False
            if self._failing:
                log.debug("systemd notify socket %s works again", self._raw)
            self._failing = False
            return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (start-up finished, or a reload finished), with an optional status."""
        return self.notify("READY=1", *self._status(status))

    def status(self, text: str) -> bool:
        """``STATUS=text``: one line shown by ``systemctl status`` (newlines become spaces)."""
        return self.notify(*self._status(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the main loop is alive and healthy. Send only when it is."""
        return self.notify("WATCHDOG=1")

    def watchdog_trigger(self) -> bool:
        """``WATCHDOG=trigger``: ask systemd to act as if the watchdog had expired (the daemon
        knows it is stuck, e.g. a device call hung past every deadline)."""
        return self.notify("WATCHDOG=trigger")

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (``CLOCK_MONOTONIC``, µs), as the
        ``Type=notify-reload`` protocol requires; end the reload with :meth:`ready`."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status(status))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: the daemon began to shut down."""
        return self.notify("STOPPING=1", *self._status(status))

    def extend_timeout(self, seconds: float) -> bool:
        """``EXTEND_TIMEOUT_USEC``: ask for ``seconds`` more before the current start, stop or
        reload times out (e.g. while a long exposure is being aborted)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1e6))}")

    def close(self) -> None:
        """Close the socket; later calls do nothing. Idempotent."""
        with self._lock:
            self._closed = True
            self._drop_socket()

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @staticmethod
    def _status(text: str | None) -> tuple[str, ...]:
        return () if text is None else (f"STATUS={_one_line(text)}",)

    def __repr__(self) -> str:
        return f"Notifier({self._raw!r})"


def watchdog_interval_s(environ: Mapping[str, str] | None = None,
                        pid: int | None = None) -> float | None:
    """How often to send ``WATCHDOG=1``, in seconds: half of ``WATCHDOG_USEC``, or None when
    the watchdog is not enabled for this process.

    None when ``WATCHDOG_USEC`` is missing, not a positive integer, or when ``WATCHDOG_PID``
    is set and is not ``pid`` (default: this process's id), like ``sd_watchdog_enabled(3)``.
    ``environ`` defaults to ``os.environ``. Never raises."""
    env = os.environ if environ is None else environ
    raw_usec = env.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        log.debug("ignoring malformed WATCHDOG_USEC=%r", raw_usec)
        return None
    if usec <= 0:
        return None
    raw_pid = env.get("WATCHDOG_PID")
    if raw_pid:
        try:
            wanted = int(raw_pid)
        except ValueError:
            log.debug("ignoring malformed WATCHDOG_PID=%r", raw_pid)
            return None
        if wanted != (os.getpid() if pid is None else pid):
            return None
    return usec / 2e6
