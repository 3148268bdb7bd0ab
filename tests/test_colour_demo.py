"""The colour example end to end: ``calibd run plans/colour.yaml`` (a real process, the built-in
colour simulator) writes raw mosaics and masters that an outside program, OpenCV, demosaics to
the right colours using only their FITS keywords; the masters keep the mosaic and the master flat
keeps the colour balance of the light."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from astropy.io import fits

from calibd.simulators.profiles import get_profile
from tests.support import PLANS, calibd_subprocess

CAMERA = "simulator-colour"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = tmp_path_factory.mktemp("colour") / "lib"
    proc = calibd_subprocess("-q", "run", PLANS / "colour.yaml", "--library", lib, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return lib


def demosaic(path: Path, scale: float = 1.0) -> np.ndarray:
    """The image as OpenCV demosaics it (RGB, float), from BAYERPAT and ROWORDER alone."""
    with fits.open(path) as hdul:
        header, data = hdul[0].header, hdul[0].data.astype(np.float64)
    pattern = header["BAYERPAT"]
    if str(header.get("ROWORDER", "TOP-DOWN")) == "BOTTOM-UP":
        data = data[::-1]
    raw = np.clip(data * scale, 0, 65535).astype(np.uint16)
    rgb = cv2.cvtColor(raw, getattr(cv2, f"COLOR_Bayer{pattern}2RGB"))
    return rgb.astype(np.float64)


def centre_rgb(rgb: np.ndarray, minus: np.ndarray | None = None) -> np.ndarray:
    h, w = rgb.shape[:2]
    centre = rgb[h // 4: h - h // 4, w // 4: w - w // 4]
    if minus is not None:
        centre = centre - minus[h // 4: h - h // 4, w // 4: w - w // 4]
    return np.median(centre.reshape(-1, 3), axis=0)


def one(lib: Path, pattern: str) -> Path:
    (path,) = sorted(lib.rglob(pattern))[:1]
    return path


def test_frames_and_master_flat_demosaic_to_the_panel_colour(library: Path) -> None:
    truth = get_profile("small-colour").channel_response("panel")
    want = np.array([truth["R"], truth["G"], truth["B"]]) / truth["G"]
    bias_rgb = demosaic(one(library, "Master_Bias_*.fits"))
    flat_rgb = centre_rgb(demosaic(one(library, "Flat_L_*.fits")), bias_rgb)
    master = one(library, "Master_Flat_L_*.fits")
    master_rgb = centre_rgb(demosaic(master, scale=30000.0))
    print(f"OpenCV {cv2.__version__} cvtColor COLOR_Bayer<BAYERPAT>2RGB, centre medians: flat "
          f"frame minus master bias R,G,B = {np.round(flat_rgb, 1).tolist()}, master flat "
          f"x30000 = {np.round(master_rgb, 1).tolist()}; simulator truth R:G:B = "
          f"{np.round(want, 4).tolist()}")
    for got in (flat_rgb, master_rgb):
        ratio = got / got[1]
        assert np.allclose(ratio, want, rtol=0.03), (ratio, want)  # R and B not swapped
    header = fits.getheader(master)
    assert header["NORMALIZ"] == "median-cfa" and header["NORMCHAN"] in ("G1", "G2")
    assert abs(master_rgb[1] / 30000.0 - 1.0) < 0.02  # the normaliser channel is at 1


def test_masters_keep_the_mosaic_and_the_map_is_per_colour(library: Path) -> None:
    frame = fits.getheader(one(library, "Flat_L_*.fits"))
    for kind in ("Bias", "Dark", "DarkFlat", "Flat"):
        path = one(library / CAMERA / "Masters", f"Master_{kind}_*.fits")
        with fits.open(path) as hdul:
            header, data = hdul[0].header, hdul[0].data
        assert data.ndim == 2 and data.shape == (frame["NAXIS2"], frame["NAXIS1"]), kind
        assert header["BAYERPAT"] == "RGGB" and header["ROWORDER"] == "TOP-DOWN", kind
    dark_rgb = centre_rgb(demosaic(one(library, "Master_Dark_*.fits")))
    assert np.ptp(dark_rgb) < 0.05 * dark_rgb.mean() + 1.0  # no light, no colour: grey
    bpm = fits.getheader(one(library, "Master_BPM_*.fits"))
    assert bpm["BPMCFA"] is True and bpm["BAYERPAT"] == "RGGB"
    assert bpm["NHOT"] > 0 and bpm["NCOLD"] > 0
