"""Stars in the simulated twilight sky, and the rejection that keeps them out of a master flat.

The simulated observatory (camera, mount, dome, twilight sky with :class:`StarField` stars) takes
sky flats at the flat spot (alt 75°, opposite the sun) three ways: tracking off (stars trail and
drift between frames), tracking on with a ≥10′ offset between frames (stars move), and tracking
on without offsets (stars stay put). The frames are dark-subtracted, scaled to their median and
combined with the rejection master sky flats use (``masters.sky_flat_rejection``). Compared
with the simulator's true flat (pixel response × vignetting and dust) outside the bad pixel map,
in 4×4-pixel means (which average the shot noise of nine frames down to ~0.05 % while a
star residual stays ≥ 1 %):
< 0.5 % with trailing or offsets, > 0.5 % without; and > 0.5 % with trailing but the plain
one-pass sigma clipping of other masters.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from astropy.io import fits

from calibd.capture.combine.engine import combine_files
from calibd.capture.combine.rejection import Rejection
from calibd.capture.config import MastersConfig
from calibd.capture.masters.build import rejection_of
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.pointing import Place
from calibd.simulators.clock import SteppedClock
from calibd.simulators.mount import SimulatedDome, SimulatedMount
from calibd.simulators.observatory import SimulatedObservatory, build_observatory
from calibd.simulators.profiles import get_profile
from calibd.simulators.sky import SimulatedSky, StarField

SITE = Place(52.0, 5.0)
FRAMES = 9
SUN_ALT = -6.0  # a fixed twilight: 6e3 e-/s per pixel, ~3 s flats
EXPOSURE_S = 3.0
BLOCK = 4
SKY_REJECTION = rejection_of(MastersConfig(), sky_flats=True)  # what master sky flats use


def _observatory() -> tuple[SimulatedObservatory, SimulatedMount, SimulatedDome]:
    clock = SteppedClock(start=datetime(2026, 6, 1, 20, 30, tzinfo=UTC))  # the same sky each run
    mount = SimulatedMount(clock, SITE)
    dome = SimulatedDome(clock)
    sky = SimulatedSky(clock, lambda _when: SUN_ALT)
    obs = build_observatory(get_profile("small"), clock, noise_seed=3, sky=sky, mount=mount,
                            dome=dome, stars=StarField())
    for device in (obs.camera, mount, dome):
        device.connect()
    obs.camera.configure(CaptureSettings(gain=100, offset=50))
    return obs, mount, dome


def _write(path: Path, data: npt.NDArray[np.uint16]) -> Path:
    fits.writeto(path, data.astype(np.int32), overwrite=True)
    return path


Maps = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_], int]


def _master(tmp_path: Path, how: str, rejection: Rejection = SKY_REJECTION) -> Maps:
    """(master flat / median, true flat / median, good-pixel mask, star pixels in frame 0)."""
    obs, mount, dome = _observatory()
    cam = obs.camera
    darks = [cam.expose(EXPOSURE_S, dark=True).data.astype(np.float32) for _ in range(4)]
    dark = np.mean(darks, axis=0)
    mount.unpark()
    dome.open_shutter()
    mount.slew_altaz(75.0, 90.0, tracking=how != "tracking-off")
    rng = np.random.default_rng(5)
    paths = []
    star_pixels = 0
    for i in range(FRAMES):
        if how == "dither" and i:
            # >= 10 arcmin in a random direction (azimuth offsets shrink by cos alt)
            d_alt, d_az = rng.uniform(-0.3, 0.3), rng.choice([-1, 1]) * rng.uniform(0.2, 0.4)
            mount.slew_altaz(75.0 + d_alt, 90.0 + d_az / np.cos(np.radians(75.0)),
                             tracking=True)
        frame = cam.expose(EXPOSURE_S, dark=False).data
        if i == 0:
            sky_level = np.median(frame) - np.median(dark)
            star_pixels = int(np.count_nonzero(frame - dark > 1.2 * sky_level))
        paths.append(_write(tmp_path / f"{how}-{i}.fits", frame))
    scales = [1.0 / float(np.median(fits.getdata(p).astype(np.float32) - dark)) for p in paths]
    result = combine_files(paths, method="mean", rejection=rejection,
                           subtract=dark, scales=scales)
    master = result.data / np.float32(np.median(result.data))
    sensor = cam.sensor
    true = sensor.response_map() * obs.optics.pattern(None)
    true = true / np.float32(np.median(true))
    good = sensor.response_map() > 0.5
    hot = sensor.hot_pixels_rc()
    good[hot[:, 0], hot[:, 1]] = False
    return master, true, good, star_pixels


def _worst_block(master: npt.NDArray[np.float32], true: npt.NDArray[np.float32],
                 good: npt.NDArray[np.bool_]) -> float:
    """Largest |4x4 mean of master/true - 1| over blocks, bad pixels left out of the means."""
    h, w = (s - s % BLOCK for s in master.shape)
    ratio = np.where(good, master / np.where(good, true, 1.0), 0.0)[:h, :w]
    weight = good[:h, :w].astype(np.float32)
    sums = ratio.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).sum(axis=(1, 3))
    counts = weight.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).sum(axis=(1, 3))
    means = sums[counts > 8] / counts[counts > 8]
    return float(np.max(np.abs(means - 1.0)))


@pytest.fixture(scope="module")
def residuals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[float, int]]:
    out = {}
    for how in ("tracking-off", "dither", "tracking-on"):
        master, true, good, stars = _master(tmp_path_factory.mktemp(how), how)
        out[how] = (_worst_block(master, true, good), stars)
    master, true, good, stars = _master(tmp_path_factory.mktemp("plain"), "tracking-off",
                                        rejection_of(MastersConfig()))
    out["plain-rejection"] = (_worst_block(master, true, good), stars)
    print({k: f"{v[0] * 100:.3f} % ({v[1]} star pixels)" for k, v in out.items()})
    return out


def test_the_sky_has_stars(residuals: dict[str, tuple[float, int]]) -> None:
    assert all(stars > 20 for _, stars in residuals.values()), residuals


@pytest.mark.parametrize("how", ["tracking-off", "dither"])
def test_rejection_removes_moving_stars(residuals: dict[str, tuple[float, int]], how: str
                                        ) -> None:
    assert residuals[how][0] < 0.005, residuals


def test_stars_that_stay_put_are_not_removed(residuals: dict[str, tuple[float, int]]) -> None:
    assert residuals["tracking-on"][0] > 0.005, residuals


def test_one_pass_standard_deviation_keeps_trailed_stars(
        residuals: dict[str, tuple[float, int]]) -> None:
    assert residuals["plain-rejection"][0] > 0.005, residuals
