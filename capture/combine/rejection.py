"""Outlier-rejection settings for master combination, and their exact definitions.

Every method works per pixel on the N samples (one per frame) of that pixel and produces the set
of *kept* samples; the combination (mean or median) then uses only the kept samples. If a method
rejects every sample of a pixel (possible only with very small thresholds), that pixel falls back
to the median of all its samples; the samples still count as rejected.

All statistics below are computed in float64 from the float32 samples, in the order stated, so
that the numba and the pure-numpy kernels (and astropy/ccdproc) take the same decisions.

``"sigma"`` -- sigma clipping, the semantics of
    ``astropy.stats.sigma_clip(data, axis=0, sigma_lower=sigma_low, sigma_upper=sigma_high,
    maxiters=iterations or None, cenfunc=center, stdfunc=spread)``:

    1. the working set starts as all samples;
    2. centre ``c`` = median (mean of the two middle values for an even count) or mean of the
       working set; spread ``s`` = standard deviation about the mean (``spread="std"``): the
       population one, divided by N (``stddev="population"``, ddof=0: astropy, numpy, ccdproc)
       or the sample one, divided by N - 1 (``stddev="sample"``, ddof=1: Siril); or
       ``1.482602218505602 * median(|x - median|)`` (``spread="mad"``: the MAD scaled to a
       Gaussian sigma, astropy's ``mad_std``; the MAD is always taken about the median, even
       when ``center="mean"``);
    3. bounds ``lo = c - sigma_low * s``, ``hi = c + sigma_high * s``;
    4. the working set keeps the samples with ``lo <= x <= hi``; stop when nothing changed, when
       nothing is left, or after ``iterations`` passes (``iterations=0`` means until nothing
       changes; that takes at most N passes, as each pass that changes the set removes a sample);
    5. the *kept* samples are all samples (including ones dropped in earlier passes) within the
       last bounds, exactly like astropy's final mask.

    With ``iterations=1, center="median", spread="std"`` this is what ``ccdproc.combine(...,
    sigma_clip=True, sigma_clip_func=np.ma.median, sigma_clip_dev_func=np.ma.std)`` does (ccdproc
    hard-codes a single pass). With ``iterations=0, center="median", spread="std",
    stddev="sample"`` it is Siril's sigma clipping (``stack ... rej s``): Siril drops samples for
    good where step 5 keeps every sample within the last bounds, which differs only for a sample
    outside one pass's bounds and inside a later, wider pass's (and Siril stops rejecting when 4
    samples would be left). Sums run in frame order, as numpy's do, so decisions match ccdproc
    bit for bit; astropy's C implementation of repeated passes sums in a permuted order, so for
    ``iterations != 1`` a sample lying within ~1e-16 (relative) of a bound may be decided
    differently.

``"winsorized"`` -- winsorized sigma clipping (after PixInsight / Siril). Same pass structure as
    ``"sigma"`` (steps 1, 4 and 5), but each pass estimates a robust sigma first:

    a. ``m`` = median of the working set, ``s`` = its population standard deviation;
    b. up to 10 times: winsorize the working set at ``m +- 1.5 s`` (each value clamped into that
       interval, starting again from the unclamped values), ``s' = 1.134 * std(clamped)``;
       stop when ``|s' - s| <= 5e-4 * s``; ``s = s'``;
    c. bounds ``lo = m - sigma_low * s``, ``hi = m + sigma_high * s``.

    ``center`` and ``spread`` are ignored (the centre is always the median).

``"minmax"`` -- drop the ``n_low`` lowest and ``n_high`` highest samples of every pixel (by rank,
    so exactly that many, whatever the ties), like ``ccdproc``'s ``clip_extrema``.

``"percentile"`` -- keep the samples with ``P(percentile_low) <= x <= P(percentile_high)``, where
    ``P(q)`` is ``numpy.percentile(samples, q)`` with the default ``"linear"`` method: the value at
    the fractional rank ``q / 100 * (N - 1)`` of the sorted samples, linearly interpolated between
    its two neighbours. Samples equal to a bound are kept.

``"none"`` -- keep everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

RejectionMethod = Literal["sigma", "winsorized", "minmax", "percentile", "none"]
Center = Literal["median", "mean"]
Spread = Literal["std", "mad"]
StdDev = Literal["population", "sample"]

_METHODS = ("sigma", "winsorized", "minmax", "percentile", "none")

#: Scale from the median absolute deviation to a Gaussian sigma (astropy's ``mad_std`` constant).
MAD_TO_SIGMA = 1.482602218505602
#: Winsorization: clamp at this many sigma while estimating the robust sigma.
WINSOR_CLAMP_SIGMA = 1.5
#: Winsorization: correction of the clamped standard deviation to a Gaussian sigma.
WINSOR_CORRECTION = 1.134
#: Winsorization: relative change of sigma below which its estimate has converged.
WINSOR_TOLERANCE = 5e-4
#: Winsorization: at most this many clamping rounds per pass.
WINSOR_MAX_ROUNDS = 10


@dataclass(frozen=True)
class Rejection:
    """How outliers are rejected before combination (see the module docstring for definitions).

    Raises :class:`ValueError` from the constructor when a parameter is out of range.
    """

    method: RejectionMethod = "sigma"
    #: lower / upper threshold in units of sigma (``"sigma"`` and ``"winsorized"``); > 0.
    sigma_low: float = 3.0
    sigma_high: float = 3.0
    #: centre and spread estimators of ``"sigma"``.
    center: Center = "median"
    spread: Spread = "std"
    #: ``spread="std"``: divide by N (``"population"``, like ccdproc) or N - 1 (``"sample"``,
    #: like Siril).
    stddev: StdDev = "population"
    #: number of clipping passes; ``0`` or ``None`` = until nothing changes.
    iterations: int | None = 1
    #: ``"minmax"``: how many of the lowest / highest samples to drop per pixel.
    n_low: int = 1
    n_high: int = 1
    #: ``"percentile"``: keep samples between these percentiles (0..100, inclusive).
    percentile_low: float = 10.0
    percentile_high: float = 90.0

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"unknown rejection method {self.method!r}; use one of {_METHODS}")
        if self.center not in ("median", "mean"):
            raise ValueError(f"center must be 'median' or 'mean', not {self.center!r}")
        if self.spread not in ("std", "mad"):
            raise ValueError(f"spread must be 'std' or 'mad', not {self.spread!r}")
        if self.stddev not in ("population", "sample"):
            raise ValueError(f"stddev must be 'population' or 'sample', not {self.stddev!r}")
        for name in ("sigma_low", "sigma_high"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, not {value!r}")
        if self.iterations is not None and (
            not isinstance(self.iterations, int) or self.iterations < 0
        ):
            raise ValueError(f"iterations must be an integer >= 0 or None, not {self.iterations!r}")
        for name in ("n_low", "n_high"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, not {value!r}")
        lo, hi = self.percentile_low, self.percentile_high
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo <= hi <= 100.0):
            raise ValueError(
                "percentiles must satisfy 0 <= percentile_low <= percentile_high <= 100, "
                f"not ({lo!r}, {hi!r})"
            )

    @property
    def ddof(self) -> int:
        """Delta degrees of freedom of the ``"sigma"`` standard deviation (0 or 1)."""
        return 1 if self.stddev == "sample" else 0

    @property
    def max_passes(self) -> int:
        """Clipping passes as an integer: ``0`` means "until nothing changes"."""
        return self.iterations or 0

    @property
    def min_frames(self) -> int:
        """The fewest frames this method can work with.

        ``"none"`` needs 1; ``"sigma"``, ``"winsorized"`` and ``"percentile"`` need 3 (with fewer
        samples there is no meaningful outlier); ``"minmax"`` needs ``n_low + n_high + 1`` so that
        at least one sample is left.
        """
        if self.method == "none":
            return 1
        if self.method == "minmax":
            return self.n_low + self.n_high + 1
        return 3

    def describe(self) -> str:
        """A short human-readable summary, e.g. ``"sigma clipping 3/3 sigma around the median"``."""
        if self.method == "none":
            return "no rejection"
        if self.method == "minmax":
            return f"min/max rejection of {self.n_low} lowest and {self.n_high} highest"
        if self.method == "percentile":
            return f"percentile clipping {self.percentile_low:g}..{self.percentile_high:g}"
        passes = "until converged" if self.max_passes == 0 else f"{self.max_passes} pass(es)"
        if self.method == "winsorized":
            return (
                f"winsorized sigma clipping {self.sigma_low:g}/{self.sigma_high:g} sigma, {passes}"
            )
        spread = "MAD-std" if self.spread == "mad" else f"{self.stddev} std"
        return (
            f"sigma clipping {self.sigma_low:g}/{self.sigma_high:g} sigma around the "
            f"{self.center} ({spread}), {passes}"
        )
