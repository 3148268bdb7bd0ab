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

from calibd.capture.config import MastersConfig
from calibd.capture.masters.bpm import local_level
from calibd.simulators.profiles import get_profile
from calibd.simulators.sensor import SensorModel
from tests.support import PLANS
from tests.support import calibd_subprocess

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


def test_the_map_of_the_colour_simulator_finds_its_defects(library: Path) -> None:
    """Against the simulator's truth: hot pixels (those whose excess beats the map's rule over
    their own colour's local level), dead and cold pixels; nothing flagged for its colour."""
    mask = fits.getdata(one(library, "Master_BPM_*.fits"))
    sensor = SensorModel(get_profile("small-colour"))
    injected = {(int(r), int(c)) for r, c in sensor.hot_pixels_rc()}
    found_hot = {(int(r), int(c)) for r, c in np.argwhere(mask & 1)}
    truth = (sensor.dark_rate_map(-10.0) * 300.0 / sensor.e_per_adu16(100)).astype(np.float32)
    cfg = MastersConfig()
    local = np.empty_like(truth)
    for r in (0, 1):  # same-colour local level: each 2x2 position on its own
        for c in (0, 1):
            local[r::2, c::2] = local_level(np.ascontiguousarray(truth[r::2, c::2]),
                                            cfg.bpm_block_px // 2)
    rule = np.maximum(5.0, (cfg.hot_factor - 1) * np.maximum(local, 0))
    above = {p for p in injected if truth[p] - local[p] > 1.05 * rule[p]}
    assert len(above) >= 0.95 * len(injected)
    defects = {(int(r), int(c)) for r, c in sensor.dead_pixels_rc()} | \
        {(int(r), int(c)) for r, c in np.stack(np.divmod(sensor.cold_index, mask.shape[1]), 1)}
    found_cold = {(int(r), int(c)) for r, c in np.argwhere(mask & 2)}
    hot_p = len(injected & found_hot) / len(found_hot)
    hot_r = len(above & found_hot) / len(above)
    cold_p = len(defects & found_cold) / len(found_cold)
    cold_r = len(defects & found_cold) / len(defects)
    fpr = len(found_cold - defects) / mask.size
    print(f"colour simulator map: hot precision {hot_p:.4f} recall {hot_r:.4f} "
          f"({len(found_hot)} flagged, {len(injected)} injected, {len(above)} above the rule); "
          f"cold/dead precision {cold_p:.4f} recall {cold_r:.4f}; cold false-positive rate "
          f"{fpr:.2e}")
    assert min(hot_p, hot_r, cold_p, cold_r) >= 0.99
    assert fpr <= 1e-5
