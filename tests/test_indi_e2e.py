"""End to end over INDI: a real ``indiserver`` with the INDI simulators, the INDI driver, the real
``calibd`` CLI, the sequencer and the library.

The CCD simulator starts at 0 °C and cools 0.5 °C per 50 ms poll, so the set-points are a few
degrees below that; its pixels are not physical (bias = dark = offset + noise), so these tests
check what the protocol carries (settings applied by the device and written to the headers,
frame types, counts, recovery), not physics. See tests/indi_server.py for the server fixture.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.indi_server import CCD
from tests.indi_server import INDI_POLL_MS
from tests.indi_server import PANEL
from tests.indi_server import WEATHER
from tests.indi_server import WHEEL
from tests.indi_server import IndiTestServer
from tests.indi_server import running_indi_server
from tests.support import assert_library_exact
from tests.support import finish
from tests.support import frames_on_disk
from tests.support import headers
from tests.support import journal
from tests.support import planned_cells
from tests.support import run_cli
from tests.support import run_state
from tests.support import start_calibd
from tests.support import wait_until
from tests.support import write_plan
from tests.support import write_real_config

pytestmark = [pytest.mark.indi, pytest.mark.timeout(180)]

POLL_MS = INDI_POLL_MS
GAIN, OFFSET = 30, 10

PLAN = """
name: indi-e2e
defaults: {offset: 10}
cooling: {tolerance_c: 0.5, dwell_s: 1, poll_s: 0.2, ramp_c_per_min: 60, timeout_s: 60}
warmup: {enabled: false}
sets:
  - kind: bias
    gains: [30]
    setpoints_c: [-1, -3]
    count: 3
  - kind: dark
    gains: [30]
    setpoints_c: [-1, -3]
    exposures_s: [0.3]
    count: 2
"""
PLAN_FRAMES = 2 * 3 + 2 * 2

KILL_PLAN = """
name: indi-kill
defaults: {offset: 10}
cooling: {tolerance_c: 0.5, dwell_s: 1, poll_s: 0.2, ramp_c_per_min: 60, timeout_s: 60}
warmup: {enabled: false}
sets:
  - kind: bias
    gains: [30]
    setpoints_c: [-2]
    count: 2
  - kind: dark
    gains: [30]
    setpoints_c: [-2]
    exposures_s: [3]
    count: 3
"""
KILL_FRAMES = 2 + 3


@pytest.fixture(scope="module")
def server(indi_server: IndiTestServer) -> IndiTestServer:
    """The session's indiserver."""
    return indi_server


def indi_config(path: Path, srv: IndiTestServer) -> Path:
    return write_real_config(path, {
        "driver": "indi", "host": srv.host, "port": srv.port, "device": CCD,
        "polling_ms": POLL_MS, "connect_timeout_s": 10.0, "offset": OFFSET})


def test_devices_list_shows_the_simulators(capsys: pytest.CaptureFixture[str],
                                           server: IndiTestServer) -> None:
    res = run_cli(capsys, "devices", "list", "--driver", "indi", "--host", server.host,
                  "--port", str(server.port), "--timeout", "10")
    assert res.code == 0, res.err
    for kind, name in (("camera", CCD), ("filterwheel", WHEEL), ("flatpanel", PANEL),
                       ("weather", WEATHER)):
        assert any(line.split()[:1] == [kind] and name in line
                   for line in res.out.splitlines()), (kind, name, res.out)


def test_bias_and_darks_at_two_setpoints(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         server: IndiTestServer) -> None:
    config = indi_config(tmp_path / "calibd.yaml", server)
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    lib = tmp_path / "lib"
    check = run_cli(capsys, "plan", "check", plan, "--config", config)
    assert check.code == 0, check.err
    assert str(PLAN_FRAMES) in check.out
    started = time.monotonic()
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    elapsed = time.monotonic() - started
    assert res.code == 0, res.err
    assert "complete" in res.out
    planned = planned_cells(lib)
    assert sum(planned.values()) == PLAN_FRAMES and len(planned) == 4
    assert_library_exact(lib, planned)
    assert run_state(lib)["state"] == "complete"
    # The device really applied what the plan asked for: its own properties say so ...
    props = server.getprop(f"{CCD}.*.*")
    assert float(props[f"{CCD}.CCD_GAIN.GAIN"]) == GAIN
    assert float(props[f"{CCD}.CCD_OFFSET.OFFSET"]) == OFFSET
    # ... and every header carries the values read back from it, not the request.
    for h in headers(lib):
        kind = h["CELLKEY"].split("|")[0]
        assert h["GAIN"] == GAIN and h["OFFSET"] == OFFSET
        assert h["XBINNING"] == h["YBINNING"] == 1
        assert (h["NAXIS1"], h["NAXIS2"]) == (1280, 1024)
        assert h["INSTRUME"] and h["CAMERAID"] == f"indi:{CCD}"
        assert h["INDIDEV"] == CCD
        assert abs(h["CCD-TEMP"] - h["SET-TEMP"]) <= 0.5
        assert h["SET-TEMP"] in (-1.0, -3.0)
        if kind == "bias":
            assert h["IMAGETYP"] == "Bias Frame" and h["INDIFRAM"] == "BIAS"
            assert h["EXPTIME"] == pytest.approx(0.01)  # the device minimum
        else:
            assert h["IMAGETYP"] == "Dark Frame" and h["INDIFRAM"] == "DARK"
            assert h["EXPTIME"] == pytest.approx(0.3) and h["DARKTIME"] == pytest.approx(0.3)
    print(f"INDI plan of {PLAN_FRAMES} frames in {elapsed:.1f} s")


def test_indiserver_killed_during_a_dark_then_restarted(tmp_path: Path) -> None:
    """SIGKILL indiserver in the middle of a 3 s dark, start it again 1 s later on the same port:
    the sequencer reconnects (settings and set-point re-sent), retakes the frame, and the library
    ends with exactly the planned frames.

    ``calibd run`` is a real process here and the server is killed and restarted from the test's
    main thread (IndiTestServer puts ``setpriv --pdeathsig`` on indiserver, and that signal follows
    the *thread* that started it: a server restarted from a short-lived thread dies with it)."""
    with running_indi_server(polling_ms=POLL_MS) as srv:
        config = indi_config(tmp_path / "calibd.yaml", srv)
        plan = write_plan(tmp_path / "plan.yaml", KILL_PLAN)
        lib = tmp_path / "lib"
        log = tmp_path / "calibd.log"
        proc = start_calibd("run", plan, "--config", config, "--library", lib, log=log)
        try:
            # The bias frames and the first dark are on disk: the second dark is being exposed
            # (each frame is written while the next one is exposed).
            assert wait_until(lambda: frames_on_disk(lib, "Darks") >= 1 or proc.poll() is not None,
                              90.0), log.read_text(errors="replace")[-3000:]
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            time.sleep(1.0)
            before = frames_on_disk(lib)
            srv.kill()
            time.sleep(1.0)
            srv.start()
            code = finish(proc, 120.0, log)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        text = log.read_text(errors="replace")
        assert code == 0, text[-3000:]
        assert before == 2 + 1, "the kill did not land in the second dark"
        planned = planned_cells(lib)
        assert sum(planned.values()) == KILL_FRAMES
        assert_library_exact(lib, planned)
        kinds = [kind for kind, _ in journal(lib)]
        assert "device-lost" in kinds and "reconnected" in kinds, kinds
        assert kinds.index("device-lost") < kinds.index("reconnected")
        darks = sorted(h["FRAMESEQ"] for h in headers(lib) if h["IMAGETYP"] == "Dark Frame")
        assert darks == [1, 2, 3]
        # The re-sent settings reached the new server process.
        props = srv.getprop(f"{CCD}.*.*")
        assert float(props[f"{CCD}.CCD_GAIN.GAIN"]) == GAIN
        assert float(props[f"{CCD}.CCD_OFFSET.OFFSET"]) == OFFSET


class IgnoringProxy:
    """A TCP proxy between calibd and indiserver that rewrites every gain and offset request to
    fixed values on the wire, so the camera answers as one that does not apply what it is asked
    (the fault is injected at the transport, the lowest layer). Threads end when the sockets
    close; ``close`` closes them all."""

    _ELEMENT = re.compile(r'(<oneNumber\s+name=["\'](GAIN|OFFSET)["\'][^>]*>)([^<]*)(</oneNumber>)')

    def __init__(self, host: str, port: int, values: dict[str, float]) -> None:
        self.target = (host, port)
        self.values = values
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(client, upstream, True),
                             daemon=True).start()

    def _rewrite(self, text: str) -> str:
        return self._ELEMENT.sub(lambda m: f"{m[1]}{self.values[m[2]]:g}{m[4]}", text)

    def _pump(self, src: socket.socket, dst: socket.socket, rewrite: bool) -> None:
        held = ""
        try:
            while data := src.recv(1 << 16):
                if not rewrite:
                    dst.sendall(data)
                    continue
                held += data.decode("latin-1")
                cut = held.rfind("<oneNumber")  # hold back an element not complete yet
                if cut >= 0 and "</oneNumber>" not in held[cut:]:
                    out, held = held[:cut], held[cut:]
                else:
                    out, held = held, ""
                dst.sendall(self._rewrite(out).encode("latin-1"))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def test_a_camera_that_does_not_apply_gain_and_offset_fails_the_cell(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, server: IndiTestServer) -> None:
    """Gain 30 / offset 10 requested, the camera applies 0 / 20: the cell fails with the values
    the camera read back and no frame is filed under g30_o10."""
    proxy = IgnoringProxy(server.host, server.port, {"GAIN": 0, "OFFSET": 20})
    try:
        config = write_real_config(tmp_path / "calibd.yaml", {
            "driver": "indi", "host": "127.0.0.1", "port": proxy.port, "device": CCD,
            "polling_ms": POLL_MS, "connect_timeout_s": 10.0, "offset": OFFSET})
        plan = write_plan(tmp_path / "plan.yaml", PLAN.split("  - kind: dark", maxsplit=1)[0])
        lib = tmp_path / "lib"
        res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    finally:
        proxy.close()
    assert res.code == 1, res.err
    assert "gain 0 instead of 30" in res.err and "offset 20 instead of 10" in res.err, res.err
    assert not list(lib.rglob("*.fits"))
    assert run_state(lib)["state"] != "complete"
