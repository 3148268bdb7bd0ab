"""The daemon's local HTTP/JSON API (stdlib ``http.server``) over a :class:`DaemonControl`.

Routes (JSON in, JSON out)::

    GET  /api/v1/status                        the daemon's status snapshot
    POST /api/v1/runs                          {"camera": .., "plan": ..} or {"schedule": ..}
    POST /api/v1/cameras/{name}/pause|resume|stop

Authentication: every POST needs ``Authorization: Bearer <token>``. Without a configured token
commands are refused (403) and the API is read-only. ``GET /api/v1/status`` is open on a
loopback bind and needs the token on any other bind. A server bound to anything but loopback
refuses to exist without a token. On a loopback bind the ``Host`` header must name a loopback
host too, so that a web page cannot read the status through DNS rebinding.

Bounded: request bodies up to :data:`MAX_BODY_BYTES`, a socket timeout per request, at most
:data:`MAX_CONCURRENT` requests in flight (more get 503). Nothing else is served.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from capture import __version__
from capture.daemon.control import ControlError, DaemonControl
from capture.net import is_loopback

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_BODY_BYTES = 16 * 1024
MAX_CONCURRENT = 16
REQUEST_TIMEOUT_S = 10.0
API_PREFIX = "/api/v1"
TOKEN_HINT = ("commands are disabled because no API token is configured: put a random token "
              "(e.g. from 'openssl rand -hex 32') in a file readable by the calibd user and "
              "set daemon.api.token_file in the configuration")

_CAMERA_ROUTE = re.compile(r"^/api/v1/cameras/([^/]+)/(pause|resume|stop)$")
_RUN_KEYS = frozenset({"camera", "plan", "schedule"})
_BUSY_BODY = b'{"error": "server too busy"}'
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


def read_token_file(path: Path | str) -> str:
    """The token in ``path`` (surrounding whitespace stripped). Raises OSError when it cannot
    be read and ValueError when it is empty or not a single line of printable ASCII."""
    text = Path(path).read_text(encoding="utf-8").strip()
    check_token(text, f"the token in {path}")
    return text


def check_token(token: str, what: str = "the API token") -> None:
    """Raise ValueError unless ``token`` is usable in an ``Authorization`` header."""
    if not token:
        raise ValueError(f"{what} is empty")
    if not all(33 <= ord(c) <= 126 for c in token):
        raise ValueError(f"{what} must be one word of printable ASCII characters")


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that binds IPv4 or IPv6, caps concurrent requests and does not
    wait for request threads on close."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily,
                 api: ApiServer) -> None:
        self.address_family = family
        self.api = api
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("API: too many concurrent requests, refusing one from %s",
                        client_address[0])
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the address up in DNS (getfqdn), which can block
        # for seconds on an observatory network without a resolver.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("API: error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = f"calibd/{__version__}"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S  # per socket operation: slow or idle clients are dropped

    # -- routing ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self._path()
        if path is None:
            return
        if path != f"{API_PREFIX}/status":
            self._not_found(path, "GET")
            return
        api = self.server.api
        if not api.loopback and not self._authorised():
            return
        self._call(api.control.status, HTTPStatus.OK, raw=True)

    def do_POST(self) -> None:
        path = self._path()
        if path is None or not self._authorised():
            return
        control = self.server.api.control
        if path == f"{API_PREFIX}/runs":
            body = self._json_body(required=True)
            if body is None:
                return
            args = self._run_args(body)
            if args is None:
                return
            self._call(lambda: control.start(**args), HTTPStatus.ACCEPTED)
            return
        match = _CAMERA_ROUTE.match(path)
        if match is None:
            self._not_found(path, "POST")
            return
        if self._json_body(required=False) is None:
            return
        camera, action = unquote(match.group(1)), match.group(2)
        method = {"pause": control.pause, "resume": control.resume, "stop": control.stop}[action]
        self._call(lambda: method(camera), HTTPStatus.OK)

    def do_PUT(self) -> None:
        self._method_not_allowed()

    def do_DELETE(self) -> None:
        self._method_not_allowed()

    def do_PATCH(self) -> None:
        self._method_not_allowed()

    # -- pieces ----------------------------------------------------------------------------

    def _path(self) -> str | None:
        """The request path without query; None after answering a bad Host (DNS rebinding)."""
        if self.server.api.loopback and not self._host_is_loopback():
            self._send(HTTPStatus.MISDIRECTED_REQUEST,
                       {"error": "this API answers only requests addressed to a loopback host"})
            return None
        return urlsplit(self.path).path.rstrip("/") or "/"

    def _host_is_loopback(self) -> bool:
        host = self.headers.get("Host")
        if host is None:  # HTTP/1.0 without Host: not a browser
            return True
        name = host.strip()
        if name.startswith("["):
            name = name[1:name.find("]")] if "]" in name else name[1:]
        else:
            name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
        name = name.lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def _authorised(self) -> bool:
        """True when the request carries the token; otherwise answers 403/401 and says why."""
        token = self.server.api.token
        if token is None:
            self._send(HTTPStatus.FORBIDDEN, {"error": TOKEN_HINT})
            return False
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), token.encode("utf-8"))
        if not ok:
            message = ("missing API token (send 'Authorization: Bearer <token>')" if not header
                       else "wrong API token")
            log.info("API: refused %s %s from %s: %s", self.command, self.path,
                     self.client_address[0], message)
            self._send(HTTPStatus.UNAUTHORIZED, {"error": message},
                       extra={"WWW-Authenticate": 'Bearer realm="calibd"'})
        return ok

    def _json_body(self, *, required: bool) -> dict[str, Any] | None:
        """The JSON object in the body ({} when empty and not required); None after answering
        an error (wrong length, type or content)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._send(HTTPStatus.LENGTH_REQUIRED, {"error": "send a Content-Length"})
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._send(HTTPStatus.BAD_REQUEST, {"error": "bad Content-Length"})
            return None
        if length > MAX_BODY_BYTES:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       {"error": f"request body larger than {MAX_BODY_BYTES} bytes"})
            return None
        if length == 0:
            if required:
                self._send(HTTPStatus.BAD_REQUEST, {"error": "a JSON object body is required"})
                return None
            return {}
        ctype = self.headers.get_content_type()
        if ctype != "application/json":
            self._send(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                       {"error": f"expected Content-Type application/json, got {ctype}"})
            return None
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            self._send(HTTPStatus.BAD_REQUEST, {"error": f"invalid JSON: {err}"})
            return None
        except TimeoutError:
            self._send(HTTPStatus.REQUEST_TIMEOUT, {"error": "request body not received"})
            return None
        if not isinstance(body, dict):
            self._send(HTTPStatus.BAD_REQUEST, {"error": "the body must be a JSON object"})
            return None
        return body

    def _run_args(self, body: dict[str, Any]) -> dict[str, str | None] | None:
        unknown = sorted(set(body) - _RUN_KEYS)
        problem = None
        if unknown:
            problem = f"unknown keys {unknown} (allowed: camera, plan, schedule)"
        elif any(v is not None and (not isinstance(v, str) or not v) for v in body.values()):
            problem = "camera, plan and schedule must be non-empty strings"
        elif (body.get("plan") is None) == (body.get("schedule") is None):
            problem = "give either 'plan' (with an optional 'camera') or 'schedule'"
        if problem is not None:
            self._send(HTTPStatus.BAD_REQUEST, {"error": problem})
            return None
        return {k: body.get(k) for k in ("camera", "plan", "schedule")}

    def _call(self, fn: Callable[[], Any], ok: HTTPStatus, *, raw: bool = False) -> None:
        """Run a control call and answer with its result, its ControlError, or 500."""
        try:
            result = fn()
        except ControlError as err:
            status = err.status if 400 <= err.status <= 599 else 400
            self._send(status, {"error": str(err)})
            return
        except Exception:
            log.exception("API: %s %s failed", self.command, self.path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"error": "internal error (see the daemon's log)"})
            return
        self._send(ok, result if raw else {"ok": True, "message": str(result)})

    def _not_found(self, path: str, method: str) -> None:
        if path in (f"{API_PREFIX}/status", f"{API_PREFIX}/runs") or _CAMERA_ROUTE.match(path):
            self._method_not_allowed()
            return
        self._send(HTTPStatus.NOT_FOUND, {"error": f"no such resource: {method} {path}"})

    def _method_not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"method {self.command} not allowed"},
                   extra={"Allow": "GET, POST"})

    def _send(self, status: int, data: Any, extra: dict[str, str] | None = None) -> None:
        try:
            body = json.dumps(data, default=str, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as err:
            log.exception("API: cannot encode the answer to %s %s", self.command, self.path)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            body = json.dumps({"error": f"cannot encode the answer: {err}"}).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """Errors found by http.server itself (malformed request line, unknown method) as
        JSON rather than its HTML page."""
        try:
            text = message or HTTPStatus(code).phrase
        except ValueError:
            text = message or "error"
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # unparsable request line: still send headers
            self.request_version = "HTTP/1.0"
        self._send(code, {"error": text})

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("API %s: " + format, self.client_address[0], *args)


class ApiServer:
    """The HTTP API of one daemon, served from background threads.

    ``host`` defaults to loopback; any other address needs ``token`` (raises ValueError at
    construction otherwise, before anything is bound). ``port=0`` picks a free port; read it
    from :attr:`port` after :meth:`start`. Request threads are daemonic and call ``control``
    concurrently.
    """

    def __init__(self, control: DaemonControl, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, token: str | None = None) -> None:
        """Raises ValueError for a non-loopback ``host`` without a token, an unusable token or
        a port outside 0..65535. Does not bind (see :meth:`start`); may resolve ``host``."""
        if token is not None:
            check_token(token)
        if not 0 <= port <= 65535:
            raise ValueError(f"API port {port} is outside 0..65535")
        self.control = control
        self.host = host
        self.token = token
        self.loopback = is_loopback(host)
        if not self.loopback and token is None:
            raise ValueError(f"refusing to listen on {host or 'all addresses'} without a token "
                             "(set daemon.api.token_file, or bind to 127.0.0.1)")
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the requested one before :meth:`start`)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL of the API, e.g. ``http://127.0.0.1:8765``."""
        host = self.host if self.host else "0.0.0.0"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop` while the serving thread lives."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Bind and serve from a daemon thread; returns at once. Raises OSError when the
        address cannot be bound (in use, not local) and RuntimeError when already started."""
        if self._server is not None:
            raise RuntimeError("the API server is already started")
        family, address = self._resolve()
        self._server = _Server(address, family, self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="calibd-api", daemon=True)
        self._thread.start()
        log.info("API listening on %s%s", self.url,
                 "" if self.token else " (read-only: no token configured)")

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop serving and close the listening socket. Blocks at most about ``timeout_s``
        seconds (normally one poll interval, 0.2 s); requests still running finish in their
        daemon threads. Idempotent; never raises."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        # shutdown() waits for serve_forever to notice (one poll interval, 0.2 s); run it in a
        # helper thread so a wedged server cannot hold the daemon's shutdown past timeout_s.
        deadline = time.monotonic() + timeout_s
        helper = threading.Thread(target=server.shutdown, name="calibd-api-stop", daemon=True)
        helper.start()
        helper.join(timeout_s)
        thread.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        self._server = None
        self._thread = None
        log.debug("API stopped")

    def _resolve(self) -> tuple[socket.AddressFamily, tuple[str, int]]:
        host = self.host.strip("[]")
        if host in ("", "localhost"):
            host = "0.0.0.0" if host == "" else "127.0.0.1"
        infos = socket.getaddrinfo(host, self._requested_port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        return family, (str(sockaddr[0]), int(sockaddr[1]))
