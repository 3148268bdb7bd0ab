"""Colour FITS files demosaic to the right colours in an outside program.

An independent reader (tests.support.demosaic_fits: ``ROWORDER``, ``BAYERPAT``,
``XBAYROFF``/``YBAYROFF`` as Siril reads them, then OpenCV's ``cvtColor``) demosaics

* synthetic mosaics whose every pixel holds a level naming its colour, for the four 2x2 phases,
  both row orders, the four offset parities and odd and even heights: this proves the reader's
  OpenCV code table (derived from OpenCV's documentation, not assumed);
* the same files after calibd has read them as a camera's FITS (the INDI driver's decoding and
  per-frame pattern) and written them again with its own writer (rows top-down, the pattern
  folded, offsets 0);
* frames of the colour simulator written by calibd's writer, lit by the green-heavy panel and the
  blue-heavy twilight sky: the channel ratios come out as the simulator's truth;
* masters built by ``calibd run`` on the colour simulator: still a mosaic with the frames'
  keywords.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from astropy.io import fits

from calibd.drivers.contracts import CameraInfo
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import Frame
from calibd.drivers.indi._fits import decode_fits
from calibd.drivers.indi.camera import _fits_pattern
from calibd.simulators.camera import SimulatedCamera
from calibd.simulators.clock import SteppedClock
from calibd.simulators.profiles import get_profile
from calibd.simulators.sensor import Illumination
from tests.support import demosaic_fits
from tests.support import fits_files
from tests.support import run_cli
from tests.support import write_config
from tests.support import write_frame
from tests.support import write_plan

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
LEVEL = {"R": 40000, "G": 20000, "B": 5000}  # what each colour's pixels hold
_INFO = CameraInfo(model="synthetic", camera_id="syn-1", width=0, height=0, bit_depth=16,
                   pixel_size_um=3.76, gain_min=0, gain_max=100, offset_min=0, offset_max=100,
                   min_exposure_s=0.001, max_exposure_s=100.0, has_cooler=False)


def mosaic(pattern: str, height: int, width: int) -> npt.NDArray[np.uint16]:
    """A top-down mosaic whose pixel (r, c) holds LEVEL of the colour ``pattern`` puts there
    (pattern = colours of (0,0), (0,1), (1,0), (1,1), by hand, no calibd code)."""
    out = np.empty((height, width), dtype=np.uint16)
    for (r, c), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern, strict=True):
        out[r::2, c::2] = LEVEL[colour]
    return out


def label(pattern: str, dx: int, dy: int) -> str:
    """The BAYERPAT a writer puts in a file whose top-left pixel has ``pattern`` when it also
    writes offsets (dx, dy): the matrix that, read from (dx, dy), gives ``pattern`` (by hand)."""
    rows = (pattern[0:2], pattern[2:4])
    return "".join(rows[(r - dy) % 2][(c - dx) % 2] for r in (0, 1) for c in (0, 1))


def write_synthetic(path: Path, pattern: str, height: int, width: int, row_order: str,
                    dx: int, dy: int) -> Path:
    """A FITS file of mosaic(pattern), rows stored in ``row_order`` (BOTTOM-UP: the top row of
    the image last), keywords as a third-party writer would set them."""
    top_down = mosaic(pattern, height, width)
    header = fits.Header()
    header["BAYERPAT"] = label(pattern, dx, dy)
    header["XBAYROFF"] = dx
    header["YBAYROFF"] = dy
    header["ROWORDER"] = row_order
    data = top_down if row_order == "TOP-DOWN" else top_down[::-1]
    fits.PrimaryHDU(np.ascontiguousarray(data), header=header).writeto(path)
    return path


def assert_true_colours(rgb: npt.NDArray[np.uint16]) -> None:
    """Every pixel away from the border demosaics to (R, G, B) = LEVEL (a flat colour field)."""
    inner = rgb[2:-2, 2:-2].reshape(-1, 3).astype(np.int64)
    expected = np.array([LEVEL["R"], LEVEL["G"], LEVEL["B"]])
    assert np.abs(inner - expected).max() <= 1, np.unique(inner, axis=0)[:4]


CASES = list(itertools.product(PATTERNS, ("TOP-DOWN", "BOTTOM-UP"), ((0, 0), (1, 0), (0, 1),
                                                                      (1, 1)), (12, 13)))


@pytest.mark.parametrize(("pattern", "row_order", "offsets", "height"), CASES,
                         ids=[f"{p}-{o}-x{x}y{y}-h{h}" for p, o, (x, y), h in CASES])
def test_every_phase_and_row_order_demosaics_to_its_colours(
        tmp_path: Path, pattern: str, row_order: str, offsets: tuple[int, int],
        height: int) -> None:
    dx, dy = offsets
    path = write_synthetic(tmp_path / "in.fits", pattern, height, 16, row_order, dx, dy)
    assert_true_colours(demosaic_fits(path))  # the reader and its OpenCV table are right

    # The same file as a camera's FITS: calibd's INDI decoding turns it top-down and takes the
    # frame's pattern from its keywords; calibd's writer stores it; the reader agrees.
    data, header = decode_fits(path.read_bytes())
    frame = Frame(data=data, exposure_s=1.0, dark=False, settings=CaptureSettings(0, 0),
                  start_utc=SteppedClock().now(), temp_start_c=None, temp_end_c=None,
                  setpoint_c=None, bayer_pattern=_fits_pattern(header))
    assert frame.bayer_pattern == pattern and np.array_equal(data, mosaic(pattern, height, 16))
    out = write_frame(tmp_path / "out.fits", frame, _INFO, kind="flat")
    with fits.open(out) as hdul:
        written = hdul[0].header
    assert (written["ROWORDER"], written["XBAYROFF"], written["YBAYROFF"]) == ("TOP-DOWN", 0, 0)
    assert_true_colours(demosaic_fits(out))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_colour_simulator_written_by_calibd_demosaics_to_the_light_s_colour(
        tmp_path: Path, pattern: str) -> None:
    """A white-LED panel is green-heavy, the twilight sky blue-heavy: after calibd's writer and
    the outside demosaic, each channel's level relative to green is the simulator's truth. Any
    wrong phase swaps red and blue or mixes green in (a 2x-3x error)."""
    profile = get_profile("small-colour").with_overrides(bayer=pattern)
    for source in ("panel", "sky"):
        cam = SimulatedCamera(profile, SteppedClock(),
                              light=lambda s=source: Illumination(30000.0, source=s))
        cam.connect()
        applied = cam.configure(CaptureSettings(gain=100, offset=10))
        lit = cam.expose(1.0, dark=False)
        assert lit.bayer_pattern == pattern
        rgb = demosaic_fits(write_frame(tmp_path / f"{source}.fits", lit, cam.info, kind="flat",
                                        filter_name="L")).astype(np.float64)
        bias = cam.sensor.pedestal_adu16(applied.offset)
        level = {c: float(np.median(rgb[8:-8, 8:-8, i])) - bias for i, c in enumerate("RGB")}
        truth = profile.channel_response(source)
        for colour in "RB":
            assert level[colour] / level["G"] == pytest.approx(truth[colour] / truth["G"],
                                                               rel=0.05), (source, level)
        brightest = max(level, key=level.__getitem__)
        assert brightest == ("G" if source == "panel" else "B")


def test_masters_of_a_colour_camera_stay_mosaics_with_the_frames_keywords(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``calibd run`` on the colour simulator: frames and the masters built from them carry
    BAYERPAT/XBAYROFF/YBAYROFF/ROWORDER, and a master is 2-D (never debayered)."""
    config = write_config(tmp_path / "calibd.yaml", profile="small-colour")
    plan = write_plan(tmp_path / "plan.yaml", """
name: colour-darks
defaults: {offset: 40}
cooling: {dwell_s: 0, tolerance_c: 0.5}
warmup: {enabled: false}
sets:
  - kind: bias
    gains: [100]
    setpoints_c: [-5]
    count: 3
  - kind: dark
    gains: [100]
    setpoints_c: [-5]
    exposures_s: [10]
    count: 3
""")
    library = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", library)
    assert res.code == 0, res.err
    masters = [p for p in library.rglob("*.fits")
               if str(fits.getval(p, "IMAGETYP")) in ("Master Bias", "Master Dark")]
    files = fits_files(library)
    assert len(masters) == 2 and len(files) == 6
    for path in files + masters:
        with fits.open(path) as hdul:
            header, data = hdul[0].header, hdul[0].data
        assert data.ndim == 2 and data.shape == (240, 320), path.name
        assert (header["BAYERPAT"], header["XBAYROFF"], header["YBAYROFF"],
                header["ROWORDER"]) == ("RGGB", 0, 0, "TOP-DOWN"), path.name
