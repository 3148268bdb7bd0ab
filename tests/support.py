"""Helpers shared by the test modules — import them from here (``from tests.support import
...``), never from another test module or from conftest (which holds only fixtures).

* running ``calibd``: in-process (:func:`run_cli`, :func:`cli_json`) or as a real process
  (:func:`calibd_subprocess`, :func:`start_calibd` + :func:`finish`);
* input files: simulator configurations (:func:`write_config`), real-driver configurations
  (:func:`write_real_config`), plans (:func:`write_plan`);
* the library: :func:`assert_library_exact`, :func:`fits_files`, :func:`headers`,
  :func:`frames_on_disk`, :func:`planned_cells`, :func:`run_state`, :func:`journal`;
* CI: :func:`required` and :func:`skip_or_fail` (``CALIBD_REQUIRE``, e.g.
  ``indi,alpaca,zwo,systemd,mosquitto,siril``, turns a skip for missing software into a failure);
* waits: :func:`wait_for`, :func:`wait_until`, and :func:`watch`, which injects a fault at a
  chosen moment of a run from a background thread;
* the daemon as a real process with a notify socket and its API: :func:`daemon_env`.

Every wait here has a deadline (real seconds)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any
from typing import NoReturn
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from astropy.io import fits

from calibd.capture.cli.main import main
from calibd.capture.library import fitsio
from calibd.capture.library.fitsio import FrameContext
from calibd.capture.library.index import Index
from calibd.capture.plans.cells import Cell
from calibd.drivers.contracts import CameraInfo
from calibd.drivers.contracts import Frame

REPO = Path(__file__).resolve().parent.parent
PLANS = REPO / "plans"
REQUIRE_ENV = "CALIBD_REQUIRE"

T = TypeVar("T")


# ---------------------------------------------------------------------- CI: skip or fail


def required(component: str) -> bool:
    """True when CI demands ``component``'s tests: ``$CALIBD_REQUIRE`` lists it (separated by
    commas, spaces or semicolons, e.g. ``indi,alpaca,zwo,systemd``)."""
    tokens = re.split(r"[\s,;]+", os.environ.get(REQUIRE_ENV, "").strip().lower())
    return component.lower() in tokens


def skip_or_fail(component: str, reason: str) -> NoReturn:
    """Skip with ``reason`` on a developer machine; fail when CI requires ``component``."""
    if required(component):
        pytest.fail(f"{component} tests are required ({REQUIRE_ENV}) but cannot run: {reason}",
                    pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------- running calibd


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> CliResult:
    """Run ``calibd`` in-process (same code path as the console script)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def cli_json(*args: str | Path) -> Any:
    """Run ``calibd ... --json`` in-process and decode its standard output (capture with
    ``capsys`` in the caller is not needed: this redirects by itself)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    assert code == 0, f"calibd {' '.join(map(str, args))} exited {code}"
    return json.loads(out.getvalue())


def calibd_subprocess(*args: str | Path, timeout: float = 300,
                      env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``calibd`` as a real process (``python -m calibd``), at most ``timeout`` s."""
    return subprocess.run([sys.executable, "-m", "calibd", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})}, check=False)


def start_calibd(*args: str | Path, env: dict[str, str] | None = None,
                 log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m calibd ARGS`` (a real calibd process) with its output going to ``log``
    (default: discarded). The caller waits for it with a deadline (``proc.wait(timeout)``)."""
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "calibd", *map(str, args)], cwd=REPO,
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    finally:
        if log is not None and not isinstance(out, int):
            out.close()


def finish(proc: subprocess.Popen[bytes], timeout_s: float, log: Path | None = None) -> int:
    """Wait up to ``timeout_s`` real seconds for ``proc``; on timeout kill it and fail with the
    end of its log. Returns the exit code."""
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
        raise AssertionError(f"calibd did not finish within {timeout_s} s:\n{tail}") from None


# ---------------------------------------------------------------------- input files


def write_config(path: Path, *, scale: float = 5000.0, profile: str = "small",
                 camera: str = "sim", flats: bool = False, start: str | None = None,
                 panel: dict[str, Any] | None = None, **camera_options: Any) -> Path:
    """A configuration with one simulated camera on a simulated clock; ``flats`` adds the
    simulated seven-filter wheel, flip-flat panel and a site (45° N, 7° E)."""
    cam: dict[str, Any] = {"driver": "simulator", "profile": profile, "offset": 50}
    cam.update(camera_options)
    clock: dict[str, Any] = {"kind": "simulated", "scale": scale}
    if start is not None:
        clock["start"] = start
    data: dict[str, Any] = {"clock": clock, "cameras": {camera: cam}}
    if flats:
        cam.update(filter_wheel="wheel", flat_panel="panel")
        data["site"] = {"latitude_deg": 45.0, "longitude_deg": 7.0, "elevation_m": 400.0}
        data["filter_wheels"] = {"wheel": {"driver": "simulator"}}
        data["flat_panels"] = {"panel": {"driver": "simulator", **(panel or {})}}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_real_config(path: Path, camera: dict[str, Any], *, name: str = "cam",
                      wheel: dict[str, Any] | None = None,
                      panel: dict[str, Any] | None = None) -> Path:
    """A configuration with one real-driver camera on the real clock, optionally with a filter
    wheel and a flat panel, fsync on and automatic masters off (these tests are about capture)."""
    cam = dict(camera)
    data: dict[str, Any] = {
        "clock": {"kind": "real"},
        "library": {"fsync": True, "min_free_mb": 0},
        "masters": {"auto": False},
        "cameras": {name: cam},
    }
    if wheel is not None:
        cam["filter_wheel"] = "wheel"
        data["filter_wheels"] = {"wheel": wheel}
    if panel is not None:
        cam["flat_panel"] = "panel"
        data["flat_panels"] = {"panel": panel}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_frame(path: Path, frame: Frame, info: CameraInfo, *, kind: str = "dark",
                filter_name: str | None = None) -> Path:
    """``frame`` written by calibd's own FITS writer: the sequencer's header cards
    (:func:`fitsio.frame_cards`) and the atomic writer, as in a run."""
    s = frame.settings
    cell = Cell(kind=kind, gain=s.gain, offset=s.offset, binning=s.binning,  # type: ignore[arg-type]
                readout_mode=s.readout_mode, setpoint_c=-10.0, exposure_s=frame.exposure_s,
                count=1, filter=filter_name)
    ctx = FrameContext(camera_name="cam", info=info, cell=cell, plan_name="test", run_id=1, seq=1)
    fitsio.write_atomic(path, frame.data, fitsio.build_header(fitsio.frame_cards(frame, ctx)),
                        fsync=False)
    return path


#: OpenCV names its Bayer conversions by "the second row, second and third columns" of the
#: mosaic (cv::cvtColor documentation, "Bayer -> RGB"): for an RGGB mosaic (R G / G B, repeated)
#: those are B, G, so RGGB is ``COLOR_BayerBG2RGB``. Derived from that rule, not assumed: the
#: synthetic frames of tests/test_bayer_fits.py check every entry.
OPENCV_BAYER = {"RGGB": "BG", "BGGR": "RG", "GRBG": "GB", "GBRG": "GR"}


def demosaic_fits(path: Path) -> npt.NDArray[np.uint16]:
    """An outside reader's view of a colour FITS file: rows turned top-down by ``ROWORDER``, the
    pattern of the top-left pixel from ``BAYERPAT`` shifted by ``XBAYROFF``/``YBAYROFF`` (Siril's
    reading), then OpenCV's demosaic. Returns [row, column, (R, G, B)]. Uses only the keywords
    and OpenCV, none of calibd's own Bayer code. Raises KeyError/ValueError for a file without
    usable keywords."""
    import cv2

    with fits.open(path) as hdul:
        header, data = hdul[0].header, np.asarray(hdul[0].data)
    order = str(header.get("ROWORDER", "TOP-DOWN")).strip().upper()
    if order not in ("TOP-DOWN", "BOTTOM-UP"):
        raise ValueError(f"ROWORDER {order!r}")
    if order == "BOTTOM-UP":
        data = data[::-1]
    pattern = str(header["BAYERPAT"]).strip().upper()
    dx, dy = int(header.get("XBAYROFF", 0)), int(header.get("YBAYROFF", 0))
    rows = (pattern[0:2], pattern[2:4])
    pattern = "".join(rows[(r + dy) % 2][(c + dx) % 2] for r in (0, 1) for c in (0, 1))
    code = getattr(cv2, f"COLOR_Bayer{OPENCV_BAYER[pattern]}2RGB")
    rgb = cv2.cvtColor(np.ascontiguousarray(data, dtype=np.uint16), code)
    return np.asarray(rgb, dtype=np.uint16)


def write_plan(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------- the library


def fits_files(root: Path) -> list[Path]:
    """Captured frames (masters, sensor results and quarantined files excluded)."""
    return sorted(p for p in root.rglob("*.fits")
                  if not {"Masters", "Sensor", ".quarantine"} & set(p.parts))


def assert_library_exact(library: Path, planned: dict[str, int]) -> None:
    """The library holds exactly ``planned`` frames per cell: no duplicate, no partial file."""
    leftovers = [p for p in library.rglob("*") if p.name.endswith(".partial")]
    assert not leftovers, leftovers
    seen: dict[str, set[int]] = {}
    for path in fits_files(library):
        with fits.open(path) as hdul:
            header = hdul[0].header
            assert hdul[0].data is not None and hdul[0].data.ndim == 2
        key, seq = header["CELLKEY"], int(header["FRAMESEQ"])
        assert seq not in seen.setdefault(key, set()), f"duplicate frame {key} #{seq}"
        seen[key].add(seq)
    assert {k: len(v) for k, v in seen.items()} == planned
    index = Index(library)
    try:
        assert index.query("SELECT COUNT(*) AS n FROM frames")[0]["n"] == sum(planned.values())
    finally:
        index.close()


def headers(library: Path) -> list[fits.Header]:
    """The primary headers of every captured frame (masters excluded)."""
    return [fits.getheader(p) for p in fits_files(library)]


def frames_on_disk(library: Path, kind: str | None = None) -> int:
    """Complete frames in the library (optionally of one folder kind: Bias, Darks, Flats)."""
    files = fits_files(library) if library.exists() else []
    if kind is None:
        return len(files)
    return sum(1 for p in files if kind in p.parts)


def planned_cells(library: Path, run_id: int | None = None) -> dict[str, int]:
    """``{cell key: planned frames}`` of a run (default: the newest) from ``library status``."""
    runs = cli_json("library", "status", "--library", library, "--json")["runs"]
    run = runs[-1] if run_id is None else next(r for r in runs if r["id"] == run_id)
    return {c["key"]: c["planned"] for c in run["cells"]}


def run_state(library: Path) -> dict[str, Any]:
    """The newest run as ``library status --json`` reports it (state, cells with reasons)."""
    runs: list[dict[str, Any]] = cli_json("library", "status", "--library", library,
                                          "--json")["runs"]
    return runs[-1]


def journal(library: Path, run_id: int = 1) -> list[tuple[str, str]]:
    """The run's events as (kind, message), oldest first."""
    index = Index(library)
    try:
        return [(r["kind"], r["message"]) for r in index.events(run_id)]
    finally:
        index.close()


# ---------------------------------------------------------------------- waits and faults


def wait_for(fn: Callable[[], T | None], timeout_s: float, what: str,
             poll_s: float = 0.05) -> T:
    """Poll ``fn`` until it returns a truthy value (returned), or fail the test after
    ``timeout_s`` real seconds naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> bool:
    """Poll ``predicate`` for up to ``timeout_s`` real seconds; its last value."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()


class Watcher:
    """A background thread that waits (up to ``timeout_s``) for ``when()`` and then runs
    ``action()`` once. :attr:`fired` tells whether it ran; an exception in either is kept in
    :attr:`error` and re-raised by :meth:`check`."""

    def __init__(self, when: Callable[[], bool], action: Callable[[], None],
                 timeout_s: float) -> None:
        self.fired = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._when, self._action, self._timeout_s = when, action, timeout_s
        self._thread = threading.Thread(target=self._run, name="e2e-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            end = time.monotonic() + self._timeout_s
            while not self._stop.is_set() and time.monotonic() < end:
                if self._when():
                    self._action()
                    self.fired.set()
                    return
                self._stop.wait(0.02)
        except BaseException as err:  # handed to the test thread by check()
            self.error = err

    def close(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the fault injector failed: {self.error!r}") from self.error
        assert self.fired.is_set(), "the fault was never injected (its moment never came)"


@contextmanager
def watch(when: Callable[[], bool], action: Callable[[], None],
          timeout_s: float = 120.0) -> Iterator[Watcher]:
    """Run ``action`` once ``when()`` turns true, in the background, for the ``with`` body."""
    watcher = Watcher(when, action, timeout_s)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.close()


# ------------------------------------------------------------------ the daemon as a process


DAEMON_TOKEN = "t0ken-for-the-tests-0123456789"
DAEMON_T0 = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)

QUICK_BIAS = """
defaults: {offset: 50}
cooling: {dwell_s: 10, tolerance_c: 0.5}
warmup: {enabled: false}
sets:
  - kind: bias
    gains: [100]
    setpoints_c: [5]
    count: 2
"""

LONG_DARKS = """
defaults: {offset: 50}
cooling: {dwell_s: 10, tolerance_c: 0.5}
warmup: {enabled: false}
sets:
  - kind: dark
    gains: [100]
    setpoints_c: [0]
    exposures_s: [300]
    count: 16
"""


class NotifySocket:
    """A real AF_UNIX datagram socket, as systemd binds for NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [line for _, msg in list(self.messages) for line in msg.split("\n") if line]

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@dataclass
class Env:
    """A daemon test environment: configuration, library, state folder, notify socket, the
    daemon processes started (killed at the end of :func:`daemon_env`)."""

    root: Path
    config: Path
    library: Path
    state: Path
    notify: NotifySocket
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def write_config(self, *, scale: float = 600.0, start: datetime = DAEMON_T0,
                     schedules: list[dict[str, Any]] | None = None,
                     cloudy: list[tuple[datetime, datetime]] | None = None,
                     api: dict[str, Any] | None = None) -> None:
        data: dict[str, Any] = {
            "library": {"root": str(self.library), "min_free_mb": 10},
            "clock": {"kind": "simulated", "scale": scale, "start": start.isoformat()},
            "site": {"latitude_deg": 45.0, "longitude_deg": 7.0, "elevation_m": 400.0},
            "cameras": {"sim": {"driver": "simulator", "profile": "small", "offset": 50}},
            "masters": {"auto": False},
            "daemon": {"state_dir": str(self.state), "timezone": "UTC", "weather_poll_s": 30,
                       "stop_timeout_s": 20, "plans_dir": str(self.root),
                       "api": api or {"host": "127.0.0.1", "port": 0, "token": DAEMON_TOKEN}},
            "schedules": schedules or [],
        }
        if cloudy is not None:
            data["safety"] = {"driver": "simulator", "cloudy": [
                {"start": a.isoformat(), "end": b.isoformat()} for a, b in cloudy]}
        self.config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    def plan(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text, encoding="utf-8")
        return path

    def start(self, watchdog_s: float = 2.0) -> subprocess.Popen[str]:
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path),
               "WATCHDOG_USEC": str(int(watchdog_s * 1e6)), "PYTHONUNBUFFERED": "1"}
        env.pop("WATCHDOG_PID", None)
        log = open(self.root / f"daemon-{len(self.procs)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "calibd", "daemon", "--config",
                                 str(self.config)], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)
        return proc

    def log(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.root.glob("daemon-*.log")))

    def api(self, method: str, path: str, body: dict[str, Any] | None = None,
            token: str | None = DAEMON_TOKEN) -> tuple[int, dict[str, Any]]:
        port = int((self.state / "api.port").read_text())
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")


@contextmanager
def daemon_env(tmp_path: Path) -> Iterator[Env]:
    """An :class:`Env` under ``tmp_path``; every daemon it started is killed on exit."""
    # AF_UNIX paths are limited to ~107 bytes: keep the socket short.
    sock_dir = Path(f"/tmp/calibd-n{os.getpid()}-{time.monotonic_ns() % 10**8}")
    sock_dir.mkdir()
    env = Env(tmp_path, tmp_path / "calibd.yaml", tmp_path / "lib", tmp_path / "state",
              NotifySocket(sock_dir / "n"))
    try:
        yield env
    finally:
        for p in env.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        env.notify.close()
        for child in sock_dir.iterdir():
            child.unlink()
        sock_dir.rmdir()


def ready(env: Env) -> bool:
    """The daemon said READY=1 and its API port file exists."""
    return "READY=1" in env.notify.lines() and (env.state / "api.port").exists()


def library_runs(library: Path) -> list[dict[str, Any]]:
    """``library status --json`` runs, from a real ``calibd`` process."""
    proc = subprocess.run([sys.executable, "-m", "calibd", "library", "status", "--library",
                           str(library), "--json"], cwd=REPO, capture_output=True, text=True,
                          check=True)
    runs: list[dict[str, Any]] = json.loads(proc.stdout)["runs"]
    return runs


# -- local endpoints for notifications (real servers on loopback) -------------------------------

def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpReceiver:
    """A real HTTP server on loopback that records every POST (path, headers, body)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler
        from http.server import ThreadingHTTPServer

        posts: list[tuple[str, dict[str, str], bytes]] = []
        self.posts = posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                posts.append((self.path, dict(self.headers), self.rfile.read(size)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json_posts(self, path: str) -> list[Any]:
        return [json.loads(body) for p, _, body in list(self.posts) if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) on loopback that records every message."""

    def __init__(self) -> None:
        from email import message_from_bytes
        from email.message import Message

        from aiosmtpd.controller import Controller

        messages: list[Message] = []
        self.messages = messages

        class Handler:
            async def handle_DATA(self, server: Any, session: Any,  # noqa: N802 (aiosmtpd)
                                  envelope: Any) -> str:
                messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


class Mosquitto:
    """Debian's mosquitto broker on a loopback port, started and restarted by the test."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             "persistence false\n", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            skip_or_fail("mosquitto", "Debian's mosquitto is not installed")
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def listening() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), 0.2):
                return True
            return False

        wait_for(lambda: listening() or None, 10, "mosquitto listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def fits_light(path: Path, cards: dict[str, Any], shape: tuple[int, int] = (4, 6)) -> Path:
    """Write a tiny light frame (zeros of ``shape``) whose header holds ``cards``: the header
    is what the light readers look at. Creates the folder; returns ``path``."""
    header = fits.Header()
    for k, v in cards.items():
        header[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.writeto(path, np.zeros(shape, dtype=np.uint16), header)
    return path
