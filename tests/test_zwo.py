"""The ZWO ASI driver through unmodified zwoasi, against the C double of the ASI SDK.

Fixtures (tests/zwo_fixtures.py, a pytest plugin) build the double with gcc and load it once per
session. The double and the test clock run at TIME_SCALE simulated seconds per real second; fault
deadlines are real seconds.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from calibd.drivers import zwo
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import Frame
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import ExposureTimeout
from calibd.drivers.errors import SettingRejected
from calibd.drivers.zwo import NO_CAMERAS_MESSAGE
from calibd.drivers.zwo import ZwoCamera
from calibd.drivers.zwo import sdk as zwo_sdk
from calibd.simulators.asi_sdk import AsiDouble
from calibd.simulators.asi_sdk import AsiDoubleError
from calibd.simulators.asi_sdk import build_double
from calibd.simulators.asi_sdk import find_compiler
from calibd.simulators.clock import ScaledClock
from tests.camera_contract import CameraContract
from tests.camera_contract import ContractTarget
from tests.camera_contract import expose_in_background
from tests.support import skip_or_fail
from tests.support import wait_until
from tests.zwo_fixtures import TIME_SCALE
from tests.zwo_fixtures import CameraFactory

pytest_plugins = ("tests.zwo_fixtures",)
pytestmark = pytest.mark.zwo
REPO = Path(__file__).resolve().parents[1]
SERIAL0 = b"DBL00001".hex().upper()  # the double's first camera
SERIAL1 = b"DBL00002".hex().upper()
FAST = 1000.0  # time scale for tests that only need long simulated waits


def _online(cam: ZwoCamera) -> bool:
    return cam.connected


def _connected(zwo_camera: CameraFactory, **kwargs: object) -> ZwoCamera:
    cam = zwo_camera(**kwargs)
    cam.connect()
    return cam


# ------------------------------------------------------------------------------------------------
# The shared contract suite


class TestZwoContract(CameraContract):
    @pytest.fixture
    def target(
        self, zwo_double: AsiDouble, zwo_camera: CameraFactory, zwo_clock: ScaledClock
    ) -> ContractTarget:
        cam = _connected(zwo_camera)
        return ContractTarget(
            camera=cam,
            clock=zwo_clock,
            gain=100,
            offset=30,
            cool_to_c=-10.0,
            cool_tolerance_c=0.5,
            cool_timeout_s=900.0,  # clock seconds = 9 s real
            short_exposure_s=0.1,
            long_exposure_s=600.0,  # 6 s real: long enough to abort in the middle
            abort_within_real_s=5.0,
        )


# ------------------------------------------------------------------------------------------------
# The double itself


def test_double_abi_matches_zwoasi(zwo_double: AsiDouble) -> None:
    import zwoasi

    assert zwo_double.sizeof("camera_info") == ctypes.sizeof(zwoasi._ASI_CAMERA_INFO)
    assert zwo_double.sizeof("control_caps") == ctypes.sizeof(zwoasi._ASI_CONTROL_CAPS)
    assert zwo_double.sizeof("id") == ctypes.sizeof(zwoasi._ASI_ID)
    assert zwo_double.sizeof("long") == ctypes.sizeof(ctypes.c_long)
    # zwoasi.init bound every function it knows; the library in use is the zwo_double.
    assert zwoasi.zwolib is not None
    assert "double" in (zwo.sdk_version() or "")


def test_double_rejects_bad_configuration(zwo_double: AsiDouble) -> None:
    with pytest.raises(AsiDoubleError, match="unknown key"):
        zwo_double.configure(bogus=1)
    with pytest.raises(AsiDoubleError, match="fail_every"):
        zwo_double.configure(fail_every=-2)
    zwo_double.reset(model="ASI2600MM Pro", cameras=2)
    assert zwo_double.stat("cameras_present") == 2


def test_build_is_cached(tmp_path: Path) -> None:
    if find_compiler() is None:
        skip_or_fail("zwo", "gcc not found: cannot build the ASI SDK double")
    started = time.perf_counter()
    first = build_double(tmp_path)
    built = time.perf_counter() - started
    started = time.perf_counter()
    again = build_double(tmp_path)
    cached = time.perf_counter() - started
    assert first == again and first.is_file()
    assert cached < built


# ------------------------------------------------------------------------------------------------
# Identity and listing


def test_list_devices_names_cameras_by_serial(zwo_double: AsiDouble) -> None:
    zwo_double.reset(time_scale=TIME_SCALE, cameras=2, model="ASI2600MM Pro")
    listings = zwo.list_devices(timeout_s=5.0)
    assert [d.name for d in listings] == [SERIAL0, SERIAL1]
    assert all(d.kind == "camera" for d in listings)
    assert "ZWO ASI2600MM Pro" in listings[0].details and "cooled" in listings[0].details
    assert zwo_double.stat("open", 0) == 0 and zwo_double.stat("open", 1) == 0  # closed again


def test_list_devices_empty(zwo_double: AsiDouble) -> None:
    zwo_double.reset(cameras=0)
    assert zwo.list_devices(timeout_s=5.0) == []


@pytest.mark.parametrize(("config", "expected"), [("cameras=2", 2), ("cameras=0", 0)])
def test_cli_lists_or_says_none(asi_double_path: Path, config: str, expected: int) -> None:
    """``python -m calibd.drivers.zwo list`` in a fresh process (the CLI's ``devices list``
    prints the same): one line per camera, or the plain message when none is connected. The
    subprocess's double is set up through $ASI_DOUBLE_CONFIG."""
    env = {**os.environ, "ZWO_ASI_LIB": str(asi_double_path), "ASI_DOUBLE_CONFIG": config}
    done = subprocess.run(
        [sys.executable, "-m", "calibd.drivers.zwo", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    if expected == 0:
        assert lines == [NO_CAMERAS_MESSAGE]
    else:
        assert [line.split("\t")[0] for line in lines] == [SERIAL0, SERIAL1]


def test_connect_by_serial_or_asi_id_never_index(
    zwo_double: AsiDouble, zwo_camera: CameraFactory
) -> None:
    zwo_double.reset(time_scale=TIME_SCALE, cameras=3)
    zwo_double.configure(target=2, asi_id="ROOF")
    # Without an id the driver sees three cameras and refuses to guess.
    with pytest.raises(DeviceUnavailable, match="camera_id"):
        zwo_camera().connect()
    with pytest.raises(DeviceUnavailable, match="not found"):
        zwo_camera(camera_id="0123456789ABCDEF").connect()
    cam = _connected(zwo_camera, camera_id=SERIAL1.lower())
    assert cam.info.camera_id == SERIAL1
    assert zwo_double.stat("open", 1) == 1 and zwo_double.stat("open", 0) == 0
    other = _connected(zwo_camera, camera_id="roof")
    assert other.info.camera_id == b"DBL00003".hex().upper()
    # Cameras open in this process are skipped: the only free one is taken without an id.
    last = _connected(zwo_camera)
    assert last.info.camera_id == SERIAL0
    assert {cam.expose(1.0, dark=True).shape for cam in (cam, other, last)} == {(480, 640)}


def test_configured_through_the_device_registry(
    zwo_double: AsiDouble, asi_double_path: Path, zwo_clock: ScaledClock
) -> None:
    """``driver: zwo`` in a configuration reaches this driver through capture.devices."""
    from calibd.capture.config import Config
    from calibd.capture.devices import make_camera

    cfg = Config.model_validate(
        {
            "cameras": {
                "main": {
                    "driver": "zwo",
                    "camera_id": SERIAL0,
                    "sdk_path": str(asi_double_path),
                    "usb_bandwidth": 90,
                }
            }
        }
    )
    cam = make_camera("main", cfg.cameras["main"], zwo_clock)
    assert isinstance(cam, ZwoCamera)
    try:
        cam.connect()
        assert cam.info.camera_id == SERIAL0
        assert cam.expose(1.0, dark=True).extra_header["USBLIMIT"] == 90
    finally:
        cam.disconnect()


def test_model_filter(zwo_double: AsiDouble, zwo_camera: CameraFactory) -> None:
    cam = _connected(zwo_camera, model="ASI640MM Pro (double)")
    assert cam.info.model == "ZWO ASI640MM Pro (double)"
    with pytest.raises(DeviceUnavailable, match="model"):
        zwo_camera(model="ASI6200MM Pro").connect()


def test_no_camera_connected(zwo_double: AsiDouble, zwo_camera: CameraFactory) -> None:
    zwo_double.reset(cameras=0)
    cam = zwo_camera()
    with pytest.raises(DeviceUnavailable, match="not found"):
        cam.connect()
    assert not cam.connected


# ------------------------------------------------------------------------------------------------
# Settings, frames and physics


def test_info_and_frame_metadata(zwo_double: AsiDouble, zwo_camera: CameraFactory) -> None:
    cam = _connected(zwo_camera, usb_bandwidth=80, high_speed=True)
    info = cam.info
    assert (info.width, info.height, info.bit_depth) == (640, 480, 16)
    assert (info.gain_min, info.gain_max, info.offset_min, info.offset_max) == (0, 450, 0, 100)
    assert info.binnings == (1, 2, 4)
    assert info.unity_gain == 100
    assert info.has_cooler and not info.has_shutter
    assert (info.min_setpoint_c, info.max_setpoint_c) == (-40.0, 30.0)
    assert info.min_exposure_s == pytest.approx(32e-6)
    applied = cam.configure(CaptureSettings(gain=100, offset=30, binning=4))
    assert applied == CaptureSettings(gain=100, offset=30, binning=4)
    frame = cam.expose(1.0, dark=True)
    assert frame.shape == (120, 160)
    assert frame.extra_header["USBLIMIT"] == 80
    assert frame.extra_header["HISPEED"] is True
    assert frame.electrons_per_adu == pytest.approx(1.0, rel=1e-6)  # unity gain, 16-bit
    assert frame.temp_start_c == pytest.approx(20.0, abs=0.1)
    assert frame.setpoint_c is None  # cooler off
    assert frame.readout_s >= 0.0


def test_bad_connect_options_are_rejected(zwo_double: AsiDouble, zwo_camera: CameraFactory) -> None:
    with pytest.raises(SettingRejected, match="usb_bandwidth"):
        zwo_camera(usb_bandwidth=20).connect()


def test_bias_dark_and_flat_levels(zwo_double: AsiDouble, zwo_camera: CameraFactory) -> None:
    """Frames follow the sensor model: pedestal = offset x 10, dark current grows with exposure
    and temperature, panel light scales with e-/ADU (gain)."""
    zwo_double.reset(time_scale=FAST, panel_flux=2000.0, glow=0.0, cosmic_rate=0.0)
    cam = _connected(zwo_camera, clock=ScaledClock(FAST))
    cam.configure(CaptureSettings(gain=100, offset=30))
    bias = cam.expose(cam.info.min_exposure_s, dark=True).data.astype(np.float64)
    assert np.median(bias) == pytest.approx(300.0, abs=2.0)
    assert 1.0 < bias.std() < 6.0  # read noise ~1.3 e- plus ~1.5 ADU column pattern
    dark = cam.expose(300.0, dark=True).data.astype(np.float64)  # 20 °C: ~0.2 e-/s
    assert np.median(dark) - np.median(bias) == pytest.approx(60.0, rel=0.25)
    hot = dark > np.median(dark) + 500
    assert 10 < hot.sum() < 200  # ~2e-4 of 307k pixels
    flat = cam.expose(1.0, dark=False).data.astype(np.float64)
    assert np.median(flat) - 300 == pytest.approx(2000 * 0.95, rel=0.05)  # vignetting ~5 %
    cam.configure(CaptureSettings(gain=160, offset=30))  # 10^(60/200) ~ 2x the ADU per e-
    flat2 = cam.expose(1.0, dark=False).data.astype(np.float64)
    ratio = (np.median(flat2) - 300) / (np.median(flat) - 300)
    assert ratio == pytest.approx(10 ** (60 / 200), rel=0.03)


def test_roi_is_rounded_as_the_sdk_requires(
    zwo_double: AsiDouble, zwo_camera: CameraFactory
) -> None:
    zwo_double.reset(time_scale=TIME_SCALE, width=650, height=491, bins="1,2,3")
    cam = _connected(zwo_camera)
    assert cam.expose(0.01, dark=True).shape == (490, 648)
    cam.configure(CaptureSettings(gain=0, offset=10, binning=3))
    assert cam.expose(0.01, dark=True).shape == (162, 216)  # 216 = 650 // 3 rounded to 8


def test_cooler_follows_first_order_dynamics(
    zwo_double: AsiDouble, zwo_camera: CameraFactory
) -> None:
    zwo_double.configure(time_scale=FAST)
    clock = ScaledClock(FAST)
    cam = _connected(zwo_camera, clock=clock)
    cam.set_cooler(True, -5.0)
    t0 = clock.monotonic()
    state = cam.cooler_state()
    assert state.on and state.setpoint_c == -5.0
    assert state.power_pct == 100.0  # pulling down hard
    clock.sleep(40.0)  # one time constant
    state = cam.cooler_state()
    elapsed = clock.monotonic() - t0
    expected = -5.0 + 25.0 * np.exp(-elapsed / 40.0)
    assert state.temperature_c == pytest.approx(expected, abs=1.0)
    clock.sleep(400.0)
    state = cam.cooler_state()
    assert state.temperature_c == pytest.approx(-5.0, abs=0.2)
    assert state.power_pct == pytest.approx(100 * 25 / 35, abs=2)  # holding cost
    with pytest.raises(SettingRejected):
        cam.set_cooler(True, -60.0)
    cam.set_cooler(False)
    assert not cam.cooler_state().on


# ------------------------------------------------------------------------------------------------
# Faults


def test_fail_every_n_exposures(zwo_double: AsiDouble, zwo_camera: CameraFactory) -> None:
    cam = _connected(zwo_camera)
    zwo_double.configure(fail_every=3)
    cam.expose(0.1, dark=True)
    cam.expose(0.1, dark=True)
    with pytest.raises(ExposureFailed, match="failed"):
        cam.expose(0.1, dark=True)
    assert cam.connected
    frame = cam.expose(0.1, dark=True)
    assert frame.data.size == 640 * 480
    assert zwo_double.stat("exposures") == 4
    assert zwo_double.stat("failed") == 1
    assert zwo_double.stat("downloads") == 3


def test_removed_camera_is_found_again_by_id(
    zwo_double: AsiDouble, zwo_camera: CameraFactory
) -> None:
    cam = _connected(zwo_camera)
    cam.configure(CaptureSettings(gain=200, offset=40, binning=2))
    cam.set_cooler(True, -10.0)
    old_handle = zwo_double.stat("id")
    zwo_double.configure(remove_after=4)  # gone in the middle of the next expose()
    with pytest.raises(DeviceUnavailable):
        cam.expose(5.0, dark=True)
    assert not _online(cam)
    with pytest.raises(DeviceUnavailable, match="not found"):
        cam.connect()  # still unplugged
    zwo_double.configure(reattach=1)
    assert zwo_double.stat("id") != old_handle  # re-enumerated with a new SDK handle
    cam.connect()
    assert cam.connected and cam.info.camera_id == SERIAL0
    frame = cam.expose(5.0, dark=True)  # the frame is retaken with the settings restored
    assert frame.settings == CaptureSettings(gain=200, offset=40, binning=2)
    assert frame.shape == (240, 320)
    state = cam.cooler_state()
    assert state.on and state.setpoint_c == -10.0
    assert zwo_double.stat("downloads") == 1


def test_camera_removed_during_long_exposure(
    zwo_double: AsiDouble, zwo_camera: CameraFactory
) -> None:
    cam = _connected(zwo_camera)
    running = expose_in_background(cam, 1000.0)  # 10 s real
    started = time.monotonic()
    zwo_double.configure(remove=1)
    running.thread.join(5.0)
    assert not running.thread.is_alive()
    assert time.monotonic() - started < 3.0  # polled at least every 2 s
    assert running.errors and isinstance(running.errors[0], DeviceUnavailable)


def test_hang_in_stop_during_abort(zwo_double: AsiDouble, zwo_camera: CameraFactory) -> None:
    """ASIStopExposure blocks 3 s: abort returns DeviceUnavailable within the call deadline, the
    process keeps working, and the camera is found again once the stuck call has returned."""
    cam = _connected(zwo_camera, call_timeout_s=0.5)
    zwo_double.configure(hang_stop_s=3.0)
    errors: list[BaseException] = []
    ended = threading.Event()

    def run() -> None:
        try:
            cam.expose(600.0, dark=True)
        except BaseException as err:
            errors.append(err)
        ended.set()

    threading.Thread(target=run, daemon=True).start()
    time.sleep(0.3)
    started = time.monotonic()
    cam.abort()
    assert ended.wait(2.0), "expose() did not return within its deadline"
    assert time.monotonic() - started < 1.5
    assert errors and isinstance(errors[0], DeviceUnavailable)
    assert "did not return" in str(errors[0])
    assert not cam.connected
    # The daemon keeps working while the SDK call is stuck: listing answers at once.
    t = time.monotonic()
    listings = zwo.list_devices(timeout_s=5.0)
    assert time.monotonic() - t < 1.0
    assert "busy" in listings[0].details
    with pytest.raises(DeviceUnavailable, match="blocked"):
        cam.connect()  # refused quickly, no second thread sent into the stuck camera
    assert zwo_double.stat("hangs_active") == 1
    assert wait_until(lambda: zwo_double.stat("hangs_active") == 0, 5.0)
    assert wait_until(lambda: _try_connect(cam), 2.0)
    assert cam.expose(0.1, dark=True).data.size > 0


def _try_connect(cam: ZwoCamera) -> bool:
    try:
        cam.connect()
    except DeviceUnavailable:
        return False
    return True


def test_exposure_that_never_ends_times_out(
    zwo_double: AsiDouble, zwo_camera: CameraFactory
) -> None:
    cam = _connected(zwo_camera, call_timeout_s=0.5)
    zwo_double.configure(stall_next=1)
    started = time.monotonic()
    with pytest.raises(ExposureTimeout):
        cam.expose(10.0, dark=True)  # 0.1 s real; deadline 2 x 0.1 + 0.5 + download
    assert time.monotonic() - started < 2.0
    assert cam.connected
    assert zwo_double.stat("stopped") == 1
    assert cam.expose(10.0, dark=True).data.size > 0


def test_hang_in_stop_after_timeout(zwo_double: AsiDouble, zwo_camera: CameraFactory) -> None:
    cam = _connected(zwo_camera, call_timeout_s=0.5)
    zwo_double.configure(stall_next=1, hang_stop_s=2.0)
    started = time.monotonic()
    with pytest.raises(DeviceUnavailable, match="ASIStopExposure"):
        cam.expose(10.0, dark=True)
    assert time.monotonic() - started < 2.0  # deadline (~0.7 s) + stop call deadline (0.5 s)
    assert wait_until(lambda: _try_connect(cam), 5.0)
    assert cam.expose(10.0, dark=True).data.size > 0


@pytest.mark.parametrize("fault", ["hang_data_s", "hang_status_s"])
def test_hang_in_download_or_status(
    zwo_double: AsiDouble, zwo_camera: CameraFactory, fault: str
) -> None:
    cam = _connected(zwo_camera, call_timeout_s=0.5)
    zwo_double.configure(**{fault: 2.0})
    started = time.monotonic()
    with pytest.raises(DeviceUnavailable, match="did not return"):
        cam.expose(10.0, dark=True)
    assert time.monotonic() - started < 2.0
    assert wait_until(lambda: _try_connect(cam), 5.0)
    frame = cam.expose(10.0, dark=True)
    assert frame.data.size > 0


def test_faulty_run_loses_and_duplicates_nothing(
    zwo_double: AsiDouble, zwo_camera: CameraFactory
) -> None:
    """A retry loop as the sequencer runs it (retake on ExposureFailed, reconnect on
    DeviceUnavailable) under every fault: exactly the wanted frames, each one distinct."""
    cam = _connected(zwo_camera, call_timeout_s=0.5)
    cam.configure(CaptureSettings(gain=100, offset=30))
    zwo_double.configure(fail_every=4)
    wanted, attempts = 10, 0
    frames: list[Frame] = []
    faults: dict[int, dict[str, object]] = {
        2: {"remove_after": 3},
        5: {"hang_data_s": 2.0},
        7: {"stall_next": 1},
    }
    while len(frames) < wanted:
        attempts += 1
        assert attempts < 60, "retry loop does not converge"
        if len(frames) in faults:
            zwo_double.configure(**faults.pop(len(frames)))
        try:
            if not cam.connected:
                if zwo_double.stat("present") == 0:
                    zwo_double.configure(reattach=1)  # the user re-plugs the camera
                cam.connect()
            frames.append(cam.expose(10.0, dark=True))
        except ExposureFailed:
            continue
        except DeviceUnavailable:
            time.sleep(0.2)
            continue
    digests = {hashlib.sha256(f.data.tobytes()).hexdigest() for f in frames}
    assert len(frames) == wanted and len(digests) == wanted
    assert all(f.settings.gain == 100 and f.shape == (480, 640) for f in frames)
    # The hung download delivered its image to an abandoned buffer, never to a returned frame.
    assert wait_until(lambda: zwo_double.stat("hangs_active") == 0, 5.0)
    assert zwo_double.stat("downloads") == wanted + 1
    assert zwo_double.stat("removed") == 1 and zwo_double.stat("stopped") == 1


# ------------------------------------------------------------------------------------------------
# Finding the SDK


def test_sdk_search_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lib = tmp_path / "libASICamera2.so"
    lib.write_bytes(b"")
    for var in zwo.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    assert zwo.find_sdk(str(lib)).source == "configured sdk_path"
    with pytest.raises(DeviceUnavailable, match="does not exist"):
        zwo.find_sdk(str(tmp_path / "missing.so"))
    monkeypatch.setenv("CALIBD_ZWO_SDK", str(lib))
    assert zwo.find_sdk().source == "$CALIBD_ZWO_SDK"
    monkeypatch.setenv("ZWO_ASI_LIB", str(tmp_path / "nope.so"))
    with pytest.raises(DeviceUnavailable, match="ZWO_ASI_LIB"):
        zwo.find_sdk()
    monkeypatch.delenv("ZWO_ASI_LIB")
    monkeypatch.delenv("CALIBD_ZWO_SDK")
    monkeypatch.setattr(zwo_sdk, "_system_library", lambda: None)
    monkeypatch.setattr(zwo_sdk, "_pyzwoasi_library", lambda: None)
    with pytest.raises(DeviceUnavailable, match="pip install --no-deps pyzwoasi"):
        zwo.find_sdk()


def _fake_pyzwoasi(site: Path, library: Path) -> None:
    """An installed-looking pyzwoasi (dist-info + bundled library) without its Python code."""
    rel = "pyzwoasi/lib/Linux/x64/libASICamera2.so.1.41"
    (site / rel).parent.mkdir(parents=True)
    shutil.copyfile(library, site / rel)
    info = site / "pyzwoasi-0.2.7.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pyzwoasi\nVersion: 0.2.7\n")
    (info / "RECORD").write_text(f"{rel},,\npyzwoasi-0.2.7.dist-info/METADATA,,\n")


def test_sdk_found_in_pyzwoasi_without_importing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, asi_double_path: Path
) -> None:
    if zwo_sdk._arch_dirs()[0] != "x64":
        pytest.skip("fake pyzwoasi layout written for x86-64")
    _fake_pyzwoasi(tmp_path, asi_double_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for var in zwo.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(zwo_sdk, "_system_library", lambda: None)
    found = zwo.find_sdk()
    assert found.source.startswith("pyzwoasi 0.2.7")
    assert Path(found.path).name == "libASICamera2.so.1.41"
    assert "pyzwoasi" not in sys.modules


def test_cli_discovers_pyzwoasi_copy(asi_double_path: Path, tmp_path: Path) -> None:
    """No path and no variable: a fresh process finds the library a pyzwoasi install ships."""
    if zwo_sdk._arch_dirs()[0] != "x64":
        pytest.skip("fake pyzwoasi layout written for x86-64")
    if zwo_sdk._system_library() is not None:
        pytest.skip("a system libASICamera2 is installed and takes precedence")
    _fake_pyzwoasi(tmp_path, asi_double_path)
    env = {k: v for k, v in os.environ.items() if k not in zwo.ENV_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    which = subprocess.run(
        [sys.executable, "-m", "calibd.drivers.zwo", "which"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert which.returncode == 0, which.stderr
    assert "pyzwoasi 0.2.7" in which.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "calibd.drivers.zwo", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert listed.returncode == 0 and listed.stdout.startswith(SERIAL0), listed.stderr


def test_second_library_is_refused(asi_double: AsiDouble, tmp_path: Path) -> None:
    other = tmp_path / "libASICamera2.so"
    shutil.copyfile(asi_double.path, other)
    with pytest.raises(DeviceUnavailable, match="already loaded"):
        zwo.load_sdk(str(other))


def _real_sdk(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """How to reach the real SDK: ($CALIBD_REAL_ASI_SDK = a .so, or a pyzwoasi wheel), else an
    installed pyzwoasi. Returns extra CLI args and environment."""
    env = {k: v for k, v in os.environ.items() if k not in zwo.ENV_VARS}
    env["PYTHONPATH"] = str(REPO)
    given = os.environ.get("CALIBD_REAL_ASI_SDK")
    if given:
        path = Path(given)
        if not path.exists():
            skip_or_fail("zwo", f"CALIBD_REAL_ASI_SDK={given} does not exist")
        if path.suffix == ".whl":  # "install" the wheel by unpacking it: discovery finds it
            with zipfile.ZipFile(path) as wheel:
                wheel.extractall(tmp_path / "site")
            env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), str(REPO)])
            return [], env
        return ["--sdk", str(path)], env
    if zwo_sdk._pyzwoasi_library() is not None:
        return [], env
    skip_or_fail(
        "zwo",
        "real ASI SDK not available: set CALIBD_REAL_ASI_SDK to libASICamera2.so or a pyzwoasi "
        "wheel (pip download pyzwoasi==0.2.7 --no-deps), or pip install --no-deps pyzwoasi"
    )


def test_real_sdk_without_camera_says_none_quickly(tmp_path: Path) -> None:
    args, env = _real_sdk(tmp_path)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "calibd.drivers.zwo", "list", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == NO_CAMERAS_MESSAGE, done.stdout
    assert elapsed < 10.0
    which = subprocess.run(
        [sys.executable, "-m", "calibd.drivers.zwo", "which", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert which.returncode == 0 and "double" not in which.stdout, which.stdout
