"""The sd_notify protocol: datagrams arrive on a real AF_UNIX/SOCK_DGRAM socket bound by the
test (a file system path and an abstract name), the watchdog interval, and never raising."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from calibd.capture.daemon.notify import MAX_STATUS_CHARS
from calibd.capture.daemon.notify import Notifier
from calibd.capture.daemon.notify import watchdog_interval_s


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2.0)
    return sock


def _recv(sock: socket.socket) -> list[str]:
    return sock.recv(65536).decode("utf-8").split("\n")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="calibd-n-"))
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


@pytest.fixture
def path_socket(short_dir: Path) -> Iterator[tuple[str, socket.socket]]:
    address = str(short_dir / "notify")
    sock = _receiver(address)
    yield address, sock
    sock.close()


def test_messages_arrive_on_a_path_socket(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    notifier = Notifier(address)
    assert notifier.enabled
    assert notifier.ready("idle, 1 camera")
    assert _recv(sock) == ["READY=1", "STATUS=idle, 1 camera"]
    assert notifier.status("main dark-library 12/1840")
    assert _recv(sock) == ["STATUS=main dark-library 12/1840"]
    assert notifier.watchdog()
    assert _recv(sock) == ["WATCHDOG=1"]
    assert notifier.stopping("stopping: aborting the exposure")
    assert _recv(sock) == ["STOPPING=1", "STATUS=stopping: aborting the exposure"]
    assert notifier.extend_timeout(30)
    assert _recv(sock) == ["EXTEND_TIMEOUT_USEC=30000000"]
    assert notifier.watchdog_trigger()
    assert _recv(sock) == ["WATCHDOG=trigger"]
    notifier.close()
    assert not notifier.enabled
    assert not notifier.watchdog()


def test_messages_arrive_on_an_abstract_socket() -> None:
    name = f"calibd-test-{uuid.uuid4().hex}"
    sock = _receiver(b"\0" + name.encode())
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert _recv(sock) == ["READY=1"]
        assert notifier.status("hello")
        assert _recv(sock) == ["STATUS=hello"]
    finally:
        sock.close()


def test_reloading_carries_the_monotonic_time(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier(address).reloading("reloading the configuration")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = _recv(sock)
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=")
    assert before <= int(lines[1].split("=", 1)[1]) <= after
    assert lines[2] == "STATUS=reloading the configuration"


def test_status_is_one_bounded_line(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    notifier = Notifier(address)
    notifier.status("two\nlines\n  and   spaces")
    assert _recv(sock) == ["STATUS=two lines and spaces"]
    notifier.status("x" * 5000)
    (line,) = _recv(sock)
    assert len(line) == len("STATUS=") + MAX_STATUS_CHARS
    assert line.endswith("…")


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier.from_environment()
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    notifier.close()


def test_unsupported_address_disables_notifications() -> None:
    assert not Notifier("vsock:2:1234").enabled
    assert not Notifier("relative/path").watchdog()


def test_from_environment_can_unset_the_variables(monkeypatch: pytest.MonkeyPatch,
                                                  path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 30.0
    notifier = Notifier.from_environment(unset=True)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        assert name not in os.environ
    assert notifier.watchdog()
    assert _recv(sock) == ["WATCHDOG=1"]


def test_a_vanished_socket_never_raises_and_is_logged_once(
        short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    address = str(short_dir / "gone")
    sock = _receiver(address)
    notifier = Notifier(address)
    assert notifier.watchdog()
    sock.close()
    os.unlink(address)
    caplog.set_level(logging.DEBUG, logger="calibd.capture.daemon.notify")
    assert not notifier.watchdog()
    assert not notifier.status("still failing")
    assert not notifier.ready()
    failures = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.DEBUG
    # systemd comes back (same path): messages flow again
    sock = _receiver(address)
    try:
        assert notifier.watchdog()
        assert _recv(sock) == ["WATCHDOG=1"]
    finally:
        sock.close()


def test_concurrent_senders_do_not_mix_datagrams(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    notifier = Notifier(address)
    threads, per_thread = 8, 50
    received: list[str] = []

    def drain() -> None:
        while len(received) < threads * per_thread:
            try:
                received.append(sock.recv(65536).decode())
            except TimeoutError:
                return

    reader = threading.Thread(target=drain)
    reader.start()

    def send(n: int) -> None:
        for i in range(per_thread):
            while not notifier.status(f"thread {n} message {i}"):
                time.sleep(0.001)  # receive queue full (EAGAIN): try again

    senders = [threading.Thread(target=send, args=(n,)) for n in range(threads)]
    for t in senders:
        t.start()
    for t in senders:
        t.join(10)
    reader.join(10)
    assert sorted(received) == sorted(f"STATUS=thread {n} message {i}"
                                      for n in range(threads) for i in range(per_thread))


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "60000000"}, 30.0),
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "4242"}, 0.5),
    ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "me"}, None),
])
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval_s(env, pid=4242) == expected


def test_watchdog_pid_defaults_to_this_process() -> None:
    env = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval_s(env) == 10.0
