"""End to end over ASCOM Alpaca: the Alpaca driver, the real ``calibd`` CLI, the sequencer, the
flats runner and the library, against

* our own Alpaca server (``calibd sim serve --alpaca``) as a real process: camera, filter wheel and
  flip-flat panel over HTTP, with the physics of the simulator (bias, darks, panel flats found by
  an exposure search over the protocol, dark flats), and faults (server killed mid-exposure,
  a stalled image download, settings the device refuses);
* the third-party ``alpaca-simulators`` server (bias and darks), for interoperability;
* discovery and listing through the CLI.

The client runs on the real clock, so exposures take their real length; the server's clock runs
SCALE x faster, which makes its cooler and panel quick (test_sky_observatory shares one simulated
clock between calibd and the server instead). Its ambient is 1 °C so the set-point ramp to 0 °C
is short.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from calibd.capture.library.index import Index
from calibd.drivers.alpaca import AlpacaCamera
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.errors import ExposureTimeout
from calibd.simulators.clock import ScaledClock
from calibd.simulators.profiles import PROFILES
from tests.alpaca_servers import AlpacaSimServer
from tests.alpaca_servers import OurAlpacaServer
from tests.alpaca_servers import require_alpaca
from tests.alpaca_servers import stalling_proxy
from tests.support import assert_library_exact
from tests.support import fits_files
from tests.support import frames_on_disk
from tests.support import headers
from tests.support import journal
from tests.support import planned_cells
from tests.support import run_cli
from tests.support import run_state
from tests.support import watch
from tests.support import write_plan
from tests.support import write_real_config

pytestmark = [pytest.mark.alpaca, pytest.mark.timeout(240)]

HOST = "127.0.0.1"
SCALE = 50.0  # simulated seconds per real second in the server process
AMBIENT_C = 1.0
COOLING = "cooling: {tolerance_c: 0.3, dwell_s: 1, poll_s: 0.2, ramp_c_per_min: 60, timeout_s: 60}"
TARGET_ADU, TOLERANCE_PCT = 25000.0, 10.0

PLAN = f"""
name: alpaca-e2e
defaults: {{offset: 20}}
{COOLING}
warmup: {{enabled: false}}
sets:
  - kind: bias
    gains: [100]
    setpoints_c: [0]
    count: 3
  - kind: dark
    gains: [100]
    setpoints_c: [0]
    exposures_s: [0.5]
    count: 2
  - kind: flat
    source: panel
    gains: [100]
    setpoints_c: [0]
    filters: [L, R]
    count: 2
    target_adu: {TARGET_ADU}
    tolerance_pct: {TOLERANCE_PCT}
    min_exposure_s: 0.01
    max_exposure_s: 5
    dark_flats: {{count: 2}}
"""
FIXED_FRAMES = 3 + 2 + 2 * 2  # bias, darks, flats; dark flats are decided at run time

DARKS_PLAN = f"""
name: alpaca-darks
defaults: {{offset: 20}}
{COOLING}
warmup: {{enabled: false}}
sets:
  - kind: bias
    gains: [100]
    setpoints_c: [0]
    count: 2
  - kind: dark
    gains: [100]
    setpoints_c: [0]
    exposures_s: [2]
    count: 3
"""
DARKS_FRAMES = 2 + 3


def our_server(log_path: Path, *, discovery: bool = False,
               ambient_c: float = AMBIENT_C) -> OurAlpacaServer:
    """``python -m calibd sim serve --alpaca`` on a clock SCALE x real time (not started)."""
    return OurAlpacaServer(log_path, scale=SCALE, seed=7, ambient_c=ambient_c,
                           discovery=discovery, launch="calibd")


@pytest.fixture(scope="module", autouse=True)
def _needs_alpyca() -> None:
    require_alpaca(server=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OurAlpacaServer]:
    srv = our_server(tmp_path_factory.mktemp("alpaca-e2e") / "server.log", discovery=True)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def alpaca_config(path: Path, port: int, *, accessories_port: int | None = None,
                  **camera: object) -> Path:
    """Camera (device 0) on ``port``; filter wheel and flip-flat on ``accessories_port``."""
    cam: dict[str, object] = {"driver": "alpaca", "host": HOST, "port": port, "timeout_s": 5.0,
                              **camera}
    if accessories_port is None:
        return write_real_config(path, cam)
    return write_real_config(
        path, cam,
        wheel={"driver": "alpaca", "host": HOST, "port": accessories_port},
        panel={"driver": "alpaca", "host": HOST, "port": accessories_port})


# ------------------------------------------------------------------------------------------------
# (a) our server: bias, darks, panel flats and dark flats


def test_bias_darks_and_panel_flats(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                    server: OurAlpacaServer) -> None:
    config = alpaca_config(tmp_path / "calibd.yaml", server.port, accessories_port=server.port)
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 0, res.err
    planned = planned_cells(lib)
    assert_library_exact(lib, planned)
    assert run_state(lib)["state"] == "complete"
    by_kind: dict[str, list[fits.Header]] = {}
    for h in headers(lib):
        kind = h["CELLKEY"].split("|")[0]
        by_kind.setdefault(kind, []).append(h)
    assert {k: len(v) for k, v in by_kind.items() if k != "darkflat"} == {
        "bias": 3, "dark": 2, "flat": 4}
    # Flats: both filters, level within the plan's tolerance of the target.
    tol = TARGET_ADU * TOLERANCE_PCT / 100
    flat_exposures = set()
    for h in by_kind["flat"]:
        assert h["IMAGETYP"] == "Flat Frame" and h["FILTER"] in ("L", "R")
        assert h["FLATSRC"] == "panel"
        flat_exposures.add((h["EXPTIME"], h["GAIN"], h["OFFSET"]))
    index = Index(lib)
    try:
        levels = index.query("SELECT level_adu FROM frames WHERE kind='flat'")
    finally:
        index.close()
    assert len(levels) == 4
    assert all(abs(r["level_adu"] - TARGET_ADU) <= tol for r in levels), [dict(r) for r in levels]
    for path in fits_files(lib):
        if "Flat" in path.name and "Dark" not in path.name:
            data = fits.getdata(path).astype(np.float64)
            assert abs(float(np.median(data)) - TARGET_ADU) <= 1.5 * tol
    # R passes about a third of L's light: the search found a longer exposure for it.
    exp_by_filter = {h["FILTER"]: h["EXPTIME"] for h in by_kind["flat"]}
    assert 2.0 < exp_by_filter["R"] / exp_by_filter["L"] < 4.5
    # Dark flats: exactly the flats' exposures (and settings), with the cover closed, dark.
    dark_flats = by_kind["darkflat"]
    assert {(h["EXPTIME"], h["GAIN"], h["OFFSET"]) for h in dark_flats} == flat_exposures
    assert len(dark_flats) == 2 * len(flat_exposures)
    assert all(h["IMAGETYP"] == "Dark Flat" and h["CALTYPE"] == "DARKFLAT"
               for h in dark_flats)
    bias_level = float(np.median(fits.getdata(next(p for p in fits_files(lib)
                                                    if "Bias" in p.parts))))
    for path in fits_files(lib):
        if fits.getheader(path).get("CALTYPE") == "DARKFLAT":
            assert float(np.median(fits.getdata(path))) < bias_level + 100  # no light
    kinds = [kind for kind, _ in journal(lib)]
    assert kinds.count("flat-search") == 2
    # Settings and the sensor's full well came over the protocol.
    h = by_kind["bias"][0]
    assert (h["NAXIS1"], h["NAXIS2"]) == (PROFILES["small"].width, PROFILES["small"].height)
    assert h["GAIN"] == 100 and h["OFFSET"] == 20


def test_camera_info_reports_full_well(server: OurAlpacaServer) -> None:
    cam = AlpacaCamera(host=HOST, port=server.port)
    cam.connect()
    try:
        assert cam.info.full_well_e == pytest.approx(PROFILES["small"].full_well_e)
    finally:
        cam.disconnect()


# ------------------------------------------------------------------------------------------------
# (b) faults through a run


def test_server_killed_during_a_dark_then_restarted(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    """SIGKILL the Alpaca server 1 s into a 2 s dark and start it again on the same port: the
    run reconnects (the fresh server gets the settings and the set-point again, the cooler
    settles again), retakes the frame and ends exact."""
    srv = our_server(tmp_path / "server.log")
    srv.start()
    try:
        config = alpaca_config(tmp_path / "calibd.yaml", srv.port)
        plan = write_plan(tmp_path / "plan.yaml", DARKS_PLAN)
        lib = tmp_path / "lib"
        restarted = threading.Event()
        at_kill: list[int] = []

        def crash_and_restart() -> None:
            time.sleep(1.0)  # into the second dark (the first is on disk)
            at_kill.append(frames_on_disk(lib))
            srv.kill()
            time.sleep(1.0)
            srv.start()
            restarted.set()

        with watch(lambda: frames_on_disk(lib, "Darks") >= 1, crash_and_restart) as watcher:
            res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
        watcher.check()
        assert restarted.is_set()
        assert res.code == 0, res.err + srv.log()
        assert at_kill == [2 + 1], "the kill did not land in the second dark"
        planned = planned_cells(lib)
        assert sum(planned.values()) == DARKS_FRAMES
        assert_library_exact(lib, planned)
        events = journal(lib)
        kinds = [kind for kind, _ in events]
        assert "device-lost" in kinds and "reconnected" in kinds, events
        assert kinds.index("device-lost") < kinds.index("reconnected")
        darks = sorted(h["FRAMESEQ"] for h in headers(lib) if h["IMAGETYP"] == "Dark Frame")
        assert darks == [1, 2, 3]
    finally:
        srv.stop()


def test_server_killed_before_the_panel_flats_then_restarted(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    """The same crash in a plan with panel flats: the camera is reconnected by the sequencer, and
    the wheel and panel on the restarted server must be reconnected too before the flats."""
    srv = our_server(tmp_path / "server.log")
    srv.start()
    try:
        config = alpaca_config(tmp_path / "calibd.yaml", srv.port, accessories_port=srv.port)
        plan = write_plan(tmp_path / "plan.yaml", PLAN)
        lib = tmp_path / "lib"

        def crash_and_restart() -> None:
            time.sleep(0.2)  # into the second 0.5 s dark
            srv.kill()
            time.sleep(1.0)
            srv.start()

        with watch(lambda: frames_on_disk(lib, "Darks") >= 1, crash_and_restart) as watcher:
            res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
        watcher.check()
    finally:
        srv.stop()
    assert res.code == 0, res.err[-2000:]
    assert_library_exact(lib, planned_cells(lib))
    assert run_state(lib)["state"] == "complete"


def test_stalled_image_download_is_timed_out_and_retaken(capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path,
                                                         server: OurAlpacaServer) -> None:
    """A proxy between calibd and the server swallows one image download: the download is given
    up at its deadline (``download_timeout_s``, real seconds) as ExposureTimeout, the frame is
    retaken, and the library ends exact."""
    with stalling_proxy(HOST, server.port) as proxy:
        config = alpaca_config(tmp_path / "calibd.yaml", proxy.port, download_timeout_s=2.0)
        plan = write_plan(tmp_path / "plan.yaml", DARKS_PLAN.replace("exposures_s: [2]",
                                                                     "exposures_s: [0.5]"))
        lib = tmp_path / "lib"

        def stall_one() -> None:
            proxy.mode = "stall-image"

        def one_stalled() -> bool:
            if proxy.stalled >= 1:
                proxy.mode = "pass"
                return True
            return False

        # Stall the download of the frame after the first dark; let everything else through.
        with watch(lambda: frames_on_disk(lib, "Darks") >= 1, stall_one) as stalling, \
                watch(one_stalled, lambda: None) as released:
            started = time.monotonic()
            res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
            elapsed = time.monotonic() - started
        stalling.check()
        released.check()
    assert res.code == 0, res.err
    assert proxy.stalled == 1
    assert_library_exact(lib, planned_cells(lib))
    failed = [m for kind, m in journal(lib) if kind == "exposure-failed"]
    assert len(failed) == 1 and failed[0].startswith("ExposureTimeout"), failed
    assert "download" in failed[0]
    assert elapsed < 60, "the stalled download was not given up at its deadline"


def test_download_timeout_is_in_real_seconds_on_a_scaled_clock(server: OurAlpacaServer) -> None:
    """``download_timeout_s`` bounds a network transfer, so it is real seconds whatever the clock:
    with a clock 1000x fast, 1.5 s still allows a normal download and gives up a stalled one
    after about 1.5 real seconds (not 1.5 ms)."""
    clock = ScaledClock(1000.0)
    with stalling_proxy(HOST, server.port) as proxy:
        cam = AlpacaCamera(host=HOST, port=proxy.port, clock=clock, download_timeout_s=1.5)
        cam.connect()
        try:
            cam.configure(CaptureSettings(gain=100, offset=20))
            assert cam.default_timeout_s(1.0) >= 2.0 + (1.5 + 5.0) * 1000.0 * 0.999
            assert cam.expose(1.0, dark=True).shape == (PROFILES["small"].height,
                                                         PROFILES["small"].width)
            proxy.mode = "stall-image"
            started = time.monotonic()
            with pytest.raises(ExposureTimeout, match="download"):
                cam.expose(1.0, dark=True)
            elapsed = time.monotonic() - started
            assert 1.2 <= elapsed <= 10.0, elapsed
        finally:
            proxy.mode = "pass"
            cam.disconnect()


def test_setting_out_of_the_device_range_is_refused_at_check_time(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, server: OurAlpacaServer) -> None:
    """The gain range comes from the device (GainMin/GainMax over Alpaca): a plan beyond it is
    bad input for ``plan check`` and ``run`` (exit 2, file:line: key: the device's range), and
    nothing is captured."""
    config = alpaca_config(tmp_path / "calibd.yaml", server.port)
    gain_max = PROFILES["small"].gain_max
    text = DARKS_PLAN.replace("gains: [100]\n    setpoints_c: [0]\n    exposures_s",
                              f"gains: [{gain_max + 1}]\n    setpoints_c: [0]\n    exposures_s")
    plan = write_plan(tmp_path / "plan.yaml", text)
    line = text.splitlines().index(f"    gains: [{gain_max + 1}]") + 1
    lib = tmp_path / "lib"
    for args in (("plan", "check", plan), ("run", plan, "--library", lib)):
        res = run_cli(capsys, *args, "--config", config)
        assert res.code == 2, res.out + res.err
        assert f"plan.yaml:{line}: sets[1].gains[0]: gain {gain_max + 1}" in res.err, res.err
        assert f"0..{gain_max}" in res.err
    assert frames_on_disk(lib) == 0


SETPOINT_PLAN = f"""
name: alpaca-setpoint
defaults: {{offset: 20}}
{COOLING}
warmup: {{enabled: false}}
sets:
  - kind: bias
    gains: [100]
    setpoints_c: [-38]
    count: 1
  - kind: dark
    gains: [100]
    setpoints_c: [-45]
    exposures_s: [0.2]
    count: 1
"""


def test_setpoint_the_device_refuses_fails_its_cells_with_the_device_message(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Alpaca has no set-point limits to read, so a set-point below the camera's (-40 °C) passes
    ``plan check`` and is refused by the device (InvalidValue -> SettingRejected) as the ramp
    crosses the limit: its cells fail with the device's message, the others are captured, the
    run ends paused, exit 1 ("not captured: ...")."""
    srv = our_server(tmp_path / "server.log", ambient_c=-39.0)  # the ramp reaches -40 at once
    srv.start()
    try:
        config = alpaca_config(tmp_path / "calibd.yaml", srv.port)
        plan = write_plan(tmp_path / "plan.yaml", SETPOINT_PLAN)
        lib = tmp_path / "lib"
        assert run_cli(capsys, "plan", "check", plan, "--config", config).code == 0
        res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    finally:
        srv.stop()
    assert res.code == 1, res.err
    assert "not captured" in res.err and "outside -40.0..30.0" in res.err, res.err
    run = run_state(lib)
    assert run["state"] == "paused", run
    cells = {c["key"].split("|")[0]: c for c in run["cells"]}
    assert cells["bias"]["state"] == "complete"
    assert cells["dark"]["state"] == "failed" and "outside -40.0..30.0" in cells["dark"]["reason"]


# ------------------------------------------------------------------------------------------------
# (c) interoperability with alpaca-simulators


INTEROP_PLAN = """
name: alpaca-interop
defaults: {offset: 1}
cooling: {tolerance_c: 0.5, dwell_s: 1, poll_s: 0.2, ramp_c_per_min: 60, timeout_s: 60}
warmup: {enabled: false}
sets:
  - kind: bias
    gains: [1]
    setpoints_c: [10]
    count: 3
  - kind: dark
    gains: [1, 2]
    setpoints_c: [10]
    exposures_s: [0.3]
    count: 2
"""
INTEROP_FRAMES = 3 + 2 * 2


def test_run_against_alpaca_simulators(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                       alpaca_simulators: AlpacaSimServer) -> None:
    sim = alpaca_simulators
    config = alpaca_config(tmp_path / "calibd.yaml", sim.port)
    plan = write_plan(tmp_path / "plan.yaml", INTEROP_PLAN)
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 0, res.err + sim.log_tail()
    planned = planned_cells(lib)
    assert sum(planned.values()) == INTEROP_FRAMES
    assert_library_exact(lib, planned)
    for h in headers(lib):
        assert (h["NAXIS1"], h["NAXIS2"]) == (640, 480)
        assert h["INSTRUME"].startswith("calibd test camera")
        # Gains are indices into the device's Gains list ("0", "100", ...), read back from it
        # (alpaca-simulators reads back index + 1: a quirk the driver knows).
        assert h["GAIN"] in (1, 2) and h["OFFSET"] == 1


# ------------------------------------------------------------------------------------------------
# (d) listing and discovery through the CLI


def test_devices_list_and_discover(capsys: pytest.CaptureFixture[str],
                                   server: OurAlpacaServer) -> None:
    listed = run_cli(capsys, "devices", "list", "--driver", "alpaca", "--host", HOST,
                     "--port", str(server.port))
    assert listed.code == 0, listed.err
    for kind in ("camera", "filterwheel", "covercalibrator", "safetymonitor"):
        assert f"alpaca://{HOST}:{server.port}/{kind}/0" in listed.out, listed.out
    found = run_cli(capsys, "devices", "discover", "--address", HOST, "--port",
                    str(server.discovery_port), "--timeout", "2")
    assert found.code == 0, found.err
    assert f"{HOST}:{server.port}" in found.out and "calibd simulator" in found.out, found.out
    assert f"alpaca://{HOST}:{server.port}/camera/0" in found.out
