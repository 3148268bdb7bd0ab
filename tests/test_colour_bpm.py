"""Bad pixel maps on colour (Bayer) masters: hot, cold and dead pixels are judged against their
same-colour neighbours with each channel's own statistics, so a map of a colour master dark and
master flat finds the injected defects and no pixel is flagged merely for being red or blue.

The masters are simulated with a known truth (dark current spread, amp glow, vignetting, dust,
the channel balance of a green-heavy panel or a blue-heavy sky), written as FITS with their
``BAYERPAT`` and indexed the way ``masters build`` does; the map comes from ``build_bpm``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from astropy.io import fits

from calibd.capture import cfa
from calibd.capture.config import MastersConfig
from calibd.capture.library.headermap import master_row
from calibd.capture.library.index import Index
from calibd.capture.masters.bpm import COLD
from calibd.capture.masters.bpm import HOT
from calibd.capture.masters.bpm import build_bpm

H, W = 768, 1024  # 786,432 pixels: a false-positive rate of 1e-5 is ~8 pixels
# Channel response (R, G1, G2, B) to the light of the flat.
PANEL = (0.45, 1.0, 1.0, 0.32)  # white LED panel: green-heavy
SKY = (0.38, 0.70, 0.70, 1.0)  # twilight: blue-heavy
Pixels = set[tuple[int, int]]


def _mosaic(pattern: str, response: tuple[float, float, float, float]
            ) -> npt.NDArray[np.float64]:
    out = np.empty((H, W))
    for name, plane in cfa.channels(out, pattern).items():
        plane[...] = response[cfa.CHANNEL_NAMES.index(name)]
    return out


def _pick(rng: np.random.Generator, n: int, taken: Pixels) -> list[tuple[int, int]]:
    """``n`` distinct pixels away from the edges and from each other's 5x5 neighbourhood."""
    out: list[tuple[int, int]] = []
    while len(out) < n:
        r, c = int(rng.integers(4, H - 4)), int(rng.integers(4, W - 4))
        if any(abs(r - a) <= 4 and abs(c - b) <= 4 for a, b in (*taken, *out)):
            continue
        out.append((r, c))
    return out


def colour_dark(rng: np.random.Generator, hot: list[tuple[int, int]]) -> npt.NDArray[np.float32]:
    """A bias-subtracted master dark (ADU): log-normal dark current around 20 ADU, amp glow in
    one corner, the master's read noise, and ``hot`` pixels 15-100x their local level."""
    yy, xx = np.mgrid[0:H, 0:W]
    glow = 180.0 * np.exp(-np.hypot(yy - H, xx - W) / 90.0)
    dark = 20.0 * rng.lognormal(0.0, 0.3, (H, W)) + glow + rng.normal(0.0, 1.5, (H, W))
    for r, c in hot:
        dark[r, c] += (20.0 + glow[r, c]) * rng.uniform(15.0, 100.0) + 100.0
    return dark.astype(np.float32)


def colour_flat(rng: np.random.Generator, pattern: str,
                response: tuple[float, float, float, float], cold: list[tuple[int, int]],
                dead: list[tuple[int, int]]) -> npt.NDArray[np.float32]:
    """A normalised master flat: vignetting, dust shadows (5-15 %), 1 % pixel response
    non-uniformity, the channel balance ``response``, 0.3 % noise; ``cold`` pixels at 10-60 %
    of their response and ``dead`` ones at 0."""
    yy, xx = np.mgrid[0:H, 0:W]
    r2 = ((yy - H / 2) ** 2 + (xx - W / 2) ** 2) / (W / 2) ** 2
    flat = (1.0 - 0.25 * r2) * _mosaic(pattern, response) * rng.normal(1.0, 0.01, (H, W))
    for _ in range(6):  # dust donuts
        cy, cx, rad = rng.uniform(60, H - 60), rng.uniform(60, W - 60), rng.uniform(15, 40)
        d = np.hypot(yy - cy, xx - cx)
        flat *= 1.0 - rng.uniform(0.05, 0.15) * ((d > 0.5 * rad) & (d < rad))
    flat *= rng.normal(1.0, 0.003, (H, W))
    for r, c in cold:
        flat[r, c] *= rng.uniform(0.1, 0.6)
    for r, c in dead:
        flat[r, c] = 0.0
    return flat.astype(np.float32)


def _add_master(index: Index, kind: str, data: npt.NDArray[np.float32], pattern: str,
                name: str) -> None:
    header = fits.Header()
    header["IMAGETYP"] = "Master Dark" if kind == "dark" else "Master Flat"
    for key, value in (("CAMNAME", "osc"), ("GAIN", 100), ("OFFSET", 50), ("XBINNING", 1),
                       ("YBINNING", 1), ("READOUTM", "normal"), ("SET-TEMP", -10.0),
                       ("BAYERPAT", pattern), ("ROWORDER", "TOP-DOWN"), ("SRCRUN", 1),
                       ("SRCCELL", f"{kind}|{name}")):
        header[key] = value
    if kind == "dark":
        header["EXPTIME"] = 300.0
        header["BIASSUB"] = True
        header["BIASMSTR"] = "master_bias.fits"
    else:
        header["FILTER"] = "L"
        header["FLATCAL"] = "bias:master_bias.fits"
    path = index.root / "osc" / "Masters" / f"{name}.fits"
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.PrimaryHDU(data=data, header=header)
    hdu.writeto(path)
    index.upsert_master(master_row(hdu.header, path=path.relative_to(index.root).as_posix(),
                                   inputs_digest=None))


def _bpm(tmp_path: Path, dark: npt.NDArray[np.float32], flat: npt.NDArray[np.float32],
         pattern: str) -> tuple[npt.NDArray[np.uint8], fits.Header]:
    index = Index(tmp_path / "lib")
    try:
        _add_master(index, "dark", dark, pattern, "master_dark")
        _add_master(index, "flat", flat, pattern, "master_flat")
        out = build_bpm(index, "osc", 100, 1, MastersConfig())
    finally:
        index.close()
    assert out is not None
    with fits.open(out) as hdul:
        return np.asarray(hdul[0].data), hdul[0].header


def _found(mask: npt.NDArray[np.uint8], bit: int) -> Pixels:
    return {(int(r), int(c)) for r, c in np.argwhere(mask & bit)}


@pytest.mark.parametrize(("pattern", "light"), [("RGGB", PANEL), ("GBRG", SKY)],
                         ids=["green-heavy-panel", "blue-heavy-sky"])
def test_colour_map_recovers_injected_hot_cold_and_dead_pixels(
        tmp_path: Path, pattern: str, light: tuple[float, float, float, float]) -> None:
    rng = np.random.default_rng(13)
    hot = _pick(rng, 400, set())
    cold = _pick(rng, 300, set(hot))
    dead = _pick(rng, 100, {*hot, *cold})
    mask, header = _bpm(tmp_path, colour_dark(rng, hot),
                        colour_flat(rng, pattern, light, cold, dead), pattern)
    truth_hot, truth_cold = set(hot), {*cold, *dead}
    found_hot, found_cold = _found(mask, HOT), _found(mask, COLD)
    hot_pr = (len(found_hot & truth_hot) / max(1, len(found_hot)),
              len(found_hot & truth_hot) / len(truth_hot))
    cold_pr = (len(found_cold & truth_cold) / max(1, len(found_cold)),
               len(found_cold & truth_cold) / len(truth_cold))
    print(f"{pattern}: hot precision {hot_pr[0]:.4f} recall {hot_pr[1]:.4f}; cold+dead "
          f"precision {cold_pr[0]:.4f} recall {cold_pr[1]:.4f} ({len(found_hot)} hot, "
          f"{len(found_cold)} cold flagged)")
    assert min(hot_pr) >= 0.99, hot_pr
    assert min(cold_pr) >= 0.99, cold_pr
    assert set(dead) <= found_cold
    assert header["NHOT"] == len(found_hot) and header["NCOLD"] == len(found_cold)
    assert header["BPMCFA"] is True and header["BAYERPAT"] == pattern


@pytest.mark.parametrize("light", [PANEL, SKY], ids=["green-heavy-panel", "blue-heavy-sky"])
def test_no_pixel_is_flagged_for_its_colour_on_a_clean_colour_flat(
        tmp_path: Path, light: tuple[float, float, float, float]) -> None:
    rng = np.random.default_rng(29)
    mask, header = _bpm(tmp_path, colour_dark(rng, []), colour_flat(rng, "RGGB", light, [], []),
                        "RGGB")
    flagged = int(np.count_nonzero(mask))
    rate = flagged / mask.size
    colours = cfa.colour_map("RGGB", mask.shape)[mask != 0]
    print(f"clean flat {light}: {flagged} of {mask.size} pixels flagged, false-positive rate "
          f"{rate:.2e}, by channel {np.bincount(colours, minlength=4).tolist()}")
    assert rate <= 1e-5, (flagged, np.bincount(colours, minlength=4).tolist())
    assert header["NCOLD"] == int(np.count_nonzero(mask & COLD))
