"""Photon transfer after EMVA 1288 (release 4.0), on pairs of frames.

Per pair the temporal variance is half the variance of the difference (fixed patterns cancel)
and the signal is the mean of the pair; the dark level and dark variance at the same exposure
come from a dark pair. Symbols follow the standard: ``K`` system gain (DN/e-), so e-/ADU is
``1/K``; mu_y mean grey value, sigma2_y temporal variance, both in native ADU (DN).

* K: zero-intercept fit of (sigma2_y - sigma2_dark) against (mu_y - mu_dark) up to 70 % of
  saturation;
* saturation (EMVA): the point of maximum temporal variance; with a spread of pixel responses
  (PRNU, vignetting) it sits a few per cent below the level where single pixels clip, so the
  full well reported is that level: the largest mean signal of the ladder, where the output
  stops growing (the well, or the ADC's full scale when it comes first);
* temporal dark noise sigma_d = sqrt(sigma2_dark - 1/12) / K (e-);
* dynamic range (EMVA) mu_e.sat / mu_e.min with mu_e.min = sigma_dark / K + 1/2;
* PRNU: spatial standard deviation of the mean bright image (temporal part removed, the
  illumination's slow variation filtered out, defects excluded) over its signal; DSNU: spatial
  standard deviation of the mean dark image (temporal part removed) over K; both on the central
  block of at most ``SPATIAL_SIDE`` pixels a side;
* linearity error: half the spread of the relative deviations from a straight line fitted
  against exposure between 5 % and 95 % of saturation.

Pure numpy on arrays; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from calibd.capture.combine.pairs import PairSums
from calibd.capture.combine.pairs import pair_sums

U16 = npt.NDArray[np.uint16]
F64 = npt.NDArray[np.float64]

QUANT_VAR = 1.0 / 12.0  # quantisation noise, DN^2
FIT_MAX = 0.7  # K is fitted up to this fraction of saturation
DETREND_BOX = 15  # PRNU: pixels of the box that estimates the illumination's slow variation
DEFECT_SIGMA = 5.0  # PRNU/DSNU: pixels this many robust sigmas out are defects, not patterns
SPATIAL_SIDE = 1024  # PRNU/DSNU are taken on the central block of at most this many pixels a side


@dataclass(frozen=True)
class PairStats:
    """Mean and temporal variance (DN, DN^2) of a pair of frames."""

    mean: float
    var: float


def pair_stats(a: U16, b: U16) -> PairStats:
    """Mean of the pair and half the variance of its difference (one pass over the pair:
    :func:`capture.combine.pairs.pair_sums`)."""
    return stats_of(pair_sums(a, b))


def stats_of(s: PairSums) -> PairStats:
    """:class:`PairStats` from the exact sums of a pair."""
    sd = float(s.sum_d)
    var_d = (float(s.sum_dd) - sd * sd / s.n) / (s.n - 1)
    return PairStats((float(s.sum_a) + float(s.sum_b)) / (2.0 * s.n), var_d / 2.0)


def sample_block(img: npt.NDArray[Any], side: int = SPATIAL_SIDE) -> npt.NDArray[Any]:
    """The central block of at most ``side`` x ``side`` pixels (even origin): where the
    spatial statistics (PRNU, DSNU) are taken on a large sensor."""
    h, w = img.shape
    r0 = max(0, (h - side) // 4 * 2)
    c0 = max(0, (w - side) // 4 * 2)
    return img[r0 : r0 + min(h, side), c0 : c0 + min(w, side)]


def centre(img: U16, fraction: float) -> U16:
    """The central region covering ``fraction`` of each dimension (an even origin, so a CFA
    sub-plane keeps its phase)."""
    h, w = img.shape
    dh, dw = int(h * (1 - fraction) / 4) * 2, int(w * (1 - fraction) / 4) * 2
    return img[dh : h - dh, dw : w - dw]


@dataclass(frozen=True)
class Point:
    """One level of the flat ladder: exposure (s), signal and temporal variance above dark."""

    exposure_s: float
    mean: float  # mu_y (DN)
    var: float  # sigma2_y (DN^2)
    dark_mean: float
    dark_var: float

    @property
    def signal(self) -> float:
        return self.mean - self.dark_mean

    @property
    def noise_var(self) -> float:
        return self.var - self.dark_var


@dataclass(frozen=True)
class Transfer:
    """The photon-transfer results for one channel at one setting."""

    k_dn_per_e: float
    e_per_adu: float
    read_noise_adu: float  # sigma_y.dark, quantisation included (as measured)
    read_noise_e: float  # sigma_d (EMVA: quantisation removed)
    full_well_e: float  # largest mean signal of the ladder (where the output stops growing)
    saturation_e: float  # EMVA: the signal at the maximum temporal variance
    saturation_signal_adu: float  # that signal in DN
    linearity_limit_e: float  # highest signal still within 3 % of the straight line
    linearity_error_pct: float
    dynamic_range: float
    dynamic_range_stops: float
    dynamic_range_db: float
    prnu_pct: float | None
    dsnu_e: float | None
    points: int  # ladder levels used
    fit_points: int  # of them in the K fit


def fit_transfer(points: list[Point], read_var_adu: float,
                 prnu_pct: float | None = None, dsnu_adu: float | None = None) -> Transfer:
    """Fit K, the saturation and the rest from ladder points (sorted by exposure inside) and the
    temporal dark variance of a bias pair ``read_var_adu`` (DN^2). Raises ValueError when the
    ladder cannot give K (fewer than two usable points below saturation)."""
    pts = sorted(points, key=lambda p: p.exposure_s)
    if len(pts) < 3:
        raise ValueError(f"{len(pts)} ladder level(s): need at least 3")
    i_sat = max(range(len(pts)), key=lambda i: pts[i].var)
    sat = pts[i_sat].signal
    fit = [p for p in pts[: i_sat + 1] if 0 < p.signal <= FIT_MAX * sat]
    if len(fit) < 2:
        raise ValueError("fewer than two ladder levels below 70 % of saturation: the ladder "
                         "does not reach low enough")
    x = np.array([p.signal for p in fit])
    y = np.array([p.noise_var for p in fit])
    k = float(np.dot(x, y) / np.dot(x, x))
    if not k > 0:
        raise ValueError("the temporal variance does not grow with the signal: no light?")
    read_var = max(read_var_adu, 0.24)
    sigma_d = math.sqrt(max(read_var - QUANT_VAR, 0.0)) / k
    full_well = max(p.signal for p in pts) / k
    lin_err, lin_limit = _linearity(pts, sat)
    mu_min = math.sqrt(read_var) / k + 0.5
    dr = sat / k / mu_min
    return Transfer(
        k_dn_per_e=k, e_per_adu=1.0 / k, read_noise_adu=math.sqrt(read_var),
        read_noise_e=sigma_d, full_well_e=full_well, saturation_e=sat / k,
        saturation_signal_adu=sat, linearity_limit_e=lin_limit / k, linearity_error_pct=lin_err,
        dynamic_range=dr, dynamic_range_stops=math.log2(dr),
        dynamic_range_db=20.0 * math.log10(dr), prnu_pct=prnu_pct,
        dsnu_e=None if dsnu_adu is None else dsnu_adu / k, points=len(pts),
        fit_points=len(fit))


def _linearity(pts: list[Point], sat: float) -> tuple[float, float]:
    """(linearity error %, linearity limit in DN): a straight line of signal against exposure
    fitted between 5 % and 95 % of saturation; the error is half the spread of the relative
    deviations there; the limit is the highest signal (going up the ladder) whose deviation
    stays within 3 %."""
    use = [p for p in pts if 0.05 * sat <= p.signal <= 0.95 * sat]
    if len(use) < 2:
        return float("nan"), float("nan")
    t = np.array([p.exposure_s for p in use])
    s = np.array([p.signal for p in use])
    slope, icpt = np.polyfit(t, s, 1)
    dev = (s - (slope * t + icpt)) / (slope * t + icpt)
    err = float((dev.max() - dev.min()) / 2.0 * 100.0)
    limit = 0.0
    for p in pts:
        model = slope * p.exposure_s + icpt
        if model <= 0:
            continue
        if abs(p.signal - model) / model > 0.03:
            if p.signal > 0.05 * sat:
                break
            continue
        limit = p.signal
    return err, float(limit)


def prnu_pct(bright: tuple[U16, U16], dark: tuple[U16, U16], bright_var: float,
             dark_var: float) -> float:
    """PRNU (%) of a bright pair against its dark pair: spatial standard deviation of the mean
    bright image minus the dark image, the slow illumination pattern divided out (a
    ``DETREND_BOX`` box mean), defects beyond ``DEFECT_SIGMA`` robust sigmas excluded, the
    temporal part of both pairs removed."""
    b0, b1, d0, d1 = (sample_block(x) for x in (*bright, *dark))
    mb = (b0.astype(np.float64) + b1) / 2.0
    md = (d0.astype(np.float64) + d1) / 2.0
    sig = mb - md
    level = float(np.mean(sig))
    smooth = box_mean(sig, DETREND_BOX)
    rel = np.divide(sig, smooth, out=np.ones_like(sig), where=smooth > 0.1 * level)
    core = rel[DETREND_BOX:-DETREND_BOX, DETREND_BOX:-DETREND_BOX]
    keep = _inliers(core)
    temporal = (bright_var + dark_var) / 2.0 / (level * level)
    var = float(np.var(core[keep])) - temporal
    return 100.0 * math.sqrt(max(var, 0.0))


def dsnu_adu(a: U16, b: U16, temporal_var: float) -> float:
    """DSNU (DN): spatial standard deviation of the mean dark image of a pair, the temporal
    part removed, defects beyond ``DEFECT_SIGMA`` robust sigmas excluded."""
    m = (sample_block(a).astype(np.float64) + sample_block(b)) / 2.0
    keep = _inliers(m)
    return math.sqrt(max(float(np.var(m[keep])) - temporal_var / 2.0, 0.0))


def _inliers(x: F64) -> npt.NDArray[np.bool_]:
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med))) * 1.4826
    if mad == 0:
        return np.ones(x.shape, dtype=bool)
    return np.abs(x - med) <= DEFECT_SIGMA * mad


def box_mean(x: F64, size: int) -> F64:
    """Mean over a ``size`` x ``size`` box around each pixel (edges: the box shrinks)."""
    return _box1d(_box1d(x, size).T, size).T


def _box1d(x: F64, size: int) -> F64:
    """Mean over ``size`` rows around each row (cumulative sums; edges: fewer rows)."""
    half = size // 2
    n = x.shape[0]
    c = np.zeros((n + 1, *x.shape[1:]), dtype=np.float64)
    np.cumsum(x, axis=0, out=c[1:])
    idx = np.arange(n)
    hi = np.minimum(idx + half + 1, n)
    lo = np.maximum(idx - half, 0)
    return np.asarray((c[hi] - c[lo]) / (hi - lo)[:, None])


def unity_gain(gains: list[int], e_per_adu: list[float]) -> float | None:
    """The gain where e-/ADU = 1: log(e-/ADU) interpolated linearly in gain between the two
    measured gains around 1 (or extrapolated from a straight-line fit of all of them); None
    with fewer than two gains."""
    if len(gains) < 2:
        return None
    g = np.array(gains, dtype=np.float64)
    y = np.log(np.array(e_per_adu, dtype=np.float64))
    order = np.argsort(g)
    g, y = g[order], y[order]
    for i in range(len(g) - 1):
        if (y[i] >= 0 >= y[i + 1]) or (y[i] <= 0 <= y[i + 1]):
            if y[i] == y[i + 1]:
                return float(g[i])
            return float(g[i] + (0 - y[i]) * (g[i + 1] - g[i]) / (y[i + 1] - y[i]))
    slope, icpt = np.polyfit(g, y, 1)
    return None if slope == 0 else float(-icpt / slope)
