"""Bad pixel maps, one per camera, gain and binning.

* **Hot** pixels come from the master darks of that gain and binning (minus the master bias when
  they include it): a pixel is hot when its dark signal exceeds the local level (the median of
  its block, interpolated) by more than ``hot_sigma`` times the map's robust noise **and** by
  more than ``hot_factor - 1`` times the local dark signal. The second rule keeps the natural
  spread of dark current (a log-normal tail at 2-3x the median) and amp glow out of the map;
  the first keeps noise out when dark current is negligible.
* **Cold and dead** pixels come from the master flats of that binning (any gain, any filter): a
  pixel whose response is below ``cold_fraction`` of its local level. Dust shadows (a few to
  fifteen per cent) stay above it.

On a colour (Bayer) sensor both rules run on each CFA sub-plane separately (R, G1, G2, B: every
second pixel in both directions), so a pixel is judged against its same-colour neighbours with
that channel's own robust noise, and the block is half as many sub-plane pixels (the same area of
the sensor). A red pixel on a green-heavy flat is not "cold". The pattern comes from the master's
``BAYERPAT`` (and offsets, row order); the map stays in sensor coordinates, one map per mosaic.

The map is a uint8 FITS image: 0 good, bit 1 hot, bit 2 cold/dead; ``NHOT``, ``NCOLD`` and the
thresholds are in the header, the masters used in HISTORY, and as ``DATE-OBS`` the start of the
oldest master dark used: the library policy (``max_age_days.bpm``, invalidations, a changed
camera) judges the map by that date. A map without it (built by an earlier calibd) is built again
by the next ``masters build`` or run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from calibd.capture import __version__
from calibd.capture import cfa
from calibd.capture.config import MastersConfig
from calibd.capture.library.fitsio import write_atomic
from calibd.capture.library.headermap import master_row
from calibd.capture.library.index import Index
from calibd.capture.library.layout import camera_root
from calibd.capture.library.masters_table import MasterRow
from calibd.capture.library.policy import parse_utc
from calibd.capture.masters.build import load_float32
from calibd.capture.masters.levels import local_level
from calibd.capture.masters.store import master_path

log = logging.getLogger(__name__)
HOT, COLD = 1, 2
MAX_DARKS = 3


def robust_sigma(values: npt.NDArray[np.float32]) -> float:
    sample = values.reshape(-1)[:: max(1, values.size // 400_000)]
    med = float(np.median(sample))
    return 1.4826 * float(np.median(np.abs(sample - med)))


def hot_mask(dark: npt.NDArray[np.float32], cfg: MastersConfig) -> npt.NDArray[np.bool_]:
    local = local_level(dark, cfg.bpm_block_px)
    excess = dark - local
    sigma = robust_sigma(excess)
    threshold = np.maximum(cfg.hot_sigma * sigma,
                           (cfg.hot_factor - 1.0) * np.maximum(local, 0.0))
    mask: npt.NDArray[np.bool_] = excess > threshold
    return mask


def cold_mask(flat: npt.NDArray[np.float32], cfg: MastersConfig) -> npt.NDArray[np.bool_]:
    local = local_level(flat, cfg.bpm_block_px)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(local > 0, flat / local, 0.0)
    mask: npt.NDArray[np.bool_] = ratio < cfg.cold_fraction
    return mask


Detector = Callable[[npt.NDArray[np.float32], MastersConfig], npt.NDArray[np.bool_]]


def detect(detector: Detector, image: npt.NDArray[np.float32], pattern: str | None,
           cfg: MastersConfig) -> npt.NDArray[np.bool_]:
    """Run ``detector`` (:func:`hot_mask` or :func:`cold_mask`) on a mono image, or on each CFA
    sub-plane of a mosaic with ``pattern`` (same-colour neighbours, per-channel statistics,
    blocks of the same sensor area) and put the four answers back in sensor coordinates."""
    if pattern is None:
        return detector(image, cfg)
    sub_cfg = cfg.model_copy(update={"bpm_block_px": max(4, cfg.bpm_block_px // 2)})
    out = np.zeros(image.shape, dtype=np.bool_)
    planes, masks = cfa.channels(image, pattern), cfa.channels(out, pattern)
    for name, plane in planes.items():
        masks[name][...] = detector(np.ascontiguousarray(plane, dtype=np.float32), sub_cfg)
    return out


def master_pattern(path: Path, shape: tuple[int, int]) -> str | None:
    """The Bayer pattern of a master's data (row 0 as stored), None for a mono master."""
    return cfa.header_pattern(fits.getheader(path), shape[0])


def _bias_for(index: Index, dark: MasterRow) -> MasterRow | None:
    """The master bias of a with-bias master dark's settings (any set-point, same run first)."""
    if None in (dark.camera, dark.gain, dark.offset, dark.binning, dark.readout_mode):
        return None
    rows = index.calibrator_candidates(
        "bias", camera=str(dark.camera), gain=int(dark.gain or 0), offset=int(dark.offset or 0),
        binning=int(dark.binning or 1), readout_mode=str(dark.readout_mode),
        setpoint_c=float(dark.setpoint_c or 0.0), tolerance_c=1000.0,
        prefer_run=int(dark.run_id or 0))
    return rows[0] if rows else None


def _earliest_start(darks: list[MasterRow]) -> str | None:
    """The ``DATE-OBS`` of the oldest of ``darks`` that has a readable one (as its header has
    it), None when none has. The map is dated by it: hot pixels are what changes with time, so
    the library policy ages and expires the map with the darks it found them in. (The flats'
    cold and dead pixels stay, and any current flat of any filter takes part: an old flat of a
    filter seldom used must not make a new map look old.)"""
    dated = [(t, m.date_obs) for m in darks if (t := parse_utc(m.date_obs)) is not None]
    return min(dated, key=lambda d: d[0])[1] if dated else None


def bpm_keys(index: Index) -> list[tuple[str, int, int]]:
    """(camera, gain, binning) that have master darks."""
    return index.master_dark_settings()


def build_bpm(index: Index, camera: str, gain: int, binning: int, cfg: MastersConfig
              ) -> Path | None:
    """Build the map for one camera, gain and binning from the library's current masters.
    Returns the file, or None when there is no master dark to find hot pixels in (a with-bias
    dark counts when a master bias of its settings exists: hot pixels are found in their
    difference)."""
    root = index.root
    masters = index.masters()
    darks = sorted((m for m in masters if m.kind == "dark" and m.camera == camera
                    and m.gain == gain and m.binning == binning and m.current
                    and (m.bias_subtracted or _bias_for(index, m) is not None)),
                   key=lambda m: (-(m.exposure_s or 0), -(m.setpoint_c or 0)))[:MAX_DARKS]
    flats = [m for m in masters if m.kind == "flat" and m.camera == camera
             and m.binning == binning and m.current]
    if not darks:
        return None
    first = darks[0]
    mask: npt.NDArray[np.uint8] | None = None
    used: list[MasterRow] = []
    patterns: set[str | None] = set()
    runs: tuple[tuple[list[MasterRow], Detector, int], ...] = (
        (darks, hot_mask, HOT), (flats, cold_mask, COLD))
    for group, detector, flag in runs:  # the first dark sets the shape
        for m in group:
            data = load_float32(root / m.path)
            bias = _bias_for(index, m) if m.dark_convention == "with-bias" else None
            if bias is not None:  # a dark with the bias in it: the dark signal alone
                data = data - load_float32(root / bias.path)
            mask = np.zeros(data.shape, dtype=np.uint8) if mask is None else mask
            if data.shape != mask.shape:
                continue
            pattern = master_pattern(root / m.path, data.shape)
            patterns.add(pattern)
            mask[detect(detector, data, pattern, cfg)] |= flag
            used.append(m)
    assert mask is not None
    n_hot = int(np.count_nonzero(mask & HOT))
    n_cold = int(np.count_nonzero(mask & COLD))
    header = fits.Header()
    header["IMAGETYP"] = ("Bad Pixel Map", "0 good, 1 hot, 2 cold/dead")
    header["CAMNAME"] = camera
    if darks[0].camera_id:
        header["CAMERAID"] = darks[0].camera_id
    header["GAIN"] = (gain, "sensor gain the hot pixels were found at")
    header["XBINNING"] = binning
    header["YBINNING"] = binning
    if first.bit_depth is not None:
        header["BITDEPTH"] = (first.bit_depth, "native ADC bits of the camera")
    header["NCOMBINE"] = (len(used), "masters the map was made from")
    start = _earliest_start([m for m in used if m.kind == "dark"])
    if start is not None:
        header["DATE-OBS"] = (start, "UTC start of its oldest master dark")
        header["TIMESYS"] = ("UTC", "time scale of DATE-OBS")
    header["NHOT"] = (n_hot, "hot pixels")
    header["NCOLD"] = (n_cold, "cold or dead pixels")
    header["HOTSIG"] = (cfg.hot_sigma, "hot: excess > this x robust noise")
    header["HOTFACT"] = (cfg.hot_factor, "hot: and > this x the local dark level")
    header["COLDFRAC"] = (cfg.cold_fraction, "cold: response below this x local")
    header["BPMBLOCK"] = (cfg.bpm_block_px, "[px] block size of the local level")
    colour = {p for p in patterns if p is not None}
    if colour:
        header["BPMCFA"] = (True, "pixels judged against same-colour neighbours")
    if len(colour) == 1:  # the pattern of the masters' data, row 0 as stored (the map's too)
        header["BAYERPAT"] = (colour.pop(), "CFA of the masters: judged per channel")
        header["ROWORDER"] = ("TOP-DOWN", "row 0 is the top of the image")
    header["SWCREATE"] = f"calibd {__version__}"
    for m in used:
        header.add_history(f"from {Path(m.path).name}")
    out = master_path(camera_root(root, camera, None), "bpm", f"g{gain}_bin{binning}")
    out.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.PrimaryHDU(data=mask, header=header)
    write_atomic(out, mask, hdu.header)
    index.upsert_master(master_row(hdu.header, path=out.relative_to(root).as_posix(),
                                   inputs_digest=None))
    log.info("built %s: %d hot, %d cold/dead pixels", out.name, n_hot, n_cold)
    return out
