"""Stars in the simulated twilight sky, and the rejection that keeps them out of a master flat.

The simulated observatory (camera, mount, dome, twilight sky with :class:`StarField` stars) takes
sky flats at the flat spot (alt 75°, opposite the sun) three ways: tracking off (stars trail and
drift between frames), tracking on with a ≥10′ offset between frames (stars move), and tracking
on without offsets (stars stay put). The frames are dark-subtracted, scaled to their median and
combined with the rejection master sky flats use (``masters.sky_flat_rejection``), then compared
with the simulator's true flat (pixel response × vignetting and dust) at every pixel outside the
bad pixel map: < 0.5 % with trailing or offsets, > 0.5 % without, and > 0.5 % with trailing but
the plain one-pass sigma clipping of other masters.

Per pixel a master of N frames of S electrons keeps a shot noise of 1/√(N·S), and the worst of
~77,000 pixels lies 4.5-5 times that from the truth: < 0.5 % needs N·S ≳ 1.5e6 e⁻. So the set is
50 frames of ~33 ke⁻ (about 33 kADU above the bias at gain 100, 1 e⁻/ADU: two thirds of the 50 ke⁻
full well). Two tests check that what is left is that shot noise and no star residual: its
spread and worst pixel in units of each pixel's own 1/√(N·S), and the master against one of the
same frames and noise from a sky without stars (the stars' own share, < 0.25 %). The worst
4×4-pixel block (shot noise averaged down 4×) is reported alongside.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
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
from calibd.simulators.mount import SimulatedDome
from calibd.simulators.mount import SimulatedMount
from calibd.simulators.observatory import SimulatedObservatory
from calibd.simulators.observatory import build_observatory
from calibd.simulators.profiles import get_profile
from calibd.simulators.sky import SimulatedSky
from calibd.simulators.sky import StarField

SITE = Place(52.0, 5.0)
FRAMES = 50
SUN_ALT = -6.0  # a fixed twilight: 6e3 e-/s per pixel
EXPOSURE_S = 6.0  # ~33 ke- per pixel (median; 36 ke- in the centre)
GAIN = 100  # 1 e-/ADU
BLOCK = 4
SKY_REJECTION = rejection_of(MastersConfig(), sky_flats=True)  # what master sky flats use


def _observatory(stars: bool = True) -> tuple[SimulatedObservatory, SimulatedMount,
                                             SimulatedDome]:
    """The observatory; without ``stars`` the same sky and the same noise, but no stars."""
    clock = SteppedClock(start=datetime(2026, 6, 1, 20, 30, tzinfo=UTC))  # the same sky each run
    mount = SimulatedMount(clock, SITE)
    dome = SimulatedDome(clock)
    sky = SimulatedSky(clock, lambda _when: SUN_ALT)
    obs = build_observatory(get_profile("small"), clock, noise_seed=3, sky=sky, mount=mount,
                            dome=dome,
                            stars=StarField(stars_per_sq_deg=400.0 if stars else 0.0))
    for device in (obs.camera, mount, dome):
        device.connect()
    obs.camera.configure(CaptureSettings(gain=GAIN, offset=50))
    return obs, mount, dome


def _write(path: Path, data: npt.NDArray[np.uint16]) -> Path:
    fits.writeto(path, data.astype(np.int32), overwrite=True)
    return path


@dataclass(frozen=True)
class Residual:
    """How a master flat differs from the true flat, outside the bad pixel map."""

    worst_pixel: float  # largest |master / true - 1|
    worst_block: float  # largest |4x4 mean of master / true - 1|
    spread: float  # robust sigma of master / true - 1 over the pixels, in units of 1/sqrt(N S)
    worst_z: float  # largest |master / true - 1| in units of the pixel's own 1/sqrt(N S)
    electrons: float  # median electrons per pixel in one frame
    star_pixels: int  # pixels of frame 0 more than 20 % above the sky
    master: npt.NDArray[np.float32] = field(repr=False, compare=False)  # over its median
    good: npt.NDArray[np.bool_] = field(repr=False, compare=False)  # outside the bad pixel map

    def star_residual(self, starless: Residual) -> float:
        """Largest |self / starless - 1| over good pixels: what the stars alone left, where
        ``starless`` is the master of the same frames (same noise) of a sky without stars."""
        return float(np.max(np.abs(self.master[self.good] / starless.master[self.good] - 1.0)))

    def __str__(self) -> str:
        return (f"pixel {self.worst_pixel * 100:.3f} %, 4x4 block {self.worst_block * 100:.3f} %,"
                f" spread {self.spread:.2f} and worst {self.worst_z:.1f} x shot noise,"
                f" {self.electrons:.0f} e-/px, {self.star_pixels} star pixels")


def _masters(tmp_path: Path, how: str, rejections: tuple[Rejection, ...] = (SKY_REJECTION,),
             *, stars: bool = True) -> list[Residual]:
    """Take FRAMES sky flats ``how`` ('tracking-off', 'dither' or 'tracking-on'), combine them
    with each of ``rejections`` and compare each master with the simulator's true flat."""
    obs, mount, dome = _observatory(stars)
    cam = obs.camera
    darks = [cam.expose(EXPOSURE_S, dark=True).data.astype(np.float32) for _ in range(4)]
    dark = np.mean(darks, axis=0)
    mount.unpark()
    dome.open_shutter()
    mount.slew_altaz(75.0, 90.0, tracking=how != "tracking-off")
    rng = np.random.default_rng(5)
    paths = []
    levels = []  # each frame's median above the dark
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
        levels.append(float(np.median(frame.astype(np.float32) - dark)))
    sensor = cam.sensor
    true = sensor.response_map() * obs.optics.pattern(None)
    true = true / np.float32(np.median(true))
    good = sensor.response_map() > 0.5
    hot = sensor.hot_pixels_rc()
    good[hot[:, 0], hot[:, 1]] = False
    electrons = float(np.median(levels)) * sensor.e_per_adu16(GAIN)
    shot = 1.0 / np.sqrt(FRAMES * electrons * true[good])  # each pixel's own shot noise
    out = []
    for rejection in rejections:
        result = combine_files(paths, method="mean", rejection=rejection,
                               subtract=dark, scales=[1.0 / level for level in levels])
        master = result.data / np.float32(np.median(result.data))
        ratio = master[good] / true[good] - 1.0
        z = ratio / shot
        spread = 1.482602218505602 * float(np.median(np.abs(z - np.median(z))))
        out.append(Residual(worst_pixel=float(np.max(np.abs(ratio))),
                            worst_block=_worst_block(master, true, good), spread=spread,
                            worst_z=float(np.max(np.abs(z))), electrons=electrons,
                            star_pixels=star_pixels, master=master, good=good))
    return out


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
def residuals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Residual]:
    """Masters of each way of taking the frames; "plain-rejection": the tracking-off frames
    combined with the one-pass sigma clipping of other masters; "starless" and
    "starless-plain": the same frames and noise without stars, combined both ways."""
    both = (SKY_REJECTION, rejection_of(MastersConfig()))
    out: dict[str, Residual] = {}
    out["tracking-off"], out["plain-rejection"] = _masters(
        tmp_path_factory.mktemp("tracking-off"), "tracking-off", both)
    for how in ("dither", "tracking-on"):
        out[how], = _masters(tmp_path_factory.mktemp(how), how)
    out["starless"], out["starless-plain"] = _masters(
        tmp_path_factory.mktemp("starless"), "tracking-off", both, stars=False)
    for how, r in out.items():
        starless = out["starless-plain" if "plain" in how else "starless"]
        print(f"{how}: {r}; star residual {r.star_residual(starless) * 100:.3f} %")
    return out


def test_the_sky_has_stars(residuals: dict[str, Residual]) -> None:
    assert all(r.star_pixels > 20 for how, r in residuals.items() if "starless" not in how)
    assert residuals["starless"].star_pixels == 0


@pytest.mark.parametrize("how", ["tracking-off", "dither"])
def test_rejection_removes_moving_stars(residuals: dict[str, Residual], how: str) -> None:
    """The issue's criterion: < 0.5 % at every pixel outside the bad pixel map."""
    assert residuals[how].worst_pixel < 0.005, residuals[how]


@pytest.mark.parametrize("how", ["tracking-off", "dither"])
def test_what_is_left_is_shot_noise(residuals: dict[str, Residual], how: str) -> None:
    """No star residual hiding under the 0.5 %: the residual spreads like the frames' shot noise
    (the rejection costs a few per cent of it) and its worst pixel is one that ~77,000 Gaussian
    pixels make (beyond 6 of these sigmas about once in 1,000 sets; 4.6-5.6 over six noise
    seeds). A faint wing that escapes the 2.5-sigma clip in one frame of 50 moves the master by
    at most 2.5 / sqrt(50) ~ 0.35 of its noise; what would show here is a star kept whole."""
    r = residuals[how]
    assert 0.95 < r.spread < 1.12, r
    assert r.worst_z < 6.0, r


@pytest.mark.parametrize("how", ["tracking-off", "dither"])
def test_the_stars_leave_no_residual_of_their_own(residuals: dict[str, Residual], how: str
                                                  ) -> None:
    """The stars' own share, the shot noise taken out: the same frames of a sky without stars
    (same noise) give a master within 0.25 % of the starry one at every good pixel. What is left
    is faint trails below the clip (tracking off: a row sees every star of its declination
    drift past, up to ~5 of the 50 frames at ~1 %: ~0.2 %)."""
    assert residuals[how].star_residual(residuals["starless"]) < 0.0025, residuals[how]


def test_stars_that_stay_put_are_not_removed(residuals: dict[str, Residual]) -> None:
    assert residuals["tracking-on"].worst_pixel > 0.005, residuals["tracking-on"]
    assert residuals["tracking-on"].worst_block > 0.005, residuals["tracking-on"]


def test_one_pass_standard_deviation_keeps_trailed_stars(residuals: dict[str, Residual]) -> None:
    r = residuals["plain-rejection"]
    assert r.worst_pixel > 0.005, r
    assert r.worst_z > 6.0, r
    assert r.star_residual(residuals["starless-plain"]) > 0.0025, r
