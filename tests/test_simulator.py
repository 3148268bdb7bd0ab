"""The simulated camera: physics of the sensor and cooler, and the shared camera contract."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np
import pytest

from calibd.drivers.contracts import CaptureSettings
from calibd.simulators.camera import SimFaults
from calibd.simulators.camera import SimulatedCamera
from calibd.simulators.clock import ScaledClock
from calibd.simulators.clock import SteppedClock
from calibd.simulators.cooler import CoolerModel
from calibd.simulators.profiles import PROFILES
from calibd.simulators.profiles import get_profile
from calibd.simulators.sensor import Illumination
from calibd.simulators.sensor import SensorModel
from tests.camera_contract import CameraContract
from tests.camera_contract import ContractTarget
from tests.support import run_cli

SMALL = get_profile("small")


@pytest.fixture
def sensor() -> SensorModel:
    return SensorModel(SMALL, noise_seed=1)


def stack(sensor: SensorModel, n: int, **kw: float | int) -> np.ndarray:
    return np.stack([sensor.frame(**kw).astype(np.float64) for _ in range(n)])  # type: ignore[arg-type]


def test_bias_pedestal_follows_offset(sensor: SensorModel) -> None:
    for offset in (10, 50, 90):
        frame = sensor.frame(exposure_s=SMALL.min_exposure_s, temperature_c=-10, gain=100,
                             offset=offset)
        assert frame.dtype == np.uint16
        assert frame.shape == (SMALL.height, SMALL.width)
        assert np.median(frame) == pytest.approx(offset * SMALL.pedestal_per_offset_adu, abs=2)


def test_read_noise_in_adu_follows_gain(sensor: SensorModel) -> None:
    for gain in (0, 100, 300):
        frames = stack(sensor, 2, exposure_s=SMALL.min_exposure_s, temperature_c=-10, gain=gain,
                       offset=50)
        diff = frames[0] - frames[1]
        measured = np.std(diff) / math.sqrt(2)
        expected = sensor.read_noise_e(gain) / sensor.e_per_adu16(gain)
        assert measured == pytest.approx(expected, rel=0.1), gain
    # Unity gain means one electron per ADU on a 16-bit sensor.
    assert sensor.e_per_adu16(SMALL.unity_gain) == pytest.approx(1.0)
    assert sensor.e_per_adu16(SMALL.unity_gain + 200) == pytest.approx(0.1)


def test_dark_current_linear_in_time_and_doubles_every_six_degrees(sensor: SensorModel) -> None:
    def dark_signal(exposure: float, temp: float) -> float:
        bias = stack(sensor, 8, exposure_s=SMALL.min_exposure_s, temperature_c=temp, gain=100,
                     offset=50).mean(axis=0)
        dark = stack(sensor, 8, exposure_s=exposure, temperature_c=temp, gain=100,
                     offset=50).mean(axis=0)
        # Median over the left half: away from the amp glow.
        return float(np.median((dark - bias)[:, : SMALL.width // 2]))

    d300 = dark_signal(300, 0.0)
    d600 = dark_signal(600, 0.0)
    assert d600 / d300 == pytest.approx(2.0, rel=0.1)
    d600_cold = dark_signal(600, -6.0)
    assert d600 / d600_cold == pytest.approx(2.0, rel=0.15)
    expected = sensor.dark_scale(0.0) * 600 * math.exp(0)  # median of log-normal ~ exp(-s^2/2)
    assert d600 == pytest.approx(expected, rel=0.15)


def test_hot_pixels_glow_and_saturation(sensor: SensorModel) -> None:
    frame = sensor.frame(exposure_s=600, temperature_c=10, gain=100, offset=50).astype(float)
    hot = sensor.hot_pixels_rc()
    assert len(hot) > 50
    hot_values = frame[hot[:, 0], hot[:, 1]]
    assert np.median(hot_values) > np.median(frame) + 100
    # Amp glow: the right edge is brighter than the left edge.
    left = np.median(frame[:, :10])
    right = np.median(frame[:, -3:])
    assert right > left + 20
    # Saturation: a bright light clips at the full well (or 16 bits).
    bright = sensor.frame(exposure_s=100, temperature_c=0, gain=0, offset=50,
                          light=Illumination(flux_e_per_s=1e5))
    fw_adu = SMALL.full_well_e / sensor.e_per_adu16(0)
    assert np.median(bright) == pytest.approx(min(65535, fw_adu + 500), rel=0.01)
    assert bright.max() <= 65535


def test_dead_pixels_show_in_light(sensor: SensorModel) -> None:
    lit = sensor.frame(exposure_s=1, temperature_c=0, gain=100, offset=50,
                       light=Illumination(flux_e_per_s=20000)).astype(float)
    dead = sensor.dead_pixels_rc()
    assert len(dead) > 0
    assert np.all(lit[dead[:, 0], dead[:, 1]] < 0.1 * np.median(lit))


def test_binning_and_14_bit_scaling() -> None:
    small = SensorModel(SMALL, noise_seed=2)
    f2 = small.frame(exposure_s=1, temperature_c=0, gain=100, offset=50, binning=2)
    assert f2.shape == (SMALL.height // 2, SMALL.width // 2)
    p294 = get_profile("asi294mm").with_overrides(width=400, height=300)
    s294 = SensorModel(p294, noise_seed=3)
    f = s294.frame(exposure_s=1, temperature_c=0, gain=120, offset=30)
    assert np.all(f % 4 == 0), "14-bit data is scaled to 16 bits in steps of 4"


COLOUR = get_profile("small-colour")
_CELL = {"R": [(0, 0)], "G": [(0, 1), (1, 0)], "B": [(1, 1)]}  # RGGB, by hand


def test_colour_pixels_see_their_filter_s_share_of_each_light_source() -> None:
    """Each pixel of the mosaic collects the light its colour filter passes: green leads on the
    white-LED panel, blue under the twilight sky; the levels are the profile's stated truth."""
    assert COLOUR.bayer == "RGGB" and (COLOUR.width, COLOUR.height) == (320, 240)
    sensor = SensorModel(COLOUR, noise_seed=4)
    k = 1.0 / sensor.e_per_adu16(100)
    flux, t = 8000.0, 1.0
    levels: dict[str, dict[str, float]] = {}
    for source in ("panel", "sky"):
        frame = sensor.frame(exposure_s=t, temperature_c=-10, gain=100, offset=50,
                             light=Illumination(flux_e_per_s=flux, source=source))
        bias = sensor.pedestal_adu16(50)
        truth = COLOUR.channel_response(source)
        levels[source] = {}
        for colour, cells in _CELL.items():
            for r, c in cells:
                level = float(np.median(frame[r::2, c::2])) - bias
                assert level == pytest.approx(flux * t * truth[colour] * k, rel=0.02), (source,
                                                                                      colour)
                levels[source][colour] = level
    assert max(levels["panel"], key=levels["panel"].__getitem__) == "G"
    assert max(levels["sky"], key=levels["sky"].__getitem__) == "B"
    assert levels["panel"]["G"] > 2.5 * levels["panel"]["R"]  # a green-heavy panel
    # The monochrome sensor is unchanged: every 2x2 position sees the same light.
    mono = SensorModel(SMALL, noise_seed=4).frame(
        exposure_s=t, temperature_c=-10, gain=100, offset=50,
        light=Illumination(flux_e_per_s=flux, source="sky"))
    quads = [float(np.median(mono[r::2, c::2])) for r in (0, 1) for c in (0, 1)]
    assert max(quads) - min(quads) < 0.01 * max(quads)


def test_colour_binning_bins_by_colour_and_keeps_the_mosaic() -> None:
    """Binned 2x2, a colour frame is still an RGGB mosaic: each binned pixel averages pixels of
    its own colour (hot pixels land on their colour), and the light per channel is unchanged."""
    sensor = SensorModel(COLOUR, noise_seed=5)
    b = 2
    full = sensor.dark_rate_map(0.0, binning=1).astype(np.float64)
    h, w = full.shape
    # Independent of the simulator's code: split rows as (block, pixel in block, colour row).
    by_colour = full.reshape(h // (2 * b), b, 2, w // (2 * b), b, 2).mean(axis=(1, 4))
    expected = by_colour.reshape(h // b, w // b)
    assert np.allclose(sensor.dark_rate_map(0.0, binning=b), expected, rtol=1e-4, atol=1e-6)
    light = Illumination(flux_e_per_s=8000.0, source="panel")
    one = sensor.frame(exposure_s=1, temperature_c=-10, gain=100, offset=50, light=light)
    two = sensor.frame(exposure_s=1, temperature_c=-10, gain=100, offset=50, binning=b,
                       light=light)
    assert two.shape == (h // b, w // b)
    for r in (0, 1):
        for c in (0, 1):
            assert float(np.median(two[r::2, c::2])) == pytest.approx(
                float(np.median(one[r::2, c::2])), rel=0.01)
    cam = SimulatedCamera(COLOUR, SteppedClock())
    cam.connect()
    cam.configure(CaptureSettings(gain=100, offset=50, binning=b))
    assert cam.info.bayer_pattern == "RGGB"
    assert cam.expose(1.0, dark=True).bayer_pattern == "RGGB"


def test_colour_profiles_match_the_cameras_they_imitate() -> None:
    big = get_profile("asi2600mc")
    assert (big.width, big.height, big.bayer, big.unity_gain) == (6248, 4176, "RGGB", 100)
    mid = get_profile("asi533mc")
    assert (mid.width, mid.height, mid.bayer, mid.unity_gain) == (3008, 3008, "RGGB", 100)
    assert get_profile("asi2600mm").bayer is None and SMALL.channel_response("sky") == {
        "R": 1.0, "G": 1.0, "B": 1.0}
    with pytest.raises(ValueError, match="bayer"):
        SMALL.with_overrides(bayer="RGBG")
    cam = SimulatedCamera(SMALL, SteppedClock())
    cam.connect()
    assert cam.info.bayer_pattern is None and cam.expose(1.0, dark=True).bayer_pattern is None


def test_frames_are_deterministic_for_a_seed() -> None:
    a = SensorModel(SMALL, noise_seed=7)
    b = SensorModel(SMALL, noise_seed=7)
    fa = [a.frame(exposure_s=60, temperature_c=-10, gain=100, offset=50) for _ in range(2)]
    fb = [b.frame(exposure_s=60, temperature_c=-10, gain=100, offset=50) for _ in range(2)]
    assert np.array_equal(fa[0], fb[0]) and np.array_equal(fa[1], fb[1])
    assert not np.array_equal(fa[0], fa[1])
    # The fixed pattern (hot pixels) is a property of the sensor, not of the noise seed.
    c = SensorModel(SMALL, noise_seed=8)
    assert np.array_equal(a.hot_pixels_rc(), c.hot_pixels_rc())


def test_cooler_first_order_limited_delta_and_power() -> None:
    clock = SteppedClock()
    cooler = CoolerModel(clock, ambient_c=20.0, max_delta_c=35.0, tau_s=40.0)
    assert cooler.temperature_c() == pytest.approx(20.0)
    cooler.set(True, -10.0)
    clock.sleep(40.0)  # one time constant: 63 % of the way
    assert cooler.temperature_c() == pytest.approx(-10 + 30 * math.exp(-1), abs=0.1)
    assert cooler.power_pct() == 100.0
    clock.sleep(600.0)
    assert cooler.temperature_c() == pytest.approx(-10.0, abs=0.05)
    assert cooler.power_pct() == pytest.approx(100 * 30 / 35, abs=1)
    cooler.set(True, -25.0)  # 45 °C below ambient: out of reach
    clock.sleep(2000.0)
    assert cooler.temperature_c() == pytest.approx(-15.0, abs=0.05)
    assert cooler.power_pct() == 100.0
    cooler.set(False, None)
    clock.sleep(2000.0)
    assert cooler.temperature_c() == pytest.approx(20.0, abs=0.05)
    assert cooler.power_pct() == 0.0


def test_scaled_clock_runs_fast() -> None:
    clock = ScaledClock(scale=1000.0)
    t0 = clock.monotonic()
    clock.sleep(100.0)  # 0.1 real seconds
    assert clock.monotonic() - t0 >= 100.0
    assert clock.real_seconds(600.0) == pytest.approx(0.6)


def test_injected_faults_fire_on_schedule() -> None:
    clock = SteppedClock()
    cam = SimulatedCamera(SMALL, clock, faults=SimFaults(fail_every=3))
    cam.connect()
    cam.configure(CaptureSettings(gain=100, offset=50))
    from calibd.drivers.errors import ExposureFailed

    cam.expose(1.0, dark=True)
    cam.expose(1.0, dark=True)
    with pytest.raises(ExposureFailed):
        cam.expose(1.0, dark=True)
    cam.expose(1.0, dark=True)


class TestSimulatorContract(CameraContract):
    @pytest.fixture
    def target(self) -> Iterator[ContractTarget]:
        clock = ScaledClock(scale=200.0)
        cam = SimulatedCamera(SMALL, clock, ambient_c=15.0)
        cam.connect()
        yield ContractTarget(camera=cam, clock=clock, gain=100, offset=50, cool_to_c=-10.0,
                             cool_tolerance_c=0.3, cool_timeout_s=600.0, short_exposure_s=0.5,
                             long_exposure_s=600.0)
        cam.disconnect()


def test_devices_list_names_every_simulator_profile(capsys: pytest.CaptureFixture[str]) -> None:
    """``devices list --driver simulator`` goes through the driver registry like the others."""
    res = run_cli(capsys, "devices", "list", "--driver", "simulator", "--json")
    assert res.code == 0, res.err
    listed = json.loads(res.out)
    assert [d["name"] for d in listed] == [f"profile {name}" for name in PROFILES]
    assert {d["kind"] for d in listed} == {"camera"}


class TestColourSimulatorContract(CameraContract):
    """The contract over a colour sensor in its least common phase: frames carry it, binned too
    (colour binning keeps the mosaic)."""

    @pytest.fixture
    def target(self) -> Iterator[ContractTarget]:
        clock = ScaledClock(scale=200.0)
        cam = SimulatedCamera(COLOUR.with_overrides(bayer="GBRG"), clock, ambient_c=15.0)
        cam.connect()
        yield ContractTarget(camera=cam, clock=clock, gain=100, offset=50, cool_to_c=-10.0,
                             cool_tolerance_c=0.3, cool_timeout_s=600.0, short_exposure_s=0.5,
                             long_exposure_s=600.0, bayer="GBRG", bayer_binned="GBRG")
        cam.disconnect()
