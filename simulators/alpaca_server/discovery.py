"""The Alpaca UDP discovery responder.

Answers every datagram that starts with ``alpacadiscovery1`` with ``{"AlpacaPort": n}`` (n = the
HTTP port), sent back to the sender. It binds the same address as the HTTP server: on 127.0.0.1 it
answers only local clients; on a specific LAN address it hears only unicast discovery (Linux does
not deliver broadcasts to sockets bound to a unicast address); on 0.0.0.0 it also answers
broadcasts. SO_REUSEADDR and SO_REUSEPORT (required since API reference v12) let several Alpaca
servers and clients on one host share the port.
"""

from __future__ import annotations

import json
import logging
import socket
import threading

log = logging.getLogger(__name__)

DISCOVERY_PORT = 32227
DISCOVERY_PREFIX = b"alpacadiscovery1"
_POLL_S = 0.25


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class DiscoveryResponder:
    """Answers Alpaca discovery on UDP ``host:port`` for the HTTP server on ``alpaca_port``."""

    def __init__(self, host: str, port: int, alpaca_port: int) -> None:
        self.host = host
        self.alpaca_port = alpaca_port
        self._requested_port = port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.answered = 0

    @property
    def port(self) -> int:
        """The bound UDP port (after start; the requested one before)."""
        if self._sock is None:
            return self._requested_port
        return int(self._sock.getsockname()[1])

    def start(self) -> None:
        """Bind and start answering in a daemon thread. Raises OSError (address in use, ...)."""
        sock = socket.socket(_family(self.host), socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):  # not on every platform
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self._requested_port))
            sock.settimeout(_POLL_S)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="alpaca-discovery", daemon=True)
        self._thread.start()
        log.info("Alpaca discovery on udp %s:%d", self.host, self.port)

    def stop(self) -> None:
        """Stop answering and close the socket; blocks up to about 1 s. Never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(4 * _POLL_S)
        if self._sock is not None:
            self._sock.close()

    def _serve(self) -> None:
        sock = self._sock
        assert sock is not None
        reply = json.dumps({"AlpacaPort": self.alpaca_port}).encode()
        while not self._stop.is_set():
            try:
                data, sender = sock.recvfrom(1024)
            except TimeoutError:
                continue
            except OSError as err:
                if not self._stop.is_set():
                    log.warning("discovery receive failed: %s", err)
                return
            if not data.startswith(DISCOVERY_PREFIX):
                log.debug("ignoring a %d-byte datagram from %s", len(data), sender)
                continue
            try:
                sock.sendto(reply, sender)
                self.answered += 1
                log.debug("answered discovery from %s", sender)
            except OSError as err:
                log.debug("discovery reply to %s failed: %s", sender, err)
