"""HTTP side of the server: a threading HTTP/1.1 server, URL routing and the Alpaca envelope.

Routes (URLs are case-sensitive and lower case, as the specification requires):

* ``GET /management/apiversions``, ``/management/v1/description``,
  ``/management/v1/configureddevices``;
* ``GET /setup`` and ``/setup/v1/{device_type}/{device_number}/setup``: small HTML pages (the
  specification requires them even when there is nothing to configure);
* ``GET|PUT /api/v1/{device_type}/{device_number}/{member}``.

The ASCOM decision order, in one place (:meth:`AlpacaRequestHandler._route`): path (anything that
is not one of the routes above, a wrong API root included, is HTTP 400), configured device,
ClientID/ClientTransactionID, then :func:`.members.validate` (member, HTTP method, parameter names
and types), all HTTP 400 with a plain-text message; only then the device (NotImplemented,
NotConnected, execution: HTTP 200 with an Alpaca error number). HTTP methods other than GET and
PUT are 405. Device answers are JSON (HTTP 200 with
``ErrorNumber``/``ErrorMessage``), except camera images, sent as ImageBytes when the client
accepts ``application/imagebytes`` and as the JSON ImageArray otherwise. Each request is logged at
DEBUG only.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from calibd.simulators.alpaca_server.device import AlpacaDevice
from calibd.simulators.alpaca_server.device import ImageResult
from calibd.simulators.alpaca_server.imagebytes import IMAGEBYTES_MIME
from calibd.simulators.alpaca_server.imagebytes import encode_imagebytes
from calibd.simulators.alpaca_server.imagebytes import encode_imagebytes_error
from calibd.simulators.alpaca_server.imagebytes import encode_json_imagearray
from calibd.simulators.alpaca_server.imagebytes import wants_imagebytes
from calibd.simulators.alpaca_server.members import validate
from calibd.simulators.alpaca_server.protocol import AlpacaError
from calibd.simulators.alpaca_server.protocol import BadRequest
from calibd.simulators.alpaca_server.protocol import ErrorCode
from calibd.simulators.alpaca_server.protocol import Params
from calibd.simulators.alpaca_server.protocol import envelope

log = logging.getLogger(__name__)

_DEVICE_PATH = re.compile(r"/api/v1/(?P<type>[a-z]+)/(?P<number>[0-9]+)/(?P<member>[a-z0-9]+)")
_SETUP_PATH = re.compile(r"/setup/v1/(?P<type>[a-z]+)/(?P<number>[0-9]+)/setup")
_MAX_BODY = 64 * 1024
_JSON = "application/json; charset=utf-8"
_HTML = "text/html; charset=utf-8"

DeviceKey = tuple[str, int]


class AlpacaHTTPServer(ThreadingHTTPServer):
    """Serves ``devices`` (keyed by (device type, number)) and the management API.

    Connections are kept alive (HTTP/1.1); :meth:`close_connections` ends the open ones, so a
    stopped server really stops answering.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        devices: Mapping[DeviceKey, AlpacaDevice],
        description: Mapping[str, str],
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.devices = dict(devices)
        self.description = dict(description)
        self._transaction = 0
        self._transaction_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, AlpacaRequestHandler)

    def next_transaction_id(self) -> int:
        """ServerTransactionID: 1, 2, ... (wraps to 1 after 2**32 - 1). Thread-safe."""
        with self._transaction_lock:
            self._transaction = self._transaction % 0xFFFFFFFF + 1
            return self._transaction

    def track(self, sock: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)

    def close_connections(self) -> None:
        """Shut down every open client connection (their handler threads then end)."""
        with self._connections_lock:
            open_now = list(self._connections)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def configured_devices(self) -> list[dict[str, Any]]:
        return [
            {
                "DeviceName": device.name,
                "DeviceType": device.type_name,
                "DeviceNumber": number,
                "UniqueID": device.unique_id,
            }
            for (_, number), device in self.devices.items()
        ]


class AlpacaRequestHandler(BaseHTTPRequestHandler):
    """One client connection. Runs in its own thread."""

    protocol_version = "HTTP/1.1"
    server_version = "calibd-alpaca"
    disable_nagle_algorithm = True
    timeout = 120  # real seconds a kept-alive connection may stay idle (or a send may stall)
    server: AlpacaHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.track(self.connection, open_=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access lines come from :meth:`_dispatch` (with the Alpaca error number)."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _not_allowed(self) -> None:
        self._read_body()
        self._send(405, b"only GET and PUT are used by Alpaca", "text/plain", allow="GET, PUT")

    do_POST = do_DELETE = do_PATCH = _not_allowed  # noqa: N815

    # -- dispatch --------------------------------------------------------------------------------

    def _dispatch(self, verb: str) -> None:
        started = time.perf_counter()
        status, number = 200, 0
        try:
            body = self._read_body()
            url = urlsplit(self.path)
            params = Params.from_query(url.query) if verb == "GET" else Params.from_form(body)
            status, number = self._route(verb, url.path, params)
        except BadRequest as err:
            status = 400
            self._send(400, str(err).encode(), "text/plain; charset=utf-8")
        except OSError as err:  # the client went away mid-answer
            log.debug("%s %s: connection lost: %s", verb, self.path, err)
            self.close_connection = True
            return
        log.debug(
            "%s %s %s -> %d (0x%03X) %.1f ms",
            self.address_string(),
            verb,
            self.path,
            status,
            number,
            (time.perf_counter() - started) * 1e3,
        )

    def _read_body(self) -> str:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise BadRequest("chunked request bodies are not supported")
        length_text = self.headers.get("Content-Length") or "0"
        if not length_text.isdigit() or int(length_text) > _MAX_BODY:
            self.close_connection = True
            raise BadRequest(f"bad Content-Length {length_text!r}")
        length = int(length_text)
        raw = self.rfile.read(length) if length else b""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the request body is not UTF-8") from None

    def _route(self, verb: str, path: str, params: Params) -> tuple[int, int]:
        """Answer one request; returns (HTTP status, Alpaca error number) for the access log."""
        if path.startswith("/management/"):
            if verb != "GET":
                raise BadRequest("the management API is read-only (GET)")
            return self._management(path, params)
        if path == "/setup" or path.startswith("/setup/"):
            return self._setup(verb, path)
        match = _DEVICE_PATH.fullmatch(path)
        if match is None:
            raise BadRequest(f"not an Alpaca path: {path[:80]!r}")
        device = self._device(match["type"], match["number"])
        _, ctid = params.transaction()
        member = match["member"]
        validate(device.device_type, verb, member, params)
        stid = self.server.next_transaction_id()
        image = member in ("imagearray", "imagearrayvariant") and verb == "GET"
        try:
            value = device.handle(verb, member, params)
        except AlpacaError as err:
            self._send_error(err, ctid, stid, imagebytes=image)
            return 200, int(err.number)
        except BadRequest:
            raise
        except Exception as err:
            log.exception("%s %s failed", verb, path)
            problem = AlpacaError(ErrorCode.UNSPECIFIED, f"internal server error: {err!r}")
            self._send_error(problem, ctid, stid, imagebytes=image)
            return 200, int(problem.number)
        if isinstance(value, ImageResult):
            self._send_image(value, ctid, stid)
        else:
            has_value = verb == "GET" or value is not None
            self._send_json(envelope(ctid, stid, value=value, has_value=has_value))
        return 200, 0

    def _device(self, device_type: str, number: str) -> AlpacaDevice:
        """The configured device at ``device_type``/``number``. Raises BadRequest."""
        device = self.server.devices.get((device_type, int(number))) if len(number) <= 10 else None
        if device is None:
            raise BadRequest(f"device {device_type[:40]}/{number[:12]} is not configured here")
        return device

    def _setup(self, verb: str, path: str) -> tuple[int, int]:
        """The server's and the devices' setup pages: nothing is configurable over HTTP here, so
        each page says so (the specification requires the pages all the same)."""
        if verb != "GET":
            raise BadRequest("the setup pages are read-only (GET)")
        if path == "/setup":
            title = "calibd simulated Alpaca server"
            items = "".join(
                f"<li><a href=\"/setup/v1/{kind}/{number}/setup\">"
                f"{html.escape(device.name)}</a> ({html.escape(device.type_name)} {number})</li>"
                for (kind, number), device in self.server.devices.items()
            )
            body = f"<ul>{items}</ul>"
        else:
            match = _SETUP_PATH.fullmatch(path)
            if match is None:
                raise BadRequest(f"not an Alpaca setup path: {path[:80]!r}")
            device = self._device(match["type"], match["number"])
            title = f"{device.name} ({device.type_name} {device.number})"
            body = f"<p>{html.escape(device.description)}</p>"
        page = (
            f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title></head><body><h1>{html.escape(title)}</h1>{body}<p>Nothing to configure: "
            "the simulated devices are set up from the command line.</p></body></html>"
        )
        self._send(200, page.encode(), _HTML)
        return 200, 0

    def _management(self, path: str, params: Params) -> tuple[int, int]:
        _, ctid = params.transaction()
        stid = self.server.next_transaction_id()
        value: Any
        if path == "/management/apiversions":
            value = [1]
        elif path == "/management/v1/description":
            value = self.server.description
        elif path == "/management/v1/configureddevices":
            value = self.server.configured_devices()
        else:
            raise BadRequest(f"no management resource {path!r}")
        self._send_json(envelope(ctid, stid, value=value, has_value=True))
        return 200, 0

    # -- answers ---------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, *, allow: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if allow:
            self.send_header("Allow", allow)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, doc: dict[str, Any]) -> None:
        self._send(200, json.dumps(doc, separators=(",", ":")).encode(), _JSON)

    def _send_error(self, err: AlpacaError, ctid: int, stid: int, *, imagebytes: bool) -> None:
        if imagebytes and wants_imagebytes(self.headers.get("Accept")):
            body = encode_imagebytes_error(
                int(err.number), err.message, client_transaction_id=ctid,
                server_transaction_id=stid,
            )
            self._send(200, body, IMAGEBYTES_MIME)
        else:
            self._send_json(envelope(ctid, stid, error=err))

    def _send_image(self, image: ImageResult, ctid: int, stid: int) -> None:
        if wants_imagebytes(self.headers.get("Accept")):
            body = encode_imagebytes(
                image.data, client_transaction_id=ctid, server_transaction_id=stid
            )
            self._send(200, body, IMAGEBYTES_MIME)
        else:
            body = encode_json_imagearray(
                image.data, client_transaction_id=ctid, server_transaction_id=stid
            )
            self._send(200, body, _JSON)
