"""Per-frame acceptance: temperature drift, light leaks and saturation in dark frames.

A frame that fails is not written; it is recorded as rejected in the run journal and retaken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibd.capture.plans.cells import Cell
from calibd.capture.plans.model import Checks
from calibd.capture.plans.model import Cooling
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import Frame

_SAMPLE_TARGET = 200_000  # pixels sampled for the robust level


@dataclass(frozen=True)
class FrameStats:
    level_adu: float  # median of the central region
    noise_adu: float  # 1.4826 x MAD of the same sample
    saturated_fraction: float  # of the whole frame


def frame_stats(data: np.ndarray, saturation_adu: int = 65535) -> FrameStats:
    """Robust statistics of one frame. Cheap: the centre half, subsampled to ~200k pixels."""
    h, w = data.shape
    centre = data[h // 4 : h - h // 4 or h, w // 4 : w - w // 4 or w]
    step = max(1, int(np.sqrt(centre.size / _SAMPLE_TARGET)))
    sample = centre[::step, ::step].astype(np.float32)
    level = float(np.median(sample))
    mad = float(np.median(np.abs(sample - level)))
    full_step = max(1, int(np.sqrt(data.size / _SAMPLE_TARGET)))
    saturated = float(np.mean(data[::full_step, ::full_step] >= saturation_adu))
    return FrameStats(level, 1.4826 * mad, saturated)


@dataclass
class Verdict:
    ok: bool
    reason: str = ""
    kind: str = ""  # "temperature", "light-leak", "saturated"


class DarkReference:
    """Levels of accepted dark-type frames, per cell and per bias settings, for leak checks."""

    def __init__(self) -> None:
        self._cell_levels: dict[str, list[float]] = {}
        self._bias_level: dict[tuple[int, int, int, str, float], float] = {}

    def add(self, cell: Cell, level: float) -> None:
        self._cell_levels.setdefault(cell.key, []).append(level)
        if cell.kind == "bias":
            levels = self._cell_levels[cell.key]
            self._bias_level[_bias_key(cell)] = float(np.median(levels))

    def seed_bias(self, cell: Cell, level: float) -> None:
        """Use a level from the index (an earlier session) as the bias reference."""
        self._bias_level.setdefault(_bias_key(cell), level)

    def reference(self, cell: Cell) -> tuple[float | None, bool]:
        """(reference level, whether it comes from this cell's own frames)."""
        levels = self._cell_levels.get(cell.key)
        if levels:
            return float(np.median(levels)), True
        return self._bias_level.get(_bias_key(cell)), False


def _bias_key(cell: Cell) -> tuple[int, int, int, str, float]:
    return (cell.gain, cell.offset, cell.binning, cell.readout_mode, cell.setpoint_c)


def settings_mismatch(wanted: CaptureSettings, applied: CaptureSettings) -> str | None:
    """What the camera applied (as it read the values back, or as a frame says) that differs
    from what the cell asked for; None when everything matches. A frame taken with other
    settings must never be filed under the cell."""
    diffs = [f"{name.replace('_', '-')} {getattr(applied, name)!r} instead of "
             f"{getattr(wanted, name)!r}"
             for name in ("gain", "offset", "binning", "readout_mode")
             if getattr(applied, name) != getattr(wanted, name)]
    if not diffs:
        return None
    return "the camera did not apply the requested settings: it reports " + ", ".join(diffs)


def judge(
    frame: Frame,
    stats: FrameStats,
    cell: Cell,
    cooling: Cooling,
    checks: Checks,
    refs: DarkReference,
) -> Verdict:
    """Accept or reject one frame of ``cell``."""
    tol = cooling.frame_tolerance_c
    for label, temp in (("start", frame.temp_start_c), ("end", frame.temp_end_c)):
        if temp is not None and abs(temp - cell.setpoint_c) > tol:
            return Verdict(False, f"sensor at {temp:.1f} °C at the {label} of the exposure "
                                  f"(set-point {cell.setpoint_c:g} ± {tol:g} °C)", "temperature")
    if not cell.is_dark:
        return Verdict(True)
    if stats.saturated_fraction > checks.max_saturated_fraction:
        return Verdict(False, f"{stats.saturated_fraction:.2%} of the pixels saturated in a dark "
                              "frame: light is reaching the sensor", "light-leak")
    ref, own = refs.reference(cell)
    if ref is not None:
        # Against earlier frames of the same cell the level must agree closely; against the bias
        # it may rise by the dark current, which grows with exposure.
        allowance = checks.light_leak_adu if own else \
            checks.light_leak_adu * max(1.0, cell.exposure_s / 60.0)
        if stats.level_adu > ref + allowance:
            basis = "earlier frames of this cell" if own else "the bias level"
            return Verdict(False, f"level {stats.level_adu:.0f} ADU is {stats.level_adu - ref:.0f}"
                                  f" ADU above {basis} ({ref:.0f} ADU): light leak?",
                           "light-leak")
    return Verdict(True)
