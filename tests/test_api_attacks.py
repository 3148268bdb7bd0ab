"""Attacks on the API of a real daemon process (one daemon shared by the module): plan paths
that lead outside the plans folder, FIFOs, device and /proc files, oversized and malformed
requests, control characters, slow clients, and file descriptors over many pause/resume calls.
Each answer must be the status the README documents, quick, and without foreign content."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from calibd.capture.daemon.api import MAX_BODY_BYTES
from calibd.capture.daemon.api import REQUEST_DEADLINE_S
from tests.support import DAEMON_T0 as T0
from tests.support import DAEMON_TOKEN as TOKEN
from tests.support import QUICK_BIAS
from tests.support import REPO
from tests.support import Env
from tests.support import daemon_env
from tests.support import library_runs
from tests.support import ready
from tests.support import wait_for

SECRET = "root:$6$Zz9sEcReT$" + "Hq7" * 28 + ":19000:0:99999:7:::"  # as long as a real one


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("attacks")
    with daemon_env(root) as env:
        plans = root / "plans"
        plans.mkdir()
        (plans / "bias.yaml").write_text(QUICK_BIAS, encoding="utf-8")
        (root / "shadow").write_text(SECRET + "\n", encoding="utf-8")
        (plans / "link-out.yaml").symlink_to(root / "shadow")
        (plans / "zero.yaml").symlink_to("/dev/zero")
        (plans / "environ.yaml").symlink_to("/proc/self/environ")
        os.mkfifo(plans / "fifo.yaml")
        (plans / "sub").mkdir()
        (plans / "big.yaml").write_text("# " + "x" * (2 * 1024 * 1024) + "\n" + QUICK_BIAS)
        (plans / "shadow-copy.yaml").write_text(SECRET + "\n" + SECRET + "\n")
        (plans / "odd-key.yaml").write_text(QUICK_BIAS + "y" * 500 + ": 1\n")
        # Clouds over the whole test, but no schedule runs while unsafe: the monitor is still
        # asked (status shows the weather) and the log says what it said, not a guess.
        env.write_config(cloudy=[(T0 - timedelta(hours=1), T0 + timedelta(days=2))])
        text = env.config.read_text(encoding="utf-8")
        env.config.write_text(text.replace(f"plans_dir: {root}", f"plans_dir: {plans}"),
                              encoding="utf-8")
        assert f"plans_dir: {plans}" in env.config.read_text(encoding="utf-8")
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        yield env
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log = env.log()
        assert "\x1b" not in log and "\x00" not in log
        assert SECRET not in log
        assert "Traceback" not in log


def port(env: Env) -> int:
    return int((env.state / "api.port").read_text())


def raw(env: Env, data: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """Send ``data`` as is; the status code and body of the answer (0 when closed without)."""
    with socket.create_connection(("127.0.0.1", port(env)), timeout=timeout_s) as sock:
        with_suppressed_reset(lambda: sock.sendall(data))
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
    match = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    return (int(match.group(1)) if match else 0), reply.partition(b"\r\n\r\n")[2]


def with_suppressed_reset(send: Any) -> None:
    # The server may answer and close before reading everything: fine.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        send()


def post(env: Env, path: str, body: bytes, headers: dict[str, str] | None = None,
         token: str | None = TOKEN) -> tuple[int, bytes]:
    hdrs = {"Host": "127.0.0.1", "Content-Type": "application/json",
            "Content-Length": str(len(body)), **(headers or {})}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    head = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    return raw(env, f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body)


def start_plan(env: Env, plan: str) -> tuple[int, str]:
    began = time.monotonic()
    code, body = post(env, "/api/v1/runs", json.dumps({"plan": plan}).encode())
    assert time.monotonic() - began < 2.0, "a plan request must not block"
    return code, body.decode("utf-8", "replace")


# (plan name sent, documented status, a word the error contains)
PLAN_ATTACKS = [
    ("/etc/shadow", 400, "not a plan name"),
    ("/etc/passwd", 400, "not a plan name"),
    ("../shadow", 400, "not a plan name"),
    ("sub/../../shadow", 400, "not a plan name"),
    ("~root/.ssh/id_rsa", 400, "not a plan name"),
    ("/proc/self/environ", 400, "not a plan name"),
    ("/dev/zero", 400, "not a plan name"),
    ("link-out.yaml", 403, "outside the plans folder"),
    ("zero.yaml", 403, "outside the plans folder"),
    ("environ.yaml", 403, "outside the plans folder"),
    ("fifo.yaml", 403, "not a regular file"),
    ("sub", 403, "not a regular file"),
    ("nope.yaml", 404, "no plan"),
    ("big.yaml", 400, "larger than"),
    ("shadow-copy.yaml", 400, "the plan is invalid"),
    ("odd-key.yaml", 400, "unknown key"),
    ("a\x1b[2Jb.yaml", 400, "printable"),
    ("x" * 5000, 400, "at most"),
]


@pytest.mark.parametrize(("plan", "status", "says"), PLAN_ATTACKS,
                         ids=[f"plan-{i}" for i in range(len(PLAN_ATTACKS))])
def test_plan_paths_are_confined_to_the_plans_folder(env: Env, plan: str, status: int,
                                                     says: str) -> None:
    code, body = start_plan(env, plan)
    assert code == status, body
    error = json.loads(body)["error"]
    assert says in error
    assert SECRET not in error  # a file in the plans folder: located, truncated
    if plan != "shadow-copy.yaml":  # anything else: not a byte of the file
        assert "19000" not in error and "root:" not in error
    assert "\x1b" not in error
    assert len(error) < 1000


def test_a_plan_in_the_plans_folder_runs(env: Env) -> None:
    code, body = start_plan(env, "bias.yaml")
    assert code == 202, body
    wait_for(lambda: (env.library / "calibd.sqlite").exists() and
             any(r["state"] == "complete" for r in library_runs(env.library)), 60, "the run")


# (request bytes, documented status)
REQUEST_ATTACKS = [
    (b"POST /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
     TOKEN.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
     + b"{" * 1000, 413),
    (b"POST /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
     TOKEN.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: 99999999999999"
     b"9999\r\n\r\n", 413),
    (b"POST /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
     TOKEN.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
     TOKEN.encode() + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n5\r\n{}\r\n0\r\n\r\n", 411),
    (b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 +
     b"\r\n\r\n", 431),
    (b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
     b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n", 431),
    (b"GET /api/v1/../../etc/passwd HTTP/1.0\r\n\r\n", 404),
    (b"GET /\x1b[2J\x1b[31mowned\x07 HTTP/1.0\r\n\r\n", 404),
    (b"\x1b[2J\x00GARBAGE\r\n\r\n", 400),
    (b"BREW /api/v1/status HTTP/1.0\r\n\r\n", 501),
    (b"POST /api/v1/\x1b[31mruns HTTP/1.0\r\nContent-Length: 0\r\n\r\n", 401),
    (b"GET /api/v1/status HTTP/1.1\r\nHost: evil.example\x1b[2J\r\n\r\n", 421),
]


@pytest.mark.parametrize(("data", "status"), REQUEST_ATTACKS,
                         ids=[f"request-{i}" for i in range(len(REQUEST_ATTACKS))])
def test_malformed_and_oversized_requests(env: Env, data: bytes, status: int) -> None:
    code, body = raw(env, data)
    assert code == status, body[:200]
    assert "error" in json.loads(body)
    assert b"\x1b" not in body


# (body, content type, documented status)
BODY_ATTACKS = [
    (b"{not json", "application/json", 400),
    (b"\xff\xfe\x00", "application/json", 400),
    (b"[" * 5000 + b"]" * 5000, "application/json", 400),
    (b'["plan", "bias.yaml"]', "application/json", 400),
    (b'{"plan": {"$ne": 1}}', "application/json", 400),
    (b'{"plan": "bias.yaml", "exec": "rm -rf /"}', "application/json", 400),
    (b"plan=bias.yaml", "application/x-www-form-urlencoded", 415),
    (b'{"plan": "bias.yaml"}', "text/plain", 415),
    (b"{" + b" " * MAX_BODY_BYTES + b"}", "application/json", 413),
]


@pytest.mark.parametrize(("body", "ctype", "status"), BODY_ATTACKS,
                         ids=[f"body-{i}" for i in range(len(BODY_ATTACKS))])
def test_bad_bodies(env: Env, body: bytes, ctype: str, status: int) -> None:
    code, reply = post(env, "/api/v1/runs", body, headers={"Content-Type": ctype})
    assert code == status, reply[:200]
    assert "error" in json.loads(reply)


def test_control_characters_are_escaped_in_the_log(env: Env) -> None:
    post(env, "/api/v1/cameras/\x1b[2Jsim/pause", b"", token="wrong\x1b[31m")
    raw(env, b"POST /api/v1/\x1b]0;pwned\x07runs HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    wait_for(lambda: "\\x1b" in env.log(), 10, "the refused request in the log")
    assert "\x1b" not in env.log()


def _status_ms(env: Env) -> tuple[int, float]:
    began = time.monotonic()
    code, _ = raw(env, b"GET /api/v1/status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", 5.0)
    return code, (time.monotonic() - began) * 1000


def test_slow_clients_cannot_starve_status(env: Env) -> None:
    """40 connections (more than the per-client cap) each send their request one byte per
    second; status must answer quickly all along, and each slow one is dropped at the
    whole-request deadline instead of holding a request slot."""
    assert _status_ms(env)[0] == 200  # warm
    pings = env.notify.lines().count("WATCHDOG=1")
    request = b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    slow = [socket.create_connection(("127.0.0.1", port(env)), timeout=10) for _ in range(40)]
    timings: list[float] = []
    try:
        began = time.monotonic()
        for i in range(int(REQUEST_DEADLINE_S) + 2):
            for sock in slow:
                with_suppressed_reset(lambda s=sock, b=request[i:i + 1]: s.send(b))
            for _ in range(3):
                code, ms = _status_ms(env)
                assert code == 200
                timings.append(ms)
            time.sleep(max(0.0, began + i + 1 - time.monotonic()))
        for sock in slow:  # past the deadline: each got 408 or was dropped
            sock.settimeout(2)
            try:
                reply = sock.recv(4096)
            except (ConnectionResetError, TimeoutError):
                reply = b""
            assert reply == b"" or reply.startswith(b"HTTP/1.0 408"), reply[:40]
    finally:
        for sock in slow:
            sock.close()
    assert statistics.median(timings) < 100, timings
    assert env.notify.lines().count("WATCHDOG=1") >= pings + 3  # the service stayed healthy
    assert max(timings) < 1000, timings


def test_pause_resume_does_not_leak_file_descriptors(env: Env) -> None:
    pid = env.procs[0].pid

    def fds() -> int:
        return len(os.listdir(f"/proc/{pid}/fd"))

    for action in ("pause", "resume"):  # warm: connections and caches that stay open
        assert env.api("POST", f"/api/v1/cameras/sim/{action}")[0] == 200
    before = fds()
    for _ in range(150):
        assert env.api("POST", "/api/v1/cameras/sim/pause")[0] == 200
        assert env.api("POST", "/api/v1/cameras/sim/resume")[0] == 200
    time.sleep(0.5)
    assert fds() <= before + 2, (before, fds())


def test_status_shows_the_weather_without_an_unsafe_schedule(env: Env) -> None:
    wait_for(lambda: env.api("GET", "/api/v1/status", token=None)[1]["daemon"]["safe"]
             is not None, 20, "the first weather poll")
    daemon = env.api("GET", "/api/v1/status", token=None)[1]["daemon"]
    assert daemon["safe"] is False
    assert "cloud cover 90 %" in daemon["weather"]
    line = next(x for x in env.log().splitlines() if "weather: " in x)
    assert "unsafe" in line and "cloud cover 90 %" in line
    assert "cloudy" not in line  # the monitor says unsafe; rain and wind are unsafe too


def test_status_into_a_closed_pipe_is_not_an_error(env: Env) -> None:
    """`calibd status | head -0`: the reader is gone before calibd prints."""
    proc = subprocess.Popen([sys.executable, "-m", "calibd", "status", "--url",
                             f"http://127.0.0.1:{port(env)}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(30) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
