"""The daemon's local HTTP/JSON API (stdlib ``http.server``) over a :class:`DaemonControl`.

Routes (JSON in, JSON out)::

    GET  /api/v1/status                        the daemon's status snapshot
    POST /api/v1/runs                          {"camera": .., "plan": ..} or {"schedule": ..}
    POST /api/v1/cameras/{name}/pause|resume|stop

and the web view (:mod:`capture.daemon.web`): ``/``, ``/static/…``, ``/report``,
``GET /api/v1/live|history|library|report``.

Authentication: every POST needs ``Authorization: Bearer <token>``. Without a configured token
commands are refused (403) and the API is read-only. ``GET /api/v1/status`` is open on a
loopback bind and needs the token on any other bind. A server bound to anything but loopback
refuses to exist without a token. On a loopback bind the ``Host`` header must name a loopback
host too, so that a web page cannot read the status through DNS rebinding.

Bounded (see README "The service"): the whole request (line, headers, body) must arrive within
:data:`REQUEST_DEADLINE_S` (else 408), headers up to :data:`MAX_HEADER_BYTES` (431), bodies up
to :data:`MAX_BODY_BYTES` (413, JSON only: 415), at most :data:`MAX_CONCURRENT` requests being
answered (503). Requests are read by one non-blocking thread, so slow clients cannot hold the
request slots; unfinished connections are capped overall and per client address, oldest
dropped first. Plans started through the API come only from the daemon's plans folder or a
schedule (the daemon enforces it). Foreign text reaches the log only through
:func:`capture.textsafe.shown`. Nothing else is served. The web view's data follows the status'
rules (open on loopback, token elsewhere); its static files (no data) are open.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import ipaddress
import json
import logging
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from typing import cast
from urllib.parse import unquote
from urllib.parse import urlsplit

from calibd.capture import __version__
from calibd.capture.daemon.control import ControlError
from calibd.capture.daemon.control import DaemonControl
from calibd.capture.daemon.web import CSP
from calibd.capture.daemon.web import ReportCache
from calibd.capture.daemon.web import Streams
from calibd.capture.daemon.web import ViewSource
from calibd.capture.daemon.web import static_file
from calibd.capture.daemon.web import stream_live
from calibd.capture.inputfile import read_input_text
from calibd.capture.net import is_loopback
from calibd.capture.textsafe import shown

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_BODY_BYTES = 16 * 1024  # a larger Content-Length: 413
MAX_HEADER_BYTES = 8 * 1024  # request line and headers; larger: 431
REQUEST_DEADLINE_S = 5.0  # real seconds for the whole request (line, headers, body): else 408
MAX_PENDING = 64  # connections still sending their request; past it the oldest is dropped
MAX_PENDING_PER_CLIENT = 32  # ... of them from one address
MAX_CONCURRENT = 16  # requests being answered at once; more get 503
RESPONSE_TIMEOUT_S = 10.0  # real seconds per send of an answer to a client that does not read
API_PREFIX = "/api/v1"
TOKEN_HINT = ("commands are disabled because no API token is configured: put a random token "
              "(e.g. from 'openssl rand -hex 32') in a file readable by the calibd user and "
              "set daemon.api.token_file in the configuration")

_VIEW_ROUTES = frozenset({f"{API_PREFIX}/status", f"{API_PREFIX}/live", f"{API_PREFIX}/history",
                          f"{API_PREFIX}/library", f"{API_PREFIX}/report", "/report"})
_THUMB_ROUTE = re.compile(r"^/api/v1/masters/([0-9]{1,9})\.png$")
_CAMERA_ROUTE = re.compile(r"^/api/v1/cameras/([^/]+)/(pause|resume|stop)$")
_RUN_KEYS = frozenset({"camera", "plan", "schedule"})
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$")
_BUSY_BODY = b'{"error": "server too busy"}'
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


def read_token_file(path: Path | str) -> str:
    """The token in ``path`` (surrounding whitespace stripped). Raises OSError when it cannot
    be read (missing, unreadable, a folder, a FIFO or device, over 4 kB) and ValueError when it
    is empty or not a single word of printable ASCII."""
    text = read_input_text(path, max_bytes=4096).strip()
    check_token(text, f"the token in {path}")
    return text


def check_token(token: str, what: str = "the API token") -> None:
    """Raise ValueError unless ``token`` is usable in an ``Authorization`` header."""
    if not token:
        raise ValueError(f"{what} is empty")
    if not all(33 <= ord(c) <= 126 for c in token):
        raise ValueError(f"{what} must be one word of printable ASCII characters")


class _Pending:
    """A connection still sending its request: what arrived so far and its deadline."""

    __slots__ = ("buffer", "client", "deadline")

    def __init__(self, client: tuple[Any, ...], deadline: float) -> None:
        self.client = client
        self.deadline = deadline
        self.buffer = b""


class _Server:
    """A small HTTP front end: one thread reads requests from every connection without
    blocking (selectors), and only a request that arrived whole within
    :data:`REQUEST_DEADLINE_S` goes to a request thread (at most :data:`MAX_CONCURRENT` at a
    time). A client that sends slowly therefore holds a socket and a few bytes, never a request
    slot: status answers while hundreds of connections trickle. Pending connections are capped
    overall (:data:`MAX_PENDING`) and per client address (:data:`MAX_PENDING_PER_CLIENT`); when
    a cap is reached the oldest pending connection is dropped, so a new request always gets in.
    """

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily,
                 api: ApiServer) -> None:
        """Binds and listens. Raises OSError (address in use, not local)."""
        self.api = api
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(128)
        except OSError:
            self.close()
            raise
        self.socket.setblocking(False)
        self.server_address: tuple[Any, ...] = self.socket.getsockname()

    # -- the reading thread --------------------------------------------------------------------

    def serve(self) -> None:
        """Serve until :meth:`shutdown`. Runs in the API's serving thread."""
        sel = selectors.DefaultSelector()
        pending: dict[socket.socket, _Pending] = {}  # insertion order: oldest first
        try:
            sel.register(self.socket, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                now = time.monotonic()
                wait = min([0.5, *(p.deadline - now for p in pending.values())])
                for key, _ in sel.select(max(0.0, wait)):
                    conn = key.fileobj
                    if conn is self.socket:
                        self._accept(sel, pending)
                    elif conn is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    elif conn in pending:  # not dropped earlier in this batch
                        assert isinstance(conn, socket.socket)
                        try:
                            self._receive(sel, pending, conn)
                        except Exception:  # a bug must not end the API for everyone
                            log.exception("API: error while reading a request")
                            self._drop(sel, pending, conn)
                self._expire(sel, pending, time.monotonic())
        finally:
            for conn in list(pending):
                self._drop(sel, pending, conn)
            sel.close()

    def _accept(self, sel: selectors.BaseSelector,
                pending: dict[socket.socket, _Pending]) -> None:
        for _ in range(64):  # a burst of connections: take them, then read the ones waiting
            try:
                conn, client = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # e.g. out of file descriptors: try again on the next pass
                log.warning("API: cannot accept a connection: %s", err)
                return
            conn.setblocking(False)
            same = [c for c, p in pending.items() if p.client[0] == client[0]]
            if len(same) >= MAX_PENDING_PER_CLIENT:
                self._drop(sel, pending, same[0], "too many unfinished requests from it")
            elif len(pending) >= MAX_PENDING:
                self._drop(sel, pending, next(iter(pending)), "too many unfinished requests")
            pending[conn] = _Pending(client, time.monotonic() + REQUEST_DEADLINE_S)
            sel.register(conn, selectors.EVENT_READ)

    def _receive(self, sel: selectors.BaseSelector, pending: dict[socket.socket, _Pending],
                 conn: socket.socket) -> None:
        entry = pending[conn]
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._drop(sel, pending, conn)
            return
        entry.buffer += data
        complete = _complete_request(entry.buffer)
        if complete is None:
            if len(entry.buffer) > MAX_HEADER_BYTES + MAX_BODY_BYTES:
                self._answer_and_drop(sel, pending, conn, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        if complete < 0:
            self._answer_and_drop(sel, pending, conn,
                                  HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
            return
        sel.unregister(conn)
        del pending[conn]
        self._dispatch(conn, entry.buffer[:complete], entry.client)

    def _expire(self, sel: selectors.BaseSelector, pending: dict[socket.socket, _Pending],
                now: float) -> None:
        for conn, entry in list(pending.items()):
            if entry.deadline <= now:
                log.debug("API: %s did not send its request within %.0f s",
                          shown(entry.client[0]), REQUEST_DEADLINE_S)
                self._answer_and_drop(sel, pending, conn, HTTPStatus.REQUEST_TIMEOUT)

    def _answer_and_drop(self, sel: selectors.BaseSelector,
                         pending: dict[socket.socket, _Pending], conn: socket.socket,
                         status: HTTPStatus) -> None:
        """Best effort: one non-blocking send of a short JSON error, then close."""
        body = json.dumps({"error": status.phrase.lower()}).encode()
        reply = (f"HTTP/1.0 {status.value} {status.phrase}\r\nContent-Type: application/json"
                 f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        with contextlib.suppress(OSError):
            conn.send(reply + body)
        self._drop(sel, pending, conn)

    @staticmethod
    def _drop(sel: selectors.BaseSelector, pending: dict[socket.socket, _Pending],
              conn: socket.socket, why: str = "") -> None:
        entry = pending.pop(conn, None)
        if why and entry is not None:
            log.debug("API: dropped a connection from %s: %s", shown(entry.client[0]), why)
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(conn)
        conn.close()

    # -- request threads -------------------------------------------------------------------

    def _dispatch(self, conn: socket.socket, data: bytes, client: tuple[Any, ...]) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("API: too many concurrent requests, refusing one from %s",
                        shown(client[0]))
            with contextlib.suppress(OSError):
                conn.setblocking(True)
                conn.settimeout(1.0)
                conn.sendall(_BUSY)
            conn.close()
            return
        try:
            threading.Thread(target=self._handle, args=(conn, data, client),
                             name="calibd-api-request", daemon=True).start()
        except RuntimeError:  # cannot start a thread: answer busy rather than hang
            self._slots.release()
            conn.close()

    def _handle(self, conn: socket.socket, data: bytes, client: tuple[Any, ...]) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(RESPONSE_TIMEOUT_S)
            _Handler(cast(Any, (conn, data)), client, cast(Any, self))
        except Exception:
            log.debug("API: error while serving %s", shown(client[0]), exc_info=True)
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
            conn.close()
            self._slots.release()

    # -- life cycle --------------------------------------------------------------------------

    def stopping(self) -> bool:
        """True once :meth:`shutdown` was called (live streams end)."""
        return self._stopping.is_set()

    def shutdown(self) -> None:
        """Make :meth:`serve` return (at once). Never raises."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def close(self) -> None:
        """Close the listening socket. Never raises."""
        for sock in (self.socket, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()


def _complete_request(buffer: bytes) -> int | None:
    """Length of the whole request in ``buffer`` once its headers and body (as its
    Content-Length says, up to :data:`MAX_BODY_BYTES`) have arrived; None while incomplete;
    -1 when the headers are larger than :data:`MAX_HEADER_BYTES`. A request whose body is too
    large, chunked or of unreadable length is complete at its headers: the handler refuses it
    from them."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n")
            if (i := buffer.find(sep, 0, MAX_HEADER_BYTES + 4)) >= 0]
    if not ends:
        return -1 if len(buffer) > MAX_HEADER_BYTES else None
    head_end = min(ends)
    if head_end > MAX_HEADER_BYTES + 4:
        return -1
    match = _CONTENT_LENGTH.search(buffer[:head_end])
    if match is None or not match.group(1).isdigit():
        return head_end
    length = int(match.group(1)) if len(match.group(1)) < 12 else MAX_BODY_BYTES + 1
    if length > MAX_BODY_BYTES:
        return head_end
    return head_end + length if len(buffer) >= head_end + length else None


class _Writer(io.BufferedIOBase):
    """``wfile`` of a request: writes go straight to the socket (bounded by its timeout)."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._conn.sendall(data)
        return len(data)


class _Handler(BaseHTTPRequestHandler):
    server: _Server  # type: ignore[assignment]  # not a socketserver: see _Server
    server_version = f"calibd/{__version__}"
    sys_version = ""

    def setup(self) -> None:
        # The whole request was read by the server's reading thread: parse it from memory.
        conn, data = self.request
        self.connection = conn
        self.rfile = io.BytesIO(data)
        self.wfile = _Writer(conn)

    # -- routing ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self._path()
        if path is None:
            return
        api = self.server.api
        if path == "/" or path.startswith("/static/"):
            found = static_file("index.html" if path == "/" else path[len("/static/"):])
            if found is None:
                self._not_found(path, "GET")
            else:
                self._send_bytes(HTTPStatus.OK, *found)
            return
        thumb = _THUMB_ROUTE.match(path)
        if path not in _VIEW_ROUTES and thumb is None:
            self._not_found(path, "GET")
            return
        if not api.loopback and not self._authorised():
            return
        if path == f"{API_PREFIX}/status":
            self._call(api.control.status, HTTPStatus.OK, raw=True)
            return
        source = api.control
        if not isinstance(source, ViewSource):
            self._send(HTTPStatus.NOT_FOUND, {"error": "the web view needs the daemon"})
        elif thumb is not None:
            self._thumbnail(source, int(thumb.group(1)))
        elif path == f"{API_PREFIX}/live":
            self._stream(source)
        elif path == f"{API_PREFIX}/history":
            self._call(source.history, HTTPStatus.OK, raw=True)
        elif path == f"{API_PREFIX}/library":
            self._call(source.library_view, HTTPStatus.OK, raw=True)
        else:  # the report: the whole page, or its body for the web view
            try:
                page = api.reports.get(source.report_html)
            except Exception:
                log.exception("API: the report failed")
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR,
                           {"error": "the report failed (see the daemon's log)"})
                return
            if path == f"{API_PREFIX}/report":
                start, end = page.find(b"<body>"), page.rfind(b"</body>")
                page = page[start + 6:end] if 0 <= start < end else page
            self._send_bytes(HTTPStatus.OK, "text/html; charset=utf-8", page)

    def _thumbnail(self, source: ViewSource, master_id: int) -> None:
        try:
            png = source.thumbnail(master_id)
        except Exception as err:  # an unreadable master: say so, keep serving
            log.warning("API: no thumbnail for master %d: %s", master_id, shown(err, 200))
            self._send(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": "the master cannot be read"})
            return
        if png is None:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no master {master_id}"})
        else:
            self._send_bytes(HTTPStatus.OK, "image/png", png)

    def _stream(self, source: ViewSource) -> None:
        """Server-sent events of the live status (bounded: see :mod:`capture.daemon.web`)."""
        streams = self.server.api.streams
        if not streams.acquire():
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "too many live streams"})
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.close_connection = True
            stream_live(source.live, self.wfile.write, self.server.stopping)
        except OSError:  # the client went away or stopped reading
            pass
        finally:
            streams.release()

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
            log.info("API: refused %s %s from %s: %s", shown(self.command), shown(self.path),
                     shown(self.client_address[0]), message)
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
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            self._send(HTTPStatus.BAD_REQUEST, {"error": f"invalid JSON: {shown(err)}"})
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
            log.exception("API: %s %s failed", shown(self.command), shown(self.path))
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"error": "internal error (see the daemon's log)"})
            return
        self._send(ok, result if raw else {"ok": True, "message": str(result)})

    def _not_found(self, path: str, method: str) -> None:
        if path in _VIEW_ROUTES or path == f"{API_PREFIX}/runs" or _CAMERA_ROUTE.match(path):
            self._method_not_allowed()
            return
        self._send(HTTPStatus.NOT_FOUND,
                   {"error": f"no such resource: {method} {shown(path, 100)}"})

    def _method_not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED,
                   {"error": f"method {shown(self.command, 20)} not allowed"},
                   extra={"Allow": "GET, POST"})

    def _send_bytes(self, status: int, ctype: str, body: bytes) -> None:
        """A page or file of the web view (no caching, no framing, this origin only)."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send(self, status: int, data: Any, extra: dict[str, str] | None = None) -> None:
        try:
            body = json.dumps(data, default=str, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as err:
            log.exception("API: cannot encode the answer to %s %s", shown(self.command),
                          shown(self.path))
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
        # The request line and http.server's error texts quote the client: escape them.
        log.debug("API %s: %s", shown(self.client_address[0]), shown(format % args, 300))


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
        self.streams = Streams()
        self.reports = ReportCache()
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
        self._thread = threading.Thread(target=self._server.serve, name="calibd-api",
                                        daemon=True)
        self._thread.start()
        log.info("API listening on %s%s", self.url,
                 "" if self.token else " (read-only: no token configured)")

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop serving and close the listening socket and the unfinished connections. Blocks
        at most about ``timeout_s`` seconds; requests being answered finish in their daemon
        threads. Idempotent; never raises."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        thread.join(timeout_s)
        server.close()
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
