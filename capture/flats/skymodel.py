"""Predict twilight-flat exposures while the sky changes.

The sky's count rate is modelled as ``rate(t) = exp(alpha + beta * t)``: exponential in time, as
twilight is (Tyson & Gal 1993). ``alpha`` and ``beta`` are fitted on the last frames (rate =
signal / exposure, assigned to mid-exposure). With fewer than two frames, ``beta`` comes from the
sun's rate of change and a nominal slope of 0.45 dex per degree of sun altitude. The exposure that
collects ``signal`` ADU starting at ``t0`` solves ``signal = ∫ rate dt`` over the exposure:
``e = -tau * ln(1 - signal / (rate(t0) * tau))`` with ``tau = -1 / beta`` (dusk: tau > 0, the sky
dims during the exposure; dawn: tau < 0). When the sky will never deliver the signal (dusk, too
late) the prediction is infinite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field

NOMINAL_DEX_PER_DEG = 0.45
FIT_FRAMES = 6


@dataclass
class SkyModel:
    """Rate samples (clock seconds, ADU/s above bias) and the fallback slope."""

    fallback_beta: float = 0.0  # 1/s, from the sun's motion
    samples: list[tuple[float, float]] = field(default_factory=list)

    @staticmethod
    def beta_from_sun(sun_rate_deg_per_s: float) -> float:
        return math.log(10.0) * NOMINAL_DEX_PER_DEG * sun_rate_deg_per_s

    def add(self, start_s: float, exposure_s: float, signal_adu: float) -> None:
        """Record one frame (start time, exposure, level above bias)."""
        if exposure_s > 0 and signal_adu > 0:
            self.samples.append((start_s + exposure_s / 2, signal_adu / exposure_s))
            del self.samples[:-FIT_FRAMES]

    def fit(self) -> tuple[float, float] | None:
        """(alpha, beta) of ln(rate) = alpha + beta * t, or None without samples."""
        if not self.samples:
            return None
        if len(self.samples) == 1 or len({t for t, _ in self.samples}) == 1:
            t, rate = self.samples[-1]
            return math.log(rate) - self.fallback_beta * t, self.fallback_beta
        n = len(self.samples)
        ts = [t for t, _ in self.samples]
        ys = [math.log(r) for _, r in self.samples]
        mt, my = sum(ts) / n, sum(ys) / n
        stt = sum((t - mt) ** 2 for t in ts)
        beta = sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / stt
        return my - beta * mt, beta

    def rate_at(self, t: float) -> float | None:
        fit = self.fit()
        if fit is None:
            return None
        alpha, beta = fit
        return math.exp(alpha + beta * t)

    def exposure_for(self, signal_adu: float, start_s: float) -> float | None:
        """Exposure (s) that collects ``signal_adu`` starting at ``start_s``; inf if the sky
        never will; None without samples."""
        fit = self.fit()
        if fit is None:
            return None
        alpha, beta = fit
        rate = math.exp(alpha + beta * start_s)
        if abs(beta) < 1e-9:
            return signal_adu / rate
        tau = -1.0 / beta
        arg = 1.0 - signal_adu / (rate * tau)
        if arg <= 0:
            return math.inf
        return -tau * math.log(arg)
