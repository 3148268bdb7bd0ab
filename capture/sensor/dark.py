"""The dark-current model: per setting and set-point the dark current (e-/s/pixel) of the
typical pixel and its hot-pixel tail, the amp-glow region and its growth with exposure, and the
doubling temperature fitted across set-points.

Per set-point the mean bias image is subtracted from the mean dark image at each exposure (by
the caller, as the images are averaged).
Hot pixels are those far above their column's and row's median at the longest exposure; the
amp glow is the band of columns (and rows) at an edge whose mean stands above the rest. The
dark current is the slope, against exposure, of the mean over the remaining pixels.
Arrays in, no I/O; the hot-pixel search is one pass of a kernel (:mod:`capture.combine.pairs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from calibd.capture.combine.pairs import above_background

Img = npt.NDArray[np.floating[Any]]  # float32 or float64 images
HOT_FACTOR = 10.0  # a pixel this many times the median dark signal (and well out of noise) is hot
HOT_SIGMA = 8.0
GLOW_SMOOTH = 9  # columns/rows averaged along the edge profile
GLOW_EXCESS = 0.02  # an edge band is glow while it stands this much above the rest ...
GLOW_SIGMA = 4.0  # ... and this many noise sigmas
SAMPLE_PIXELS = 500_000  # medians and percentiles from a regular sample of about this many


@dataclass(frozen=True)
class Glow:
    """Where the amp glow is and how it grows: edge bands as (side, width in pixels)."""

    bands: list[tuple[str, int]]
    excess_e: list[tuple[float, float]]  # (exposure s, mean glow e- above the dark current)
    rate_e_per_s: float  # mean over the region


@dataclass(frozen=True)
class SetpointDark:
    """The dark current at one set-point."""

    setpoint_c: float
    temperature_c: float  # mean sensor temperature of the darks
    exposures_s: list[float]
    rate_e_per_s: float  # typical pixel (hot pixels and glow excluded), mean
    rate_all_e_per_s: float  # every pixel, hot ones and glow included
    hot_fraction: float
    hot_median_e_per_s: float | None
    p999_e_per_s: float  # 99.9th percentile of the per-pixel rate
    glow: Glow


def setpoint_dark(setpoint_c: float, temperature_c: float, excess: dict[float, Img],
                  e_per_adu: float, read_var_adu: float) -> SetpointDark:
    """Model the darks of one set-point from the mean dark image less the mean bias image
    (DN) at each exposure, ``excess``. ``read_var_adu``: temporal variance of the mean bias
    image (for the noise of the detection thresholds). Medians and the percentile come from a
    regular sample of the pixels (a 26 MP frame needs no more). Raises ValueError with fewer
    than two exposures."""
    ex = dict(sorted(excess.items()))
    times = sorted(ex)
    if len(times) < 2:
        raise ValueError(f"darks at {len(times)} exposure(s) at {setpoint_c:g} °C: need 2")
    longest = ex[times[-1]]
    h, w = longest.shape
    step = max(1, int(math.sqrt(h * w / SAMPLE_PIXELS)))
    med = float(np.median(longest[::step, ::step]))
    noise = math.sqrt(max(read_var_adu, 0.25) * 2.0 + max(med, 0.0) / max(e_per_adu, 1e-9))
    # Against the local background (column and row medians: the glow varies along the edges).
    # Medians along contiguous rows (a copy each way: the same values, quicker to select).
    cols = np.median(np.ascontiguousarray(longest[::step].T), axis=1)
    rows = np.median(longest[:, ::step], axis=1)
    hot = above_background(longest, cols, rows, med,
                           max(HOT_FACTOR * max(med, 0.0), HOT_SIGMA * noise))
    flat = {t: x.reshape(-1) for t, x in ex.items()}
    bands = _glow_bands(longest, hot, noise)
    in_glow = np.zeros(0, dtype=np.int64)  # flat indices, row-major like ``hot``
    out_idx = hot
    if bands:
        glow_mask = np.zeros(longest.shape, dtype=bool)
        for side, width in bands:
            _mark(glow_mask, side, width)
        out_mask = glow_mask.copy()
        out_mask.reshape(-1)[hot] = True
        out_idx = np.flatnonzero(out_mask)
        del out_mask
        glow_mask.reshape(-1)[hot] = False
        in_glow = np.flatnonzero(glow_mask)
        del glow_mask
    # Sums over every pixel, less those over the (few) hot and glow pixels.
    totals = np.array([float(np.sum(ex[t])) for t in times])
    outs = np.array([float(np.sum(flat[t][out_idx], dtype=np.float64)) for t in times])
    means = (totals - outs) / max(longest.size - out_idx.size, 1)
    t_arr = np.array(times)
    slope = float(np.polyfit(t_arr, means, 1)[0])
    all_means = totals / longest.size
    slope_all = float(np.polyfit(t_arr, all_means, 1)[0])
    scale = e_per_adu / times[-1]
    hot_rates = flat[times[-1]][hot] * scale
    sample = longest[::step, ::step].ravel()
    p999 = float(np.partition(sample, int(0.999 * (sample.size - 1)))[
        int(0.999 * (sample.size - 1))]) * scale
    glow_excess: list[tuple[float, float]] = []
    if bands:
        for t, m in zip(times, means, strict=True):
            g = float(np.mean(flat[t][in_glow], dtype=np.float64))
            glow_excess.append((t, (g - m) * e_per_adu))
    glow_rate = float(np.polyfit(t_arr, [g for _, g in glow_excess], 1)[0]) \
        if len(glow_excess) >= 2 else 0.0
    return SetpointDark(
        setpoint_c=setpoint_c, temperature_c=temperature_c, exposures_s=times,
        rate_e_per_s=slope * e_per_adu, rate_all_e_per_s=slope_all * e_per_adu,
        hot_fraction=hot.size / longest.size,
        hot_median_e_per_s=float(np.median(hot_rates)) if hot_rates.size else None,
        p999_e_per_s=p999, glow=Glow(bands, glow_excess, glow_rate))


def _glow_bands(img: Img, hot: npt.NDArray[np.int64], noise: float) -> list[tuple[str, int]]:
    """Edge bands (left/right columns, top/bottom rows) whose mean stands out; ``hot``: the
    flat indices of the hot pixels."""
    hot_r, hot_c = np.divmod(hot, img.shape[1])
    hot_v = img.reshape(-1)[hot].astype(np.float64)
    out: list[tuple[str, int]] = []
    for axis, sides in ((0, ("left", "right")), (1, ("top", "bottom"))):
        # Mean per column (axis 0) or per row (axis 1) without the (few) hot pixels.
        where = hot_c if axis == 0 else hot_r
        size = img.shape[1 - axis]
        total = img.sum(axis=axis, dtype=np.float64) - np.bincount(where, hot_v, size)
        count = np.maximum(img.shape[axis] - np.bincount(where, minlength=size), 1)
        prof = total / count
        n_other = img.shape[axis]
        k = min(GLOW_SMOOTH, max(1, prof.size // 8))
        smooth = np.convolve(prof, np.ones(k) / k, mode="same")
        sigma = noise / math.sqrt(n_other * k)
        lo, hi = 0, prof.size
        for _ in range(4):  # the baseline without the bands found so far
            base = float(np.median(smooth[lo + k : hi - k])) if hi - lo > 3 * k else \
                float(np.median(smooth))
            limit = base + max(GLOW_EXCESS * abs(base), GLOW_SIGMA * sigma)
            new_lo = 0
            while new_lo < prof.size // 2 and smooth[new_lo] > limit:
                new_lo += 1
            new_hi = prof.size
            while new_hi > prof.size // 2 and smooth[new_hi - 1] > limit:
                new_hi -= 1
            if (new_lo, new_hi) == (lo, hi):
                break
            lo, hi = new_lo, new_hi
        if lo > 0:
            out.append((sides[0], lo + k // 2))
        if hi < prof.size:
            out.append((sides[1], prof.size - hi + k // 2))
    return out


def _mark(mask: npt.NDArray[np.bool_], side: str, width: int) -> None:
    if side == "left":
        mask[:, :width] = True
    elif side == "right":
        mask[:, mask.shape[1] - width :] = True
    elif side == "top":
        mask[:width, :] = True
    else:
        mask[mask.shape[0] - width :, :] = True


def doubling_temperature(points: list[SetpointDark]) -> float | None:
    """T_d (°C) from a straight-line fit of log2(dark current) against the sensor temperature;
    None with fewer than two set-points or a non-positive rate or slope."""
    use = [p for p in points if p.rate_e_per_s > 0]
    if len(use) < 2:
        return None
    t = np.array([p.temperature_c for p in use])
    y = np.log2(np.array([p.rate_e_per_s for p in use]))
    slope = float(np.polyfit(t, y, 1)[0])
    return 1.0 / slope if slope > 0 else None
