"""The HTTP API layer over a test double of the daemon core (a recording DaemonControl): routes,
the token rules, bounded and typed requests, error mapping, start/stop. End-to-end tests through
the real daemon live with the daemon core."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from calibd.capture.daemon import api as api_module
from calibd.capture.daemon.api import MAX_BODY_BYTES
from calibd.capture.daemon.api import ApiServer
from calibd.capture.daemon.api import read_token_file
from calibd.capture.daemon.control import ControlError

TOKEN = "s3cret-token-0123456789abcdef"


class FakeControl:
    """Records calls; ``fail`` makes the next command raise it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail: Exception | None = None
        self.block: threading.Event | None = None

    def _record(self, name: str, **kwargs: Any) -> str:
        self.calls.append((name, kwargs))
        if self.fail is not None:
            raise self.fail
        return f"{name} ok"

    def status(self) -> dict[str, Any]:
        if self.block is not None:
            self.block.wait(5)
        if self.fail is not None:
            raise self.fail
        return {"daemon": {"version": "0.1.0", "pid": 1}, "cameras": {"main": {"state": "idle"}},
                "schedules": [], "library": {"root": "/srv/calibd/library"}}

    def start(self, *, camera: str | None, plan: str | None, schedule: str | None) -> str:
        return self._record("start", camera=camera, plan=plan, schedule=schedule)

    def pause(self, camera: str) -> str:
        return self._record("pause", camera=camera)

    def resume(self, camera: str) -> str:
        return self._record("resume", camera=camera)

    def stop(self, camera: str) -> str:
        return self._record("stop", camera=camera)


class Reply:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self) -> Any:
        assert self.headers.get_content_type() == "application/json"
        return json.loads(self.body)


def call(server: ApiServer, method: str, path: str, body: Any = None, *,
         token: str | None = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None, host: str = "127.0.0.1") -> Reply:
    conn = http.client.HTTPConnection(host, server.port, timeout=5)
    hdrs = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def server(control: FakeControl) -> Iterator[ApiServer]:
    srv = ApiServer(control, port=0, token=TOKEN)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def readonly(control: FakeControl) -> Iterator[ApiServer]:
    srv = ApiServer(control, port=0)
    srv.start()
    yield srv
    srv.stop()


# -- status ------------------------------------------------------------------------------------

def test_status_on_loopback_needs_no_token(readonly: ApiServer) -> None:
    assert readonly.port != 0
    reply = call(readonly, "GET", "/api/v1/status")
    assert reply.status == 200
    assert reply.json["cameras"] == {"main": {"state": "idle"}}
    assert reply.headers["Cache-Control"] == "no-store"


def test_status_ignores_query_and_trailing_slash(readonly: ApiServer) -> None:
    assert call(readonly, "GET", "/api/v1/status/?x=1").status == 200


def test_loopback_bind_refuses_foreign_host_headers(readonly: ApiServer) -> None:
    # a web page that rebinds evil.example to 127.0.0.1 must not read the status
    reply = call(readonly, "GET", "/api/v1/status", headers={"Host": "evil.example:8765"})
    assert reply.status == 421
    for host in ("localhost:8765", "127.0.0.1", "[::1]:8765", "LOCALHOST."):
        assert call(readonly, "GET", "/api/v1/status", headers={"Host": host}).status == 200


def test_status_errors_map_to_http(readonly: ApiServer, control: FakeControl,
                                   caplog: pytest.LogCaptureFixture) -> None:
    control.fail = ControlError("library is busy", 503)
    reply = call(readonly, "GET", "/api/v1/status")
    assert (reply.status, reply.json) == (503, {"error": "library is busy"})
    control.fail = RuntimeError("boom")
    with caplog.at_level(logging.ERROR, logger="calibd.capture.daemon.api"):
        reply = call(readonly, "GET", "/api/v1/status")
    assert reply.status == 500
    assert "boom" not in reply.json["error"]
    assert any("boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)


# -- the token ---------------------------------------------------------------------------------

def test_commands_without_a_configured_token_are_forbidden(readonly: ApiServer,
                                                           control: FakeControl) -> None:
    reply = call(readonly, "POST", "/api/v1/cameras/main/pause")
    assert reply.status == 403
    assert "token_file" in reply.json["error"]
    reply = call(readonly, "POST", "/api/v1/runs", {"plan": "p.yaml"}, token="anything")
    assert reply.status == 403
    assert control.calls == []


def test_commands_need_the_right_token(server: ApiServer, control: FakeControl) -> None:
    reply = call(server, "POST", "/api/v1/cameras/main/pause")
    assert reply.status == 401
    assert "missing" in reply.json["error"]
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert call(server, "POST", "/api/v1/cameras/main/pause", token="wrong").status == 401
    assert call(server, "POST", "/api/v1/cameras/main/pause", token=TOKEN[:-1]).status == 401
    assert call(server, "POST", "/api/v1/cameras/main/pause",
                headers={"Authorization": f"Basic {TOKEN}"}).status == 401
    assert control.calls == []
    reply = call(server, "POST", "/api/v1/cameras/main/pause", token=TOKEN)
    assert (reply.status, reply.json) == (200, {"ok": True, "message": "pause ok"})
    assert control.calls == [("pause", {"camera": "main"})]


def test_non_loopback_bind_without_token_is_refused(control: FakeControl) -> None:
    for host in ("0.0.0.0", "", "192.168.1.10", "::"):
        with pytest.raises(ValueError, match=r"refusing to listen on .* without a token"):
            ApiServer(control, host=host, port=0)


def test_non_loopback_bind_needs_the_token_for_status(control: FakeControl) -> None:
    srv = ApiServer(control, host="0.0.0.0", port=0, token=TOKEN)
    srv.start()
    try:
        assert call(srv, "GET", "/api/v1/status").status == 401
        assert call(srv, "GET", "/api/v1/status", token="nope").status == 401
        reply = call(srv, "GET", "/api/v1/status", token=TOKEN,
                     headers={"Host": "observatory.lan:8765"})
        assert reply.status == 200
        assert reply.json["daemon"]["version"] == "0.1.0"
    finally:
        srv.stop()


def test_bad_tokens_and_ports_are_refused(control: FakeControl) -> None:
    with pytest.raises(ValueError, match="empty"):
        ApiServer(control, token="")
    with pytest.raises(ValueError, match="printable"):
        ApiServer(control, token="two words")
    with pytest.raises(ValueError, match="port"):
        ApiServer(control, port=70000)


def test_read_token_file(tmp_path: Any) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    assert read_token_file(path) == TOKEN
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_token_file(path)
    with pytest.raises(OSError):
        read_token_file(tmp_path / "missing")


# -- commands ----------------------------------------------------------------------------------

def test_start_a_plan_or_a_schedule(server: ApiServer, control: FakeControl) -> None:
    reply = call(server, "POST", "/api/v1/runs", {"camera": "main", "plan": "darks.yaml"},
                 token=TOKEN)
    assert (reply.status, reply.json) == (202, {"ok": True, "message": "start ok"})
    reply = call(server, "POST", "/api/v1/runs", {"schedule": "morning-darks"}, token=TOKEN)
    assert reply.status == 202
    assert control.calls == [
        ("start", {"camera": "main", "plan": "darks.yaml", "schedule": None}),
        ("start", {"camera": None, "plan": None, "schedule": "morning-darks"}),
    ]


@pytest.mark.parametrize("body", [
    {},
    {"camera": "main"},
    {"plan": "a.yaml", "schedule": "s"},
    {"plan": "a.yaml", "when": "now"},
    {"plan": 3},
    {"plan": ""},
    ["plan", "a.yaml"],
])
def test_start_rejects_bad_bodies(server: ApiServer, control: FakeControl, body: Any) -> None:
    reply = call(server, "POST", "/api/v1/runs", body, token=TOKEN)
    assert reply.status == 400
    assert reply.json["error"]
    assert control.calls == []


def test_pause_resume_stop(server: ApiServer, control: FakeControl) -> None:
    for action in ("pause", "resume", "stop"):
        assert call(server, "POST", f"/api/v1/cameras/main/{action}", token=TOKEN).status == 200
    assert call(server, "POST", "/api/v1/cameras/my%20cam/stop", token=TOKEN).status == 200
    assert control.calls == [("pause", {"camera": "main"}), ("resume", {"camera": "main"}),
                             ("stop", {"camera": "main"}), ("stop", {"camera": "my cam"})]


def test_control_errors_keep_their_status(server: ApiServer, control: FakeControl) -> None:
    control.fail = ControlError("no camera named 'nope'", 404)
    reply = call(server, "POST", "/api/v1/cameras/nope/pause", token=TOKEN)
    assert (reply.status, reply.json) == (404, {"error": "no camera named 'nope'"})
    control.fail = ControlError("plan missing")
    assert call(server, "POST", "/api/v1/runs", {"plan": "x"}, token=TOKEN).status == 400
    control.fail = ControlError("odd", 200)  # not an error status: answered as 400
    assert call(server, "POST", "/api/v1/cameras/a/stop", token=TOKEN).status == 400


# -- what is not served ------------------------------------------------------------------------

def test_request_bodies_are_bounded_and_typed(server: ApiServer, control: FakeControl) -> None:
    big = b"{" + b" " * MAX_BODY_BYTES + b"}"
    reply = call(server, "POST", "/api/v1/runs", raw=big, token=TOKEN,
                 headers={"Content-Type": "application/json"})
    assert reply.status == 413
    reply = call(server, "POST", "/api/v1/runs", raw=b"plan=a.yaml", token=TOKEN,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 415
    reply = call(server, "POST", "/api/v1/runs", raw=b"{not json", token=TOKEN,
                 headers={"Content-Type": "application/json"})
    assert reply.status == 400
    assert "invalid JSON" in reply.json["error"]
    reply = call(server, "POST", "/api/v1/runs", raw=b"\xff\xfe", token=TOKEN,
                 headers={"Content-Type": "application/json"})
    assert reply.status == 400
    assert control.calls == []


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/index.php", 404),
    ("GET", "/static/../api.py", 404),
    ("GET", "/static/nope.js", 404),
    ("GET", "/etc/passwd", 404),
    ("GET", "/api/v1/../../etc/passwd", 404),
    ("GET", "/api/v1/runs", 405),
    ("GET", "/api/v1/cameras/main/pause", 405),
    ("PUT", "/api/v1/status", 405),
    ("DELETE", "/api/v1/runs", 405),
    ("POST", "/api/v1/status", 405),
    ("POST", "/api/v1/cameras/main/explode", 404),
    ("OPTIONS", "/api/v1/status", 501),
])
def test_nothing_else_is_served(server: ApiServer, method: str, path: str, status: int) -> None:
    reply = call(server, method, path, token=TOKEN)
    assert reply.status == status
    assert "error" in reply.json


def test_malformed_requests_get_json_errors(server: ApiServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400")
    assert b"application/json" in head
    assert "error" in json.loads(body)


def test_access_log_is_debug(readonly: ApiServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="calibd.capture.daemon.api"):
        call(readonly, "GET", "/api/v1/status")
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not any(
                "/api/v1/status" in r.getMessage() for r in caplog.records):
            time.sleep(0.01)
    access = [r for r in caplog.records if "GET /api/v1/status" in r.getMessage()]
    assert access
    assert all(r.levelno == logging.DEBUG for r in access)


def test_too_many_concurrent_requests_get_503(control: FakeControl,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_module, "MAX_CONCURRENT", 1)
    srv = ApiServer(control, port=0)
    srv.start()
    control.block = threading.Event()
    first: list[Reply] = []
    worker = threading.Thread(target=lambda: first.append(call(srv, "GET", "/api/v1/status")))
    try:
        worker.start()
        time.sleep(0.3)  # the first request now holds the only slot
        reply = call(srv, "GET", "/api/v1/status")
        assert reply.status == 503
        assert reply.json == {"error": "server too busy"}
    finally:
        control.block.set()
        worker.join(5)
        srv.stop()
    assert first[0].status == 200


# -- life cycle --------------------------------------------------------------------------------

def test_stop_is_quick_and_closes_the_port(control: FakeControl) -> None:
    srv = ApiServer(control, port=0)
    srv.start()
    assert srv.running
    port = srv.port
    assert srv.url == f"http://127.0.0.1:{port}"
    with pytest.raises(RuntimeError):
        srv.start()
    began = time.monotonic()
    srv.stop()
    assert time.monotonic() - began < 1.0
    assert not srv.running
    srv.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_ipv6_loopback(control: FakeControl) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    srv = ApiServer(control, host="::1", port=0)
    try:
        srv.start()
    except OSError as err:
        pytest.skip(f"cannot bind ::1: {err}")
    try:
        assert srv.url.startswith("http://[::1]:")
        assert call(srv, "GET", "/api/v1/status", host="::1").status == 200
    finally:
        srv.stop()


def test_port_in_use_raises_oserror(readonly: ApiServer, control: FakeControl) -> None:
    other = ApiServer(control, port=readonly.port)
    with pytest.raises(OSError):
        other.start()
