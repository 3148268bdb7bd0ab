"""calibd's INDI driver against INDI doubles of the four real camera driver families
(``indi_asi_ccd``, ``indi_qhy_ccd``, ``indi_toupcam_ccd``, ``indi_playerone_ccd``) running under
the real ``indiserver`` next to Debian's light panel and filter wheel simulators.

The doubles (simulators/indi_doubles) define the real drivers' property sets and make frames
with calibd's sensor physics on a 20x clock, so these tests check both what the protocol
carries (family detection, gain/offset/read-out mode/capture format/cooler set where each driver
keeps them, headers) and the physics (12-bit data, flat levels from the panel's light). One
indiserver serves the whole module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from calibd.drivers.clock import RealClock
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.indi import IndiCamera
from calibd.drivers.indi import IndiFilterWheel
from calibd.drivers.indi._raw import align_msb
from calibd.drivers.indi.families import detect
from calibd.simulators.indi_doubles import base
from calibd.simulators.indi_doubles.camera import double_profile
from calibd.simulators.indi_doubles.families import FAMILIES as DOUBLES
from calibd.simulators.indi_doubles.families import DoubleFamily
from calibd.simulators.sensor import SensorModel
from tests.camera_contract import CameraContract
from tests.camera_contract import ContractTarget
from tests.indi_server import PANEL
from tests.indi_server import WHEEL
from tests.indi_server import IndiTestServer
from tests.indi_server import running_indi_server
from tests.support import assert_library_exact
from tests.support import calibd_subprocess
from tests.support import fits_files
from tests.support import headers
from tests.support import planned_cells
from tests.support import run_cli
from tests.support import run_state
from tests.support import write_plan
from tests.support import write_real_config

pytestmark = [pytest.mark.indi, pytest.mark.timeout(180)]

POLL_MS = 50
SCALE = 20.0
SIZE = (320, 240)
DRIVERS = (*(f.executable for f in DOUBLES.values()), "indi_simulator_lightpanel",
           "indi_simulator_wheel")
EXPECTED_FAMILY = {"asi": "zwo", "qhy": "qhy", "touptek": "touptek", "playerone": "playerone"}
# A non-default read-out mode per family, to see it set and carried into the headers.
READOUT = {"asi": "high-speed", "qhy": "1", "touptek": "GAIN_HIGH", "playerone": "MODE_1"}


@pytest.fixture(scope="module")
def server() -> Iterator[IndiTestServer]:
    with running_indi_server(drivers=DRIVERS, polling_ms=POLL_MS, double_scale=SCALE,
                             double_size=SIZE) as srv:
        yield srv


@pytest.fixture(scope="module", params=sorted(DOUBLES))
def family(request: pytest.FixtureRequest) -> DoubleFamily:
    return DOUBLES[request.param]


@pytest.fixture(scope="module")
def camera(server: IndiTestServer, family: DoubleFamily) -> Iterator[IndiCamera]:
    cam = IndiCamera(host=server.host, port=server.port, device=family.device,
                     polling_ms=POLL_MS, connect_timeout_s=10.0)
    cam.connect()
    yield cam
    cam.disconnect()


def _gain(f: DoubleFamily, step: int = 0) -> int:
    return int(f.gain.lo) + 10 + 20 * step


class TestDoubleContract(CameraContract):
    @pytest.fixture
    def target(self, camera: IndiCamera, family: DoubleFamily) -> ContractTarget:
        camera.connect()
        return ContractTarget(
            camera=camera, clock=RealClock(), gain=_gain(family), offset=int(family.offset.lo) + 5,
            cool_to_c=6.0, cool_tolerance_c=0.5, cool_timeout_s=60.0,
            short_exposure_s=0.1, long_exposure_s=60.0, abort_within_real_s=5.0,
            overlap_exposure_s=1.0 * SCALE,  # the double runs SCALE x faster than RealClock
            bayer=family.bayer, bayer_binned=family.bayer)


# ------------------------------------------------------------------------- what the driver knows


def _defined(f: DoubleFamily) -> dict[str, set[str]]:
    vectors = base.before_connect(f, POLL_MS) + base.after_connect(f, *SIZE, 3.76, 4)
    return {v.name: {e.name for e in v.elements} for v in vectors}


@pytest.mark.parametrize("key", sorted(DOUBLES))
def test_family_is_detected_from_the_properties_not_the_name(key: str) -> None:
    props = _defined(DOUBLES[key])

    def has(vector: str, element: str | None) -> bool:
        return vector in props and (element is None or element in props[vector])

    assert detect(has).name == EXPECTED_FAMILY[key]
    # Without its identifying vectors, the same device is not taken for that family.
    stripped = {k: v for k, v in props.items()
                if k not in ("CCD_VIDEO_FORMAT", "SENSOR_MODE", "CCD_LEVEL_RANGE", "USB_BUFFER")}
    assert detect(lambda v, e: v in stripped and (e is None or e in stripped[v])).name != \
        EXPECTED_FAMILY[key]


def test_properties_are_read_and_set_where_each_driver_keeps_them(
        camera: IndiCamera, family: DoubleFamily, server: IndiTestServer) -> None:
    assert camera.family is not None and camera.family.name == EXPECTED_FAMILY[family.key]
    info = camera.info
    assert info.model == family.model  # the camera model, not the driver's name
    has_adc = family.key != "qhy"  # QHY publishes no ADC depth
    assert info.bit_depth == (family.bit_depth if has_adc else 16)
    assert (info.gain_min, info.gain_max) == (family.gain.lo, family.gain.hi)
    assert (info.offset_min, info.offset_max) == (family.offset.lo, family.offset.hi)
    assert READOUT[family.key] in info.readout_modes
    assert info.bayer_pattern == family.bayer
    props = server.getprop(f"{family.device}.*.*")
    assert props[f"{family.device}.CCD_CAPTURE_FORMAT.{family.raw16}"] == "On"
    assert props[f"{family.device}.CCD_TRANSFER_FORMAT.FORMAT_FITS"] == "On"
    gain, offset = _gain(family, 1), int(family.offset.lo) + 7
    applied = camera.configure(CaptureSettings(gain=gain, offset=offset,
                                               readout_mode=READOUT[family.key]))
    assert (applied.gain, applied.offset, applied.readout_mode) == (
        gain, offset, READOUT[family.key])
    props = server.getprop(f"{family.device}.*.*")
    assert float(props[f"{family.device}.{family.gain.vector}.{family.gain.element}"]) == gain
    assert float(props[f"{family.device}.{family.offset.vector}.{family.offset.element}"]) \
        == offset
    camera.set_cooler(True, 5.0)
    power_at = f"{family.device}.{family.cooler_power[0]}.{family.cooler_power[1]}"
    deadline, steady = time.monotonic() + 20, 0
    while steady < 10 and time.monotonic() < deadline:  # 1 s at the set-point
        near = abs(camera.cooler_state().temperature_c - 5.0) <= 0.2
        steady = steady + 1 if near else 0
        time.sleep(0.1)
    state = camera.cooler_state()
    assert state.on and state.power_pct is not None and state.power_pct > 0
    assert state.power_pct == pytest.approx(float(server.getprop(power_at)[power_at]), abs=2)
    frame = camera.expose(0.2, dark=True)
    assert frame.settings.gain == gain and frame.settings.offset == offset
    if family.bayer:  # the Bayer keywords of the raw mosaic, taken from the image itself
        assert frame.bayer_pattern == family.bayer


def test_a_value_out_of_the_drivers_limits_turns_the_vector_alert(
        camera: IndiCamera, family: DoubleFamily) -> None:
    """As INDI drivers do (IUUpdateNumber): the vector goes Alert with a message, keeps its
    value and reports Ok at once after (sent raw, past calibd's own range check, the way another
    client could)."""
    conn = camera._require()
    before = conn.version()
    conn.send_number(family.device, family.gain.vector, {family.gain.element: family.gain.hi + 1})
    snap = conn.wait_until(
        lambda st: (p if (p := st.prop(family.device, family.gain.vector)) is not None
                    and p.alerted_since(before) and p.state == "Ok" else None), 10.0)
    assert snap is not None
    assert snap.number(family.gain.element) <= family.gain.hi
    message = conn.read(lambda st: st.last_message(family.device)) or ""
    assert f"Valid range is from {family.gain.lo:g} to {family.gain.hi:g}" in message
    camera.configure(CaptureSettings(gain=_gain(family), offset=int(family.offset.lo)))


def test_raw16_of_a_12_bit_double_has_the_simulators_statistics(server: IndiTestServer) -> None:
    """The Touptek double has a 12-bit ADC: values arrive as multiples of 16 on the 16-bit scale,
    and mean and temporal noise equal those of calibd's own sensor model at the same settings
    (so e-/ADU computed from either agree)."""
    f = DOUBLES["touptek"]
    cam = IndiCamera(host=server.host, port=server.port, device=f.device, polling_ms=POLL_MS)
    cam.connect()
    try:
        assert cam.info.bit_depth == 12
        gain, offset = 300, 20
        cam.configure(CaptureSettings(gain=gain, offset=offset, readout_mode="GAIN_LOW"))
        # Short frames: the sensor is still cooling, and hot pixels at two temperatures would
        # add a dark-current difference to the temporal noise.
        frames = [cam.expose(0.01, dark=True) for _ in range(2)]
    finally:
        cam.disconnect()
    got = [fr.data.astype(np.float64) for fr in frames]
    assert all(not np.any(fr.data % 16) for fr in frames)
    temp = float(np.mean([fr.temp_start_c for fr in frames if fr.temp_start_c is not None]))
    model = SensorModel(double_profile(f, *SIZE), noise_seed=99)
    ref = [model.frame(exposure_s=0.01, temperature_c=temp, gain=gain, offset=offset)
           .astype(np.float64) for _ in range(2)]
    assert np.mean(got[0]) == pytest.approx(np.mean(ref[0]), rel=0.02)
    noise_got = np.var(got[0] - got[1]) / 2
    noise_ref = np.var(ref[0] - ref[1]) / 2
    assert noise_got == pytest.approx(noise_ref, rel=0.15)
    # The e-/ADU the model gives for the 16-bit scale turns both into the same electrons.
    e_per_adu = model.e_per_adu16(gain)
    assert (np.mean(got[0]) - np.mean(ref[0])) * e_per_adu == pytest.approx(0, abs=20 * e_per_adu)


def test_native_lsb_aligned_data_is_shifted_to_the_16_bit_scale() -> None:
    """A driver that sends 12-bit values unshifted gets them shifted up by 4 (and data that is
    already MSB-aligned, or that uses the upper bits, is left alone)."""
    rng = np.random.default_rng(1)
    native = rng.integers(100, 4000, size=(40, 50), dtype=np.uint16)
    shifted, shift = align_msb(native, 12)
    assert shift == 4 and np.array_equal(shifted, native << 4)
    same, shift = align_msb(native << 4, 12)
    assert shift == 0 and np.array_equal(same, native << 4)
    wide = native.copy()
    wide[0, 0] = 40001
    assert align_msb(wide, 12)[1] == 0
    assert align_msb(native, 16)[1] == 0


# ------------------------------------------------------------------------- end to end


def test_the_client_librarys_own_lines_go_to_the_log_not_the_console(
        server: IndiTestServer) -> None:
    """libindiclient prints "INDI::BaseClient::connectServer: creating new connection..." to
    the process's descriptors; a real calibd process shows none of it, unless asked for debug
    logs, where it arrives as a log record."""
    args = ("devices", "list", "--driver", "indi", "--host", server.host,
            "--port", str(server.port), "--timeout", "10")
    done = calibd_subprocess(*args, timeout=60)
    assert done.returncode == 0, done.stderr
    assert DOUBLES["asi"].device in done.stdout
    assert "INDI::BaseClient" not in done.stdout + done.stderr
    verbose = calibd_subprocess("-v", *args, timeout=60)
    assert verbose.returncode == 0, verbose.stderr
    assert any("INDI client: INDI::BaseClient::connectServer" in line
               for line in (verbose.stdout + verbose.stderr).splitlines())


PLAN = """
name: indi-{key}
defaults: {{offset: {offset}, readout_mode: "{mode}"}}
cooling: {{tolerance_c: 0.5, dwell_s: 1, poll_s: 0.2, ramp_c_per_min: 60, timeout_s: 90,
          max_power_pct: 90}}
warmup: {{enabled: false}}
sets:
  - kind: bias
    gains: [{g1}, {g2}]
    setpoints_c: [8, 6]
    count: 2
  - kind: dark
    gains: [{g1}, {g2}]
    setpoints_c: [8, 6]
    exposures_s: [2]
    count: 2
"""
PLAN_FRAMES = 2 * 2 * 2 + 2 * 2 * 2


def _config(path: Path, srv: IndiTestServer, device: str, offset: int, **extra: object) -> Path:
    return write_real_config(path, {
        "driver": "indi", "host": srv.host, "port": srv.port, "device": device,
        "polling_ms": POLL_MS, "connect_timeout_s": 10.0, "offset": offset}, **extra)


def test_bias_and_darks_at_two_gains_and_two_setpoints(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, server: IndiTestServer,
        family: DoubleFamily) -> None:
    offset, mode = int(family.offset.lo) + 6, READOUT[family.key]
    g1, g2 = _gain(family, 0), _gain(family, 2)
    config = _config(tmp_path / "calibd.yaml", server, family.device, offset)
    plan = write_plan(tmp_path / "plan.yaml", PLAN.format(
        key=family.key, offset=offset, mode=mode, g1=g1, g2=g2))
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 0, res.err
    planned = planned_cells(lib)
    assert sum(planned.values()) == PLAN_FRAMES and len(planned) == 8
    assert_library_exact(lib, planned)
    assert run_state(lib)["state"] == "complete"
    props = server.getprop(f"{family.device}.*.*")
    assert float(props[f"{family.device}.{family.offset.vector}.{family.offset.element}"]) \
        == offset
    for h in headers(lib):
        assert h["GAIN"] in (g1, g2) and h["OFFSET"] == offset
        assert h["READOUTM"] == mode
        assert h["INSTRUME"] == family.model
        assert 0.0 <= h["COOLPWR"] <= 90.0
        assert abs(h["CCD-TEMP"] - h["SET-TEMP"]) <= 0.5
        assert h["BITDEPTH"] == (16 if family.key == "qhy" else family.bit_depth)
        assert ("BAYERPAT" in h) == bool(family.bayer)
        assert h["INDIDEV"] == family.device
    assert {h["GAIN"] for h in headers(lib)} == {g1, g2}


PANEL_PLAN = """
name: indi-panel-flats
defaults: {{offset: 10}}
cooling: {{tolerance_c: 0.5, dwell_s: 1, poll_s: 0.2, ramp_c_per_min: 60, timeout_s: 90}}
warmup: {{enabled: false}}
sets:
  - kind: flat
    source: panel
    gains: [120]
    setpoints_c: [0]
    filters: [{filter}]
    count: 3
    target_adu: {target}
    tolerance_pct: {tol}
    min_exposure_s: 0.01
    max_exposure_s: 20
    panel: {{mode: exposure, brightness: 40}}
    dark_flats: {{count: 2}}
"""
TARGET_ADU, TOLERANCE_PCT = 20000.0, 10.0


def test_panel_flats_and_dark_flats_over_indi(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path, server: IndiTestServer) -> None:
    """The ZWO double sees the INDI light panel simulator's light (by snooping it): the flat
    exposure search lands on the target, and the dark flats, taken with the panel off, are dark."""
    f = DOUBLES["asi"]
    wheel = IndiFilterWheel(host=server.host, port=server.port, device=WHEEL)
    wheel.connect()
    first = wheel.names[0]
    wheel.disconnect()
    config = _config(tmp_path / "calibd.yaml", server, f.device, 10,
                     wheel={"driver": "indi", "host": server.host, "port": server.port,
                            "device": WHEEL},
                     panel={"driver": "indi", "host": server.host, "port": server.port,
                            "device": PANEL})
    plan = write_plan(tmp_path / "plan.yaml", PANEL_PLAN.format(
        filter=first, target=TARGET_ADU, tol=TOLERANCE_PCT))
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 0, res.err
    planned = planned_cells(lib)
    assert_library_exact(lib, planned)
    assert run_state(lib)["state"] == "complete"
    by_kind: dict[str, list[fits.Header]] = {}
    for h in headers(lib):
        by_kind.setdefault("darkflat" if h.get("CALTYPE") == "DARKFLAT" else
                           h["IMAGETYP"], []).append(h)
    flats = by_kind["Flat Frame"]
    assert len(flats) == 3 and len(by_kind["darkflat"]) == 2
    tol = TARGET_ADU * TOLERANCE_PCT / 100
    for path in fits_files(lib):
        h = fits.getheader(path)
        level = float(np.median(fits.getdata(path)))
        if h["IMAGETYP"] == "Flat Frame":
            assert abs(level - TARGET_ADU) <= 1.5 * tol, level
        else:
            assert level < 2000, level  # the panel is off for dark flats
    assert {h["EXPTIME"] for h in by_kind["darkflat"]} == {h["EXPTIME"] for h in flats}
