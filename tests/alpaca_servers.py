"""Test helpers for the Alpaca driver: the third-party ``alpaca-simulators`` server, and a tiny
HTTP proxy that can stall requests.

* :class:`AlpacaSimServer` writes a configuration (two cameras, filter wheel, cover calibrator
  with a calibrator, safety monitor, observing conditions) and a local SQLite star catalogue, so
  light frames never query Gaia over the network; starts
  ``alpaca-simulators --host 127.0.0.1 --port N --config /abs/cfg.yaml``; waits until it answers;
  stops it (SIGTERM, then SIGKILL), kills it (SIGKILL) and restarts it on the same port. Only the
  process it started is ever signalled. Its outgoing HTTP(S) is pointed at a dead proxy, so a
  stray catalogue query fails at once instead of reaching the network.
* :class:`OurAlpacaServer` runs our own server (``simulators.alpaca_server``) as a real process on
  127.0.0.1 — through ``serve``, the ``sim serve`` handler, or ``python -m calibd sim serve
  --alpaca`` — and kills or restarts it on the same ports; :func:`call` and :func:`request` speak
  raw Alpaca HTTP to it.
* :class:`StallingProxy` forwards to an upstream server and, on demand, never answers image
  downloads (``mode = "stall-image"``) or anything (``mode = "stall-all"``).
* :func:`require_alpaca` skips (or fails, when ``CALIBD_REQUIRE`` contains ``alpaca``) when alpyca
  or alpaca-simulators is missing.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from typing import Literal
from urllib.parse import urlencode

import yaml

from tests.support import skip_or_fail

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
OUR_SCALE = 100.0  # simulated seconds per real second of the session's own server

#: Where the simulated telescope points when nothing configures it (alpaca-simulators clamps
#: RA 0 h to 0.01 h): the star catalogue is centred there.
_FIELD_RA_DEG = 0.15
_FIELD_DEC_DEG = 0.0

CAMERA_0 = {
    "name": "calibd test camera",
    "cameraxsize": 640,  # not square, so a transposed image cannot pass for a right one
    "cameraysize": 480,
    "numx": 640,
    "numy": 480,
    "pixelsizex": 3.76,
    "pixelsizey": 3.76,
    "exposuremin": 0.001,
    "exposuremax": 3600.0,
    "gain": 1,
    "gains": ["0", "100", "200", "300", "400"],
    "offset": 1,
    "offsets": ["10", "30", "50"],
    "readoutmodes": ["Fast", "Normal"],
    "readoutmode": 0,
    "ccdtemperature": 15.0,
    "setccdtemperature": 15.0,
    "cooleron": False,
    "cooling_time": 0.0,
    "cangetcoolerpower": True,
    "cansetccdtemperature": True,
    "canabortexposure": True,
    "canstopexposure": True,
    "hasshutter": False,
    "maxbinx": 4,
    "maxbiny": 4,
    "maxadu": 65535,
    "electronsperadu": 1.0,
    "fullwellcapacity": 50000,
}
CAMERA_1 = {
    **CAMERA_0,
    "name": "calibd second camera",
    "cameraxsize": 320,
    "cameraysize": 240,
    "numx": 320,
    "numy": 240,
}


def simulators_executable() -> str | None:
    """The ``alpaca-simulators`` command next to this interpreter, else on PATH."""
    local = Path(sys.executable).with_name("alpaca-simulators")
    if local.exists():
        return str(local)
    return shutil.which("alpaca-simulators")


def require_alpaca(*, server: bool = True) -> None:
    """Skip the calling test (or fail it under ``CALIBD_REQUIRE=...alpaca...``) when alpyca, or
    with ``server`` the alpaca-simulators command, is missing."""
    missing = []
    if importlib.util.find_spec("alpaca") is None:
        missing.append("alpyca (pip install 'calibd[alpaca]')")
    if server and simulators_executable() is None:
        missing.append("alpaca-simulators (pip install alpaca-simulators)")
    if not missing:
        return
    skip_or_fail("alpaca", "Alpaca interop needs " + " and ".join(missing))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_star_catalogue(path: Path, count: int = 40) -> Path:
    """A SQLite catalogue in the schema cabaret (alpaca-simulators' image generator) reads
    through ``tap_source``: table ``gaia_sources`` with ``ra``, ``dec`` (degrees), ``pmra``,
    ``pmdec`` (mas/yr) and ``phot_g_mean_mag``."""
    path.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute(
            "CREATE TABLE gaia_sources (ra REAL, dec REAL, pmra REAL, pmdec REAL,"
            " phot_g_mean_mag REAL)"
        )
        rows = [
            (
                _FIELD_RA_DEG + 0.01 * ((i * 37) % 21 - 10) / 10,
                _FIELD_DEC_DEG + 0.01 * ((i * 53) % 21 - 10) / 10,
                0.0,
                0.0,
                9.0 + (i % 7),
            )
            for i in range(count)
        ]
        con.executemany("INSERT INTO gaia_sources VALUES (?, ?, ?, ?, ?)", rows)
        con.commit()
    return path


def simulator_config(catalogue: Path) -> dict[str, Any]:
    """The alpaca-simulators configuration the interop tests run against."""
    return {
        "devices": {
            "camera": {0: dict(CAMERA_0), 1: dict(CAMERA_1)},
            "filterwheel": {
                0: {"name": "calibd test wheel", "names": ["L", "R", "G", "B", "Ha"], "position": 0}
            },
            "covercalibrator": {
                0: {
                    "name": "calibd test panel",
                    "calibratorstate": 1,  # Off: without it the calibrator is "not present"
                    "coverstate": 1,
                    "brightness": 0,
                    "maxbrightness": 255,
                }
            },
            "safetymonitor": {0: {"name": "calibd test safety", "issafe": True}},
            "observingconditions": {0: {"name": "calibd test weather", "cloudcover": 0.2}},
            # Number 1: its camera renders stars where telescope 0 points, and the light-frame
            # tests want the catalogue's field, not wherever the mount suite left the mount.
            "telescope": {1: {"name": "calibd test mount", "interfaceversion": 3,
                              "atpark": True, "canpark": True, "canunpark": True,
                              "cansettracking": True, "canslewaltazasync": True,
                              "canslewasync": True, "tracking": False,
                              "sitelatitude": 52.0, "sitelongitude": 5.0,
                              "equatorialsystem": 1}},
            "dome": {0: {"name": "calibd test dome", "interfaceversion": 2, "atpark": True,
                         "canpark": True, "cansetshutter": True, "canslave": True,
                         "shutterstatus": 1, "slaved": False}},
        },
        "tap_source": str(catalogue.resolve()),
        "gaia_query_timeout": 10,
        "sunlight": False,
        "bad_tracking": False,
        "image_cache_entries": 8,
    }


class AlpacaSimServer:
    """One alpaca-simulators process on 127.0.0.1, with its own directory for config and log."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        exe = simulators_executable()
        if exe is None:
            raise RuntimeError("alpaca-simulators is not installed")
        self.executable = exe
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.catalogue = write_star_catalogue(workdir / "stars.sqlite3")
        self.config_path = (workdir / "alpaca-simulators.yaml").resolve()
        self.config_path.write_text(yaml.safe_dump(simulator_config(self.catalogue)))
        self.log_path = workdir / "alpaca-simulators.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s = 0.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start and block until ``/api/v1/camera/0/name`` answers. Raises RuntimeError (with
        the end of the server's log) when it exits or does not answer in time."""
        env = dict(os.environ)
        dead_proxy = "http://127.0.0.1:9"  # discard port: nothing listens, connections fail fast
        for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            env[key] = dead_proxy
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        env["XDG_CACHE_HOME"] = str(self.workdir / "cache")
        env["XDG_CONFIG_HOME"] = str(self.workdir / "config")
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.executable,
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                    "--config",
                    str(self.config_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
            )
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"alpaca-simulators exited ({self.proc.returncode}):\n{self.log_tail()}"
                )
            if self._answers():
                self.startup_s = time.monotonic() - started
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"alpaca-simulators did not answer in {timeout_s} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
        try:
            conn.request("GET", "/api/v1/camera/0/name")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _signal(self, sig: signal.Signals, wait_s: float) -> bool:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return True
        proc.send_signal(sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down cleanly), SIGKILL after 10 s."""
        if not self._signal(signal.SIGTERM, 10.0):
            self._signal(signal.SIGKILL, 10.0)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self._signal(signal.SIGKILL, 10.0)
        self.proc = None

    def restart(self) -> None:
        """Start again on the same port (after stop() or kill())."""
        self.start()

    def http(self, method: str, path: str, body: str | None = None) -> dict[str, Any]:
        """A raw Alpaca request (side channel for the tests, not through the driver)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5.0)
        try:
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            doc: dict[str, Any] = json.loads(data)
            return doc
        finally:
            conn.close()

    def __enter__(self) -> AlpacaSimServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_SERVE = (
    "import logging, sys; logging.basicConfig(level=logging.INFO);"
    "from simulators.alpaca_server import serve;"
    "serve('127.0.0.1', int(sys.argv[1]), scale=float(sys.argv[2]),"
    " discovery_port=int(sys.argv[3]) or None, ambient_c=float(sys.argv[4]),"
    " seed=int(sys.argv[5]))"
)
_HANDLER = (
    "import argparse, logging, sys; logging.basicConfig(level=logging.INFO);"
    "from capture.cli import cmd_sim;"
    "parser = argparse.ArgumentParser(); cmd_sim.register(parser.add_subparsers());"
    "args = parser.parse_args(); sys.exit(args.handler(args))"
)


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def request(port: int, method: str, path: str, params: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """One raw HTTP request to 127.0.0.1:``port``: (status, content type, body). GET params go
    in the query, PUT params form-encoded in the body. 10 s deadline."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        body = None
        all_headers = dict(headers or {})
        if method == "GET" and params:
            path = f"{path}?{urlencode(params)}"
        elif params is not None:
            body = urlencode(params)
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=all_headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


def call(port: int, method: str, path: str, **params: Any) -> dict[str, Any]:
    """An Alpaca call (``path`` below ``/api/v1/``) that must answer HTTP 200 with JSON."""
    status, _, body = request(port, method, f"/api/v1/{path}", params)
    assert status == 200, body
    doc: dict[str, Any] = json.loads(body)
    return doc


class OurAlpacaServer:
    """Our Alpaca server in a real process on 127.0.0.1, on a clock ``scale`` x real time.

    ``launch``: ``"serve"`` (the library function), ``"handler"`` (the ``sim serve`` argparse
    handler) or ``"calibd"`` (``python -m calibd sim serve --alpaca``). ``discovery`` answers UDP
    discovery on a port of its own. ``clock_at`` (simulated start, real start; not with
    ``"serve"``) sets the server's clock. Can be killed (SIGKILL) and started again on the same
    ports.
    """

    def __init__(self, log_path: Path, *, scale: float, seed: int = 1, ambient_c: float = 10.0,
                 discovery: bool = True,
                 launch: Literal["serve", "handler", "calibd"] = "serve",
                 clock_at: tuple[datetime, datetime] | None = None) -> None:
        self.port = free_port()
        self.discovery_port = free_udp_port() if discovery else 0
        self.log_path = log_path
        self.scale = scale
        self.seed = seed
        self.ambient_c = ambient_c
        self.launch = launch
        self.clock_at = clock_at
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        if self.launch == "serve":
            assert self.clock_at is None, "clock_at needs the sim serve command line"
            return [sys.executable, "-c", _SERVE, str(self.port), str(self.scale),
                    str(self.discovery_port), str(self.ambient_c), str(self.seed)]
        prefix = [sys.executable, "-c", _HANDLER] if self.launch == "handler" else \
            [sys.executable, "-m", "calibd"]
        clock = [] if self.clock_at is None else [
            "--start", self.clock_at[0].isoformat(), "--real-start", self.clock_at[1].isoformat()]
        return [*prefix, "sim", "serve", "--alpaca", "--port", str(self.port),
                "--discovery-port", str(self.discovery_port), "--scale", str(self.scale),
                "--ambient", str(self.ambient_c), "--seed", str(self.seed), *clock]

    def start(self, timeout_s: float = 30.0) -> None:
        """Start and block until the management API answers. Raises RuntimeError (with the end
        of the log) when the process exits or does not answer within ``timeout_s``."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=REPO)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log()}")
            try:
                if request(self.port, "GET", "/management/apiversions")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not answer in {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 10 s); returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would, and reap it."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)


class StallingProxy:
    """HTTP/1.1 proxy on 127.0.0.1 in front of ``upstream``.

    ``mode``: ``"pass"`` forwards everything; ``"stall-image"`` accepts ``.../imagearray``
    requests and never answers them; ``"stall-all"`` never answers anything. Stalled handlers are
    released by :meth:`close`.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.mode = "pass"
        self.stalled = 0
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                stall = proxy.mode == "stall-all" or (
                    proxy.mode == "stall-image" and "/imagearray" in self.path
                )
                if stall:
                    proxy.stalled += 1
                    proxy._release.wait()
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection(upstream_host, upstream_port, timeout=30)
                try:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() in ("content-type", "accept")
                    }
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.getheader("Content-Type") or "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _handle  # noqa: N815 - http.server naming
            do_PUT = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def stalling_proxy(upstream_host: str, upstream_port: int) -> Iterator[StallingProxy]:
    proxy = StallingProxy(upstream_host, upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()
