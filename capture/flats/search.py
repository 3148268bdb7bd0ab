"""Find the exposure (or panel brightness) that puts a flat at its target level.

The level is the median of the frame's central region. The model is ``level = a * x + b`` with
``b`` the bias level, so the first step is proportional on the signal above bias; once two usable
frames exist, ``a`` and ``b`` are fitted on them. Every step's ratio is clamped; when the model
points outside a bracket already established (one frame too dark, one too bright), the search
bisects the bracket instead. Saturated and too-dark frames step by the clamp ratio. The search
ends with a clear :class:`SearchFailed` after ``max_frames`` frames or as soon as the answer is
provably out of range (no light, too dim at the longest exposure, too bright at the shortest).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Literal

FailKind = Literal["no-light", "too-dim", "too-bright", "not-converged"]


class SearchFailed(Exception):
    """The target level cannot be reached (or was not reached within the frame budget)."""

    def __init__(self, kind: FailKind, message: str, frames: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.frames = frames


@dataclass(frozen=True)
class SearchSpec:
    target_adu: float  # median level wanted (raw ADU, bias included)
    tolerance_adu: float
    x_min: float
    x_max: float
    bias_adu: float  # level at zero light
    saturation_adu: float = 65535.0
    max_frames: int = 8
    max_ratio: float = 30.0  # a step changes x by at most this factor
    min_signal_adu: float = 2.0  # below this above the bias, a frame counts as dark
    integer: bool = False  # brightness: whole numbers
    what: str = "exposure"  # for messages: "exposure" or "brightness"
    unit: str = "s"

    def fmt(self, x: float) -> str:
        return f"{x:.0f}" if self.integer else f"{x:.4g} {self.unit}"


@dataclass
class Sample:
    x: float
    level: float


@dataclass
class SearchResult:
    x: float
    level: float
    frames: int
    samples: list[Sample] = field(default_factory=list)


def within(spec: SearchSpec, level: float) -> bool:
    return abs(level - spec.target_adu) <= spec.tolerance_adu


def search(spec: SearchSpec, measure: Callable[[float], float],
           start: float | None = None) -> SearchResult:
    """Run the search; ``measure(x)`` takes one test frame and returns its level.

    Blocks for the frames it takes (at most ``spec.max_frames``). Raises SearchFailed.
    """
    x = _clamp(spec, start if start is not None else math.sqrt(spec.x_min * spec.x_max))
    x = float(round(x)) if spec.integer else _round_sig(x, 4)
    samples: list[Sample] = []
    lo: float | None = None  # largest x known to give too little
    hi: float | None = None  # smallest x known to give too much
    for n in range(1, spec.max_frames + 1):
        level = measure(x)
        samples.append(Sample(x, level))
        if within(spec, level):
            return SearchResult(x, level, n, samples)
        signal = level - spec.bias_adu
        saturated = level >= 0.98 * spec.saturation_adu or _plateau(spec, samples)
        if saturated and level < spec.target_adu:
            raise SearchFailed("too-bright", f"the sensor saturates at about {level:.0f} ADU, "
                               f"below the target {spec.target_adu:.0f} ADU: lower the target "
                               "or the gain", n)
        dark = signal < spec.min_signal_adu
        if level > spec.target_adu:
            hi = x if hi is None else min(hi, x)
            if x <= spec.x_min:
                raise SearchFailed("too-bright", _too_bright(spec, x, level, saturated), n)
        else:
            lo = x if lo is None else max(lo, x)
            if x >= spec.x_max:
                if all(s.level - spec.bias_adu < spec.min_signal_adu for s in samples):
                    raise SearchFailed("no-light", _no_light(spec, x, level), n)
                raise SearchFailed("too-dim", _too_dim(spec, x, level), n)
        if saturated:
            proposal = x / spec.max_ratio
        elif dark:
            proposal = x * spec.max_ratio
        else:
            proposal = _model_step(spec, samples, x, signal)
        ratio = proposal / x
        proposal = x * min(spec.max_ratio, max(1.0 / spec.max_ratio, ratio))
        if lo is not None and hi is not None and not lo < proposal < hi:
            proposal = math.sqrt(lo * hi) if lo > 0 else (lo + hi) / 2  # bisection fallback
        new = _clamp(spec, _round_sig(proposal, 4))
        if spec.integer:
            new = float(round(new))
            if new == x:
                new = x + (1.0 if level < spec.target_adu else -1.0)
            new = _clamp(spec, new)
        if new == x:  # pinned at a limit: the limit itself was just measured
            break
        x = new
    best = min(samples, key=lambda s: abs(s.level - spec.target_adu))
    raise SearchFailed(
        "not-converged",
        f"no {spec.what} within ±{spec.tolerance_adu:.0f} ADU of {spec.target_adu:.0f} ADU after "
        f"{len(samples)} frames (closest: {spec.fmt(best.x)} gave {best.level:.0f} ADU)",
        len(samples))


def _model_step(spec: SearchSpec, samples: list[Sample], x: float, signal: float) -> float:
    usable = [s for s in samples
              if s.level < 0.98 * spec.saturation_adu
              and s.level - spec.bias_adu >= spec.min_signal_adu][-4:]
    if len({s.x for s in usable}) >= 2:
        n = len(usable)
        mx = sum(s.x for s in usable) / n
        my = sum(s.level for s in usable) / n
        sxx = sum((s.x - mx) ** 2 for s in usable)
        a = sum((s.x - mx) * (s.level - my) for s in usable) / sxx
        if a > 0:
            b = my - a * mx
            return (spec.target_adu - b) / a
    # One usable frame: proportional on the signal above the bias.
    return x * (spec.target_adu - spec.bias_adu) / signal


def _plateau(spec: SearchSpec, samples: list[Sample]) -> bool:
    """Two lit frames 1.5x apart in x with the same level (within 0.5 %): the sensor clips."""
    last = samples[-1]
    if last.level - spec.bias_adu < 0.1 * (spec.target_adu - spec.bias_adu):
        return False
    for s in samples[:-1]:
        lo, hi = sorted((s, last), key=lambda q: q.x)
        if lo.x > 0 and hi.x / lo.x >= 1.5 and abs(hi.level - lo.level) <= 0.005 * hi.level:
            return True
    return False


def _round_sig(x: float, digits: int) -> float:
    """``x`` to ``digits`` significant digits (exposures like 1.225 s, not 1.22474487 s)."""
    if x <= 0:
        return x
    return round(x, digits - 1 - math.floor(math.log10(x)))


def _clamp(spec: SearchSpec, x: float) -> float:
    return min(spec.x_max, max(spec.x_min, x))


def _too_bright(spec: SearchSpec, x: float, level: float, saturated: bool) -> str:
    state = " (saturated)" if saturated else ""
    fix = "lower the panel brightness" if spec.what == "exposure" else \
        "shorten the fixed exposure"
    return (f"too bright: even the shortest {spec.what} {spec.fmt(x)} gives {level:.0f} ADU"
            f"{state}, target {spec.target_adu:.0f} ADU: {fix}")


def _too_dim(spec: SearchSpec, x: float, level: float) -> str:
    fix = "raise the panel brightness or max_exposure_s" if spec.what == "exposure" else \
        "lengthen the fixed exposure"
    return (f"too dim: the longest {spec.what} {spec.fmt(x)} gives only {level:.0f} ADU of "
            f"{spec.target_adu:.0f} ADU: {fix}")


def _no_light(spec: SearchSpec, x: float, level: float) -> str:
    return (f"no light: even at {spec.what} {spec.fmt(x)} the level stays at the bias "
            f"({level:.0f} ADU): is the panel on and in front of the camera (cover closed), "
            "or is the sky bright enough?")
