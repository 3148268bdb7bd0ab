"""``calibd status`` and ``calibd control``: handlers called directly (the lead hooks
``register`` into the main parser), against the real ApiServer over a recording test double of
the daemon core, and against ports where no daemon answers."""

from __future__ import annotations

import argparse
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calibd.capture.cli import cmd_status
from calibd.capture.daemon.api import ApiServer
from calibd.capture.errors import InputError

TOKEN = "cli-token-0123456789abcdef"

STATUS: dict[str, Any] = {
    "daemon": {"version": "0.1.0", "pid": 4242, "started_utc": "2026-11-25T01:00:00+00:00",
               "now_utc": "2026-11-25T03:30:00+00:00", "healthy": True, "safe": False},
    "cameras": {
        "main": {
            "state": "running", "plan": "/etc/calibd/plans/dark-library.yaml",
            "source": "schedule:cloudy-darks",
            "run": {"plan": "dark-library", "camera": "main", "run_id": 3, "phase": "exposing",
                    "message": "", "frames_done": 412, "frames_total": 1840,
                    "cell": "dark g100 o50 bin1 -10C 300s", "cell_done": 7, "cell_total": 20,
                    "temperature_c": -10.04, "setpoint_c": -10.0, "power_pct": 44.6,
                    "eta_s": 7500.0},
            "queue": [{"plan": "/etc/calibd/plans/bias.yaml", "source": "api"}],
            "last": {},
        },
        "guide": {"state": "paused", "plan": None, "run": None, "queue": [],
                  "last": {"plan": "bias.yaml", "message": "camera vanished", "ok": False}},
    },
    "schedules": [
        {"name": "morning-darks", "trigger": "cron", "camera": "main",
         "plan": "/etc/calibd/plans/dark-library.yaml", "enabled": True,
         "next_run_utc": "2026-11-25T08:00:00+00:00"},
        {"name": "bias", "trigger": "on_demand", "camera": "main", "plan": "bias.yaml",
         "enabled": True, "next_run_utc": None},
    ],
    "library": {"root": "/srv/calibd/library", "frames": 12345, "bytes": 3 * 1024**3,
                "runs": [{"id": 1, "state": "complete", "planned": 80, "done": 80},
                         {"id": 3, "state": "running", "planned": 1840, "done": 412}]},
}


class Control:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def status(self) -> dict[str, Any]:
        return STATUS

    def start(self, *, camera: str | None, plan: str | None, schedule: str | None) -> str:
        self.calls.append(("start", (camera, plan, schedule)))
        return f"queued {plan or schedule}"

    def pause(self, camera: str) -> str:
        self.calls.append(("pause", camera))
        return f"{camera} paused"

    def resume(self, camera: str) -> str:
        self.calls.append(("resume", camera))
        return f"{camera} resumed"

    def stop(self, camera: str) -> str:
        self.calls.append(("stop", camera))
        return f"{camera} stopped"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="calibd")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd_status.register(sub)
    return parser.parse_args(argv)


def run(*argv: str) -> int:
    args = parse(*argv)
    code: int = args.handler(args)
    return code


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cmd_status.TOKEN_ENV, raising=False)
    monkeypatch.delenv(cmd_status.URL_ENV, raising=False)
    # a proxy in the environment must not see the daemon's traffic (or its token)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")


@pytest.fixture
def control() -> Control:
    return Control()


@pytest.fixture
def daemon(control: Control) -> Iterator[ApiServer]:
    srv = ApiServer(control, port=0, token=TOKEN)
    srv.start()
    yield srv
    srv.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_status_prints_a_summary(daemon: ApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("status", "--url", daemon.url) == 0
    out = capsys.readouterr().out
    assert f"calibd 0.1.0 at {daemon.url} (pid 4242, up 2 h 30 min, weather unsafe)" in out
    main = next(line for line in out.splitlines() if line.startswith("main "))
    for part in ("running", "dark-library", " 3 ", "dark g100 o50 bin1 -10C 300s (7/20)",
                 "412/1840", "-10.0 °C (→ -10) 45 %", "2 h 05 min (05:35 UTC)"):
        assert part in main, part
    guide = next(line for line in out.splitlines() if line.startswith("guide "))
    assert "paused" in guide
    assert "main: 1 queued run(s)" in out
    assert "guide: last run: camera vanished" in out
    assert "morning-darks" in out and "2026-11-25 08:00 UTC" in out
    assert "library /srv/calibd/library: 12,345 frames, 3.0 GB, 1/2 runs complete, " \
           "492/1,920 planned frames" in out


def test_status_json(daemon: ApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("status", "--url", daemon.url + "/", "--json") == 0
    assert json.loads(capsys.readouterr().out) == STATUS


def test_status_url_from_the_environment(daemon: ApiServer, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(cmd_status.URL_ENV, daemon.url)
    assert run("status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["daemon"]["pid"] == 4242


def test_format_status_tolerates_missing_parts() -> None:
    text = cmd_status.format_status({"cameras": {"c": {"state": "idle"}}})
    assert "calibd ? at" in text
    assert any(line.split()[:2] == ["c", "idle"] for line in text.splitlines() if line)
    assert cmd_status.format_status({}).endswith("no cameras")


def test_unreachable_daemon_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert run("status", "--url", f"http://127.0.0.1:{port}") == 1
    err = capsys.readouterr().err
    assert f"calibd daemon not reachable at http://127.0.0.1:{port}: connection refused" in err


def test_silent_daemon_times_out(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection, never answers
        port = listener.getsockname()[1]
        assert run("status", "--url", f"http://127.0.0.1:{port}", "--timeout", "0.3") == 1
    assert "did not answer within 0.3 s" in capsys.readouterr().err


def test_something_else_on_the_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>hi</html>")

        thread = threading.Thread(target=answer)
        thread.start()
        assert run("status", "--url", f"http://127.0.0.1:{port}") == 1
        thread.join(5)
    assert "did not answer with JSON" in capsys.readouterr().err


def test_bad_url_is_bad_input() -> None:
    with pytest.raises(InputError, match="--url"):
        run("status", "--url", "ftp://127.0.0.1:8765")
    with pytest.raises(InputError, match="--url"):
        run("status", "--url", "127.0.0.1:8765")


def test_control_commands_need_the_token(daemon: ApiServer, control: Control,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run("control", "pause", "main", "--url", daemon.url) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "--token-file" in err
    assert run("control", "pause", "main", "--url", daemon.url, "--token", "wrong") == 1
    assert "wrong API token" in capsys.readouterr().err
    assert control.calls == []


def test_control_commands(daemon: ApiServer, control: Control, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    url = ["--url", daemon.url]
    assert run("control", "start", "--plan", "/etc/calibd/plans/bias.yaml", "--camera", "main",
               *url, "--token-file", str(token_file)) == 0
    assert capsys.readouterr().out.strip() == "queued /etc/calibd/plans/bias.yaml"
    assert run("control", "start", "--schedule", "morning-darks", *url, "--token", TOKEN) == 0
    monkeypatch.setenv(cmd_status.TOKEN_ENV, TOKEN)
    assert run("control", "pause", "main", *url) == 0
    assert run("control", "resume", "main", *url) == 0
    assert run("control", "stop", "my cam", *url) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "my cam stopped"
    assert control.calls == [("start", ("main", "/etc/calibd/plans/bias.yaml", None)),
                             ("start", (None, None, "morning-darks")),
                             ("pause", "main"), ("resume", "main"), ("stop", "my cam")]


def test_control_start_needs_plan_or_schedule() -> None:
    with pytest.raises(SystemExit):
        parse("control", "start", "--camera", "main")
    with pytest.raises(SystemExit):
        parse("control", "start", "--plan", "a.yaml", "--schedule", "s")


def test_unreadable_token_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the token file"):
        run("control", "stop", "main", "--token-file", str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(InputError, match="empty"):
        run("control", "stop", "main", "--token-file", str(empty))


def test_control_error_messages_reach_the_user(daemon: ApiServer, control: Control,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from calibd.capture.daemon.control import ControlError

    def refuse(camera: str) -> str:
        raise ControlError(f"no camera named {camera!r}", 404)

    control.pause = refuse  # type: ignore[method-assign]
    assert run("control", "pause", "nope", "--url", daemon.url, "--token", TOKEN) == 1
    assert "(HTTP 404): no camera named 'nope'" in capsys.readouterr().err


class HostileServer:
    """A socket that answers every connection with ``reply`` (bytes, or a callable that writes
    to the connection itself): what a compromised or foreign program on the port could send."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                try:
                    if callable(self.reply):
                        self.reply(conn, self.stop)
                    else:
                        conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def _json_reply(body: bytes, status: str = "200 OK") -> bytes:
    return (f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _drip(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{")
    while not stop.wait(0.2):  # one byte well within the socket timeout, for ever
        conn.sendall(b" ")


def _flood(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[")
    chunk = b"1," * 65536
    while not stop.is_set():
        conn.sendall(chunk)


ESC = "\x1b[31m\x07"
HOSTILE: list[tuple[str, Any, str]] = [
    ("drip", _drip, "did not answer within 1 s"),
    ("flood", _flood, "larger than 4,194,304 bytes"),
    ("deep", _json_reply(b"[" * 200000 + b"]" * 200000), "did not answer with JSON"),
    ("escape in the error", _json_reply(json.dumps({"error": ESC + "bad"}).encode(),
                                         "409 Conflict"), "(HTTP 409): \\x1b[31m\\x07bad"),
    ("escape in the reason", _json_reply(b"x", f"500 {ESC}EVIL"), "(HTTP 500): \\x1b"),
    ("escape in the status line", ESC.encode() + b"GARBAGE\r\n\r\n", "not reachable"),
    ("infinite eta", _json_reply(json.dumps({**STATUS, "cameras": {"main": {
        **STATUS["cameras"]["main"], "run": {**STATUS["cameras"]["main"]["run"],
                                             "eta_s": 1e999}}}}).replace(
        "Infinity", "1e999").encode()), "dark g100"),
    ("escape in the status", _json_reply(json.dumps({**STATUS, "library": {
        **STATUS["library"], "root": f"/srv/{ESC}lib"}}).encode()), "/srv/\\x1b[31m\\x07lib"),
    ("garbage types", _json_reply(json.dumps({**STATUS, "library": {
        "runs": [{"planned": "many", "done": None}]}}).encode()), "not a calibd status"),
]


@pytest.mark.parametrize(("name", "reply", "says"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_server_gets_a_bounded_answer_and_nothing_raw(
        capsys: pytest.CaptureFixture[str], name: str, reply: Any, says: str) -> None:
    server = HostileServer(reply)
    try:
        code = run("status", "--url", server.url, "--timeout", "1")
    finally:
        server.close()
    out = capsys.readouterr()
    assert "\x1b" not in out.out + out.err and "\x07" not in out.out + out.err
    assert says in out.out + out.err, (out.out, out.err)
    assert code == (0 if name in ("infinite eta", "escape in the status") else 1)


@pytest.mark.parametrize("kind", ["fifo", "device", "binary", "huge"])
def test_a_token_file_that_is_not_a_small_text_file_is_bad_input(tmp_path: Path,
                                                                  kind: str) -> None:
    import os

    path = tmp_path / "token"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe" + b"t" * 20)
    else:
        path.write_bytes(b"t" * 100_000)
    with pytest.raises(InputError, match="cannot read the token file"):
        run("control", "stop", "main", "--token-file", str(path))
