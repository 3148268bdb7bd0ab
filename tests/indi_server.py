"""A real ``indiserver`` with the INDI simulators (CCD, wheel, light panel, weather; or telescope
and dome), for tests.

Isolation: indiserver 1.9.9 binds 0.0.0.0 and has no bind option, and its local socket (``-u``)
is an *abstract* Unix socket, which is scoped to the network namespace. So, where ``unshare -n``
works (root), indiserver runs in a private network namespace of its own, and the test process
reaches it through a small relay: a listening socket on 127.0.0.1:<free port> is created here (in
the host namespace) and inherited by the namespace's holder process, which forwards every
connection to indiserver's port inside the namespace. Nothing is reachable from the network, the
inner port can be reused across restarts, and a server kill looks to the client exactly like a
dropped TCP connection. Without ``unshare`` the server runs in the host namespace on a free port
(listening on all interfaces, logged as a warning).

Each server gets its own temporary ``HOME`` (drivers save configuration there), POLLING_PERIOD of
the CCD and light panel set to ``polling_ms`` (the CCD simulator then cools 0.5 °C per poll), and
can be killed (SIGKILL), restarted on the same port, or have one driver killed (indiserver restarts
it). Stop is SIGTERM (indiserver ignores SIGINT when backgrounded).

The INDI doubles of real camera drivers (``simulators/indi_doubles``: ``indi_asi_ccd``,
``indi_qhy_ccd``, ``indi_toupcam_ccd``, ``indi_playerone_ccd``) run the same way: name them in
``drivers`` and the server's private ``bin`` folder, first on indiserver's ``PATH``, gets a
wrapper of that name that runs this checkout's double with the server's time scale and frame size.

Run as a script (``--relay``) this module is the namespace holder + relay.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from typing import TypeVar

from calibd.simulators.indi_doubles.families import FAMILIES as DOUBLE_FAMILIES

if TYPE_CHECKING:
    from calibd.capture.site import Site
    from calibd.drivers.pointing import Place

log = logging.getLogger(__name__)

T = TypeVar("T")

SIMULATORS = (
    "indi_simulator_ccd",
    "indi_simulator_wheel",
    "indi_simulator_lightpanel",
    "indi_simulator_weather",
)
# The mount, dome and roll-off roof simulators run on a server of their own: the CCD simulator
# snoops a telescope called "Telescope Simulator" and changes what it sends when one is there.
MOUNT_SIMULATORS = ("indi_simulator_telescope", "indi_simulator_dome", "indi_rolloff_dome")
INDI_POLL_MS = 50  # POLLING_PERIOD of the session's server (the CCD cools 0.5 °C per poll)
CCD = "CCD Simulator"
WHEEL = "Filter Simulator"
PANEL = "Light Panel Simulator"
WEATHER = "Weather Simulator"
TELESCOPE = "Telescope Simulator"
DOME = "Dome Simulator"
ROOF = "RollOff Simulator"  # a roll-off roof, 10 s per move in real time
ROOF_DRIVER = "indi_rolloff_dome"
FLIPFLAT = "Flip Flat"  # a real light box + dust cap driver, run in its simulation mode
DEVICES = {
    "indi_simulator_ccd": CCD,
    "indi_simulator_wheel": WHEEL,
    "indi_simulator_lightpanel": PANEL,
    "indi_simulator_weather": WEATHER,
    "indi_flipflat": FLIPFLAT,
    "indi_simulator_telescope": TELESCOPE,
    "indi_simulator_dome": DOME,
    "indi_rolloff_dome": ROOF,
}
# The INDI doubles of real camera drivers (simulators/indi_doubles), started by the real
# executable names through wrapper scripts on indiserver's PATH.
DOUBLES = {f.executable: f.device for f in DOUBLE_FAMILIES.values()}
DOUBLE_KEYS = {f.executable: f.key for f in DOUBLE_FAMILIES.values()}
DEVICES.update(DOUBLES)
REPO = Path(__file__).resolve().parent.parent
POLLED = (CCD, PANEL, FLIPFLAT, *DOUBLES.values())  # POLLING_PERIOD shortened by the fixture
SIMULATED = (FLIPFLAT,)  # hardware drivers switched to SIMULATION before anyone connects
INNER_PORT = 7624  # indiserver's port inside the private namespace
CLONE_NEWNET = 0x40000000


# ---------------------------------------------------------------------- availability


def indi_missing_reason(drivers: tuple[str, ...] = SIMULATORS) -> str | None:
    """Why the INDI tests (with these ``drivers``) cannot run here, or None when they can."""
    for exe in ("indiserver", "indi_setprop", "indi_getprop",
                *(d for d in drivers if d not in DOUBLES)):
        if shutil.which(exe) is None:
            return f"{exe} not found (apt-get install indi-bin)"
    try:
        importlib.import_module("PyIndi")
    except Exception as err:  # ImportError, or a broken binary wheel
        return f"PyIndi not importable ({err}); pip install --no-deps pyindi-client==2.3.0"
    return None


def require_indi(drivers: tuple[str, ...] = SIMULATORS) -> None:
    """Skip the calling test when INDI is missing, or fail it when CI requires INDI
    (``CALIBD_REQUIRE`` names ``indi``)."""
    from tests.support import skip_or_fail  # here: run as a script, this module is the relay

    reason = indi_missing_reason(drivers)
    if reason is not None:
        skip_or_fail("indi", reason)


def _netns_possible() -> bool:
    if not all(shutil.which(exe) for exe in ("unshare", "nsenter", "ip")):
        return False
    try:
        done = subprocess.run(
            ["unshare", "-n", "ip", "link", "set", "lo", "up"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _cmd0(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


# ---------------------------------------------------------------------- the server


class IndiTestServer:
    """indiserver + simulators for one test module or test. Use :func:`running_indi_server`.

    Clients connect to ``host``/``port`` (127.0.0.1 and a free port). ``socket_path`` is the
    indiserver local socket, reachable from this process only without a namespace (else None;
    see :meth:`in_namespace`).
    """

    def __init__(
        self,
        *,
        drivers: tuple[str, ...] = SIMULATORS,
        polling_ms: int = 50,
        use_netns: bool | None = None,
        double_scale: float = 20.0,
        double_size: tuple[int, int] = (320, 240),
        double_args: tuple[str, ...] = (),
    ) -> None:
        self.drivers = drivers
        self.double_args = double_args
        self.polling_ms = polling_ms
        self.double_scale = double_scale
        self.double_size = double_size
        if use_netns is None:  # CALIBD_INDI_NETNS=0 forces the host-namespace fallback
            use_netns = os.environ.get("CALIBD_INDI_NETNS", "1") != "0" and _netns_possible()
        self.use_netns = use_netns
        self._tmp = tempfile.TemporaryDirectory(prefix="calibd-indi-")
        self.root = Path(self._tmp.name)
        self.home = self.root / "home"
        self.home.mkdir()
        self.log_path = self.root / "indiserver.log"
        self.bin = self.root / "bin"
        self._write_double_wrappers()
        self.host = "127.0.0.1"
        self._abstract = f"/calibd-indi-{os.getpid()}-{id(self):x}"
        self._holder: subprocess.Popen[bytes] | None = None
        self._listener: socket.socket | None = None
        self._server: subprocess.Popen[bytes] | None = None
        if self.use_netns:
            self._listener = socket.socket()
            self._listener.bind(("127.0.0.1", 0))
            self._listener.listen(16)
            self.port = int(self._listener.getsockname()[1])
            self.inner_port = INNER_PORT
            self.socket_path: str | None = None
        else:
            log.warning("no private network namespace: indiserver listens on all interfaces")
            self.port = _free_port()
            self.inner_port = self.port
            self.socket_path = self._abstract

    def _write_double_wrappers(self) -> None:
        """An executable per INDI double, named like the real driver, that runs this
        checkout's ``calibd.simulators.indi_doubles`` with the server's time scale and frame
        size (and ``double_args``)."""
        self.bin.mkdir()
        width, height = self.double_size
        for exe in self.drivers:
            if exe not in DOUBLES:
                continue
            script = self.bin / exe
            script.write_text(
                "#!/bin/sh\n"
                f'PYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" '
                f"-m calibd.simulators.indi_doubles {DOUBLE_KEYS[exe]} --scale {self.double_scale} "
                f"--width {width} --height {height} "
                f"{' '.join(shlex.quote(a) for a in self.double_args)}\n",
                encoding="utf-8")
            script.chmod(0o755)

    # -------------------------------------------------------------- lifecycle

    def _ns_prefix(self) -> list[str]:
        if self._holder is None:
            return []
        return ["nsenter", f"--net=/proc/{self._holder.pid}/ns/net", "--"]

    def _start_holder(self) -> None:
        assert self._listener is not None
        fd = self._listener.fileno()
        self._holder = subprocess.Popen(
            ["unshare", "-n", sys.executable, __file__, "--relay", str(fd), str(INNER_PORT)],
            pass_fds=(fd,),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self._holder.stdout is not None
        line = self._holder.stdout.readline()
        if line.strip() != b"READY":
            raise RuntimeError(f"namespace relay did not start: {line!r}")

    def start(self, timeout_s: float = 15.0) -> None:
        """Start indiserver (again, on the same port) and wait until every simulator is
        defined and polling is set. Raises RuntimeError."""
        if self.use_netns and self._holder is None:
            self._start_holder()
        env = dict(os.environ, HOME=str(self.home),
                   PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")
        # If this test process dies without cleaning up, the server goes with it.
        reaper = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        cmd = [
            *self._ns_prefix(),
            *reaper,
            "indiserver",
            "-v",
            "-p",
            str(self.inner_port),
            "-u",
            self._abstract,
            *self.drivers,
        ]
        with self.log_path.open("ab") as out:
            self._server = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        for exe in self.drivers:
            device = DEVICES.get(exe)
            if device is None:
                continue
            while not self._has_property(f"{device}.CONNECTION.CONNECT"):
                if self._server.poll() is not None:
                    raise RuntimeError(f"indiserver exited: {self.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{device} did not appear: {self.log_tail()}")
                time.sleep(0.1)
        running = {DEVICES.get(d) for d in self.drivers}
        for device in SIMULATED:
            if device in running:
                self.setprop(f"{device}.SIMULATION.ENABLE=On")
        for device in POLLED:
            if device in running:
                self.setprop(f"{device}.POLLING_PERIOD.PERIOD_MS={self.polling_ms}")

    def _tool(
        self, exe: str, *args: str, timeout_s: float = 5.0
    ) -> subprocess.CompletedProcess[str]:
        cmd = [*self._ns_prefix(), exe, "-h", "127.0.0.1", "-p", str(self.inner_port), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)

    def _has_property(self, spec: str) -> bool:
        done = self._tool("indi_getprop", "-t", "1", spec)
        return done.returncode == 0 and spec.split(".", maxsplit=1)[0] in done.stdout

    def setprop(self, spec: str) -> None:
        """``indi_setprop`` inside the server's namespace, e.g.
        ``"Weather Simulator.WEATHER_CONTROL.Precip=10"``. Raises RuntimeError."""
        done = self._tool("indi_setprop", "-t", "3", spec)
        if done.returncode != 0:
            raise RuntimeError(f"indi_setprop {spec!r} failed: {done.stderr.strip()}")

    def getprop(self, spec: str) -> dict[str, str]:
        """``indi_getprop`` inside the namespace: ``{"dev.prop.elem": "value"}``."""
        done = self._tool("indi_getprop", "-t", "1", spec)
        out: dict[str, str] = {}
        for line in done.stdout.splitlines():
            key, _, value = line.partition("=")
            out[key] = value
        return out

    @property
    def server_pid(self) -> int | None:
        return self._server.pid if self._server and self._server.poll() is None else None

    def kill(self) -> None:
        """SIGKILL indiserver (a crash) and wait until it and its drivers are gone."""
        server = self._server
        if server is None or server.poll() is not None:
            return
        drivers = _children(server.pid)
        server.kill()
        server.wait(10)
        self._reap(drivers)

    def stop(self) -> None:
        """SIGTERM indiserver (SIGKILL after 5 s) and wait for its drivers."""
        server = self._server
        if server is None or server.poll() is not None:
            return
        drivers = _children(server.pid)
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        self._reap(drivers)

    def restart(self) -> None:
        """Start the server again on the same port (after :meth:`kill` or :meth:`stop`)."""
        self.stop()
        self.start()

    def _reap(self, pids: list[int], timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def driver_pid(self, exe: str) -> int | None:
        """PID of the running driver ``exe`` (e.g. ``indi_simulator_ccd``), if any."""
        pid = self.server_pid
        if pid is None:
            return None
        for child in _children(pid):
            if _cmd0(child) == exe and _alive(child):
                return child
        return None

    def kill_driver(self, exe: str) -> int:
        """SIGKILL one driver; indiserver restarts it. Returns the killed PID."""
        pid = self.driver_pid(exe)
        if pid is None:
            raise RuntimeError(f"{exe} is not running")
        os.kill(pid, signal.SIGKILL)
        return pid

    def in_namespace(self, fn: Callable[[], T], timeout_s: float = 30.0) -> T:
        """Run ``fn`` in a thread that joined the server's network namespace (root only), so
        it can reach indiserver's local socket. Without a namespace, runs it directly.
        Raises PermissionError when the namespace cannot be joined."""
        if self._holder is None:
            return fn()
        result: list[T] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/proc/{self._holder_pid}/ns/net", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise PermissionError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
                result.append(fn())
            except BaseException as err:
                errors.append(err)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(timeout_s)
        if errors:
            raise errors[0]
        if not result:
            raise TimeoutError("namespace call did not finish")
        return result[0]

    @property
    def _holder_pid(self) -> int:
        assert self._holder is not None
        return self._holder.pid

    @property
    def inner_socket_path(self) -> str:
        """indiserver's local socket name, valid inside its namespace."""
        return self._abstract

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """Stop everything and remove the temporary HOME. Never raises."""
        try:
            self.stop()
        except Exception as err:
            log.warning("stopping indiserver: %r", err)
        holder, self._holder = self._holder, None
        if holder is not None:
            with contextlib.suppress(Exception):
                if holder.stdin is not None:
                    holder.stdin.close()
                holder.terminate()
                holder.wait(5)
        if self._listener is not None:
            self._listener.close()
        self._tmp.cleanup()


def observatory_double_args(site: Place | Site, start: datetime,
                            real_start: datetime) -> tuple[str, ...]:
    """``double_args`` for a camera double that also serves the simulated observatory at
    ``site``, its simulated clock reading ``start`` at the real time ``real_start`` (both UTC)."""
    return ("--start", start.isoformat(), "--real-start", real_start.isoformat(),
            "--observatory", f"{site.latitude_deg},{site.longitude_deg},{site.elevation_m}")


@contextlib.contextmanager
def running_indi_server(
    *,
    drivers: tuple[str, ...] = SIMULATORS,
    polling_ms: int = 50,
    use_netns: bool | None = None,
    double_scale: float = 20.0,
    double_size: tuple[int, int] = (320, 240),
    double_args: tuple[str, ...] = (),
) -> Iterator[IndiTestServer]:
    """Start an :class:`IndiTestServer` (after :func:`require_indi`: skip, or fail under
    ``CALIBD_REQUIRE=indi``) and stop it afterwards."""
    require_indi(drivers)
    server = IndiTestServer(drivers=drivers, polling_ms=polling_ms, use_netns=use_netns,
                            double_scale=double_scale, double_size=double_size,
                            double_args=double_args)
    try:
        server.start()
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------------- relay (in the namespace)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(1 << 20)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _serve(client: socket.socket, port: int) -> None:
    try:
        backend = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        client.close()  # server down: the client sees the connection closed at once
        return
    backend.settimeout(None)
    back = threading.Thread(target=_pump, args=(backend, client), daemon=True)
    back.start()
    _pump(client, backend)
    back.join()
    client.close()
    backend.close()


def _relay_main(listen_fd: int, port: int) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = socket.socket(fileno=listen_fd)

    def watch_parent() -> None:
        sys.stdin.buffer.read()  # EOF when the test process goes away
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_serve, args=(client, port), daemon=True).start()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--relay":
        _relay_main(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: indi_server.py --relay LISTEN_FD PORT")
