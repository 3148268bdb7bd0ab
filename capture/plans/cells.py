"""Cells: the unit of a plan that the sequencer captures and the library counts.

A cell is one combination of kind, gain, offset, binning, read-out mode, set-point, exposure and
filter, with the number of frames wanted; a flat cell also carries its set's settings. Its
:attr:`Cell.key` is stable text used in the index, in FITS headers (``CELLKEY``) and for resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field
from typing import Literal

from calibd.capture.plans.model import FlatSet
from calibd.capture.plans.model import LadderOptions

Kind = Literal["bias", "dark", "flat", "darkflat"]

KIND_ORDER: dict[str, int] = {"bias": 0, "dark": 1, "flat": 2, "darkflat": 3}


def fmt_number(value: float) -> str:
    """Shortest faithful text for a number: 300.0 -> '300', 0.5 -> '0.5', -10.0 -> '-10'."""
    text = f"{value:.6g}"
    return "0" if text == "-0" else text


# The top of a sensor set's flat ladder, as fractions of the signal where the sensor saturates:
# dense around 1 so the variance roll-over (the full well) is well sampled; below them the
# ladder is geometric from the lowest level, and ``beyond`` ends it.
LADDER_TOP: tuple[float, ...] = (0.86, 0.92, 0.95, 0.97, 0.99, 1.01, 1.04, 1.1)


@dataclass(frozen=True)
class Ladder:
    """Where a flat cell of a sensor set sits on its ladder (``index`` of ``options.levels``).
    ``beyond``: the options' ``beyond`` resolved against the camera, and ``beyond_from`` where
    that value came from (:func:`capture.plans.resolve.ladder_beyond`)."""

    index: int
    options: LadderOptions
    beyond: float
    beyond_from: str

    def fraction(self, span_adu: float) -> float:
        """The cell's signal as a fraction of the saturation signal ``span_adu`` (ADU above the
        bias): geometric from ``min_signal_adu`` up to 0.8, then :data:`LADDER_TOP`, then
        steps of at most 25 % up to ``beyond`` (a colour sensor's weaker channels saturate
        well after the brightest, which the ladder is measured on)."""
        top, low = self._top()
        if self.index >= low:
            return top[min(self.index - low, len(top) - 1)]
        first = min(0.5, self.options.min_signal_adu / max(span_adu, 1.0))
        if low == 1:
            return first
        return float(first * (0.8 / first) ** (self.index / (low - 1)))

    @property
    def top_fraction(self) -> float:
        """The ladder's highest level as a fraction of the saturation signal (the same for
        every span): ``beyond`` when ``levels`` holds all of the top steps, else lower."""
        top, low = self._top()
        return top[min(self.options.levels - 1 - low, len(top) - 1)]

    def _top(self) -> tuple[list[float], int]:
        """The top fractions and the first level that takes one."""
        top = [*LADDER_TOP, *_beyond_steps(self.beyond)]
        return top, max(1, self.options.levels - len(top))


def _beyond_steps(beyond: float) -> list[float]:
    """From the last of :data:`LADDER_TOP` up to ``beyond`` in equal ratios of at most 1.25."""
    last = LADDER_TOP[-1]
    n = max(1, math.ceil(math.log(beyond / last) / math.log(1.25) - 1e-9))
    return [last * (beyond / last) ** (i / n) for i in range(1, n + 1)]


@dataclass(frozen=True)
class Cell:
    kind: Kind
    gain: int
    offset: int
    binning: int
    readout_mode: str
    setpoint_c: float
    exposure_s: float  # bias: the resolved (shortest) exposure
    count: int
    filter: str | None = None
    gain_label: str = ""  # how the plan named the gain, e.g. "unity"
    set_index: int = 0  # which set of the plan it came from
    # A flat cell carries its set's settings (source, target, exposure range, panel, sky, dark
    # flats); not part of the cell's identity.
    flat_set: FlatSet | None = field(default=None, compare=False, repr=False)
    # A flat cell of a sensor set: its level on the ladder (``lvl<index>`` in the key).
    ladder: Ladder | None = None
    # A cell of a sensor set (bias and dark pairs, the ladder, its dark flats, the offset
    # sweep): its frames say so (``SENSSET``) and never feed a master. Not in the key.
    sensor: bool = False

    @property
    def key(self) -> str:
        """Stable identity, e.g. ``dark|g100|o50|b1|normal|-10C|300s``. Flats carry their filter
        instead of an exposure (they find it at run time)."""
        parts = [
            self.kind,
            f"g{self.gain}",
            f"o{self.offset}",
            f"b{self.binning}",
            self.readout_mode,
            f"{fmt_number(self.setpoint_c)}C",
        ]
        if self.kind in ("dark", "darkflat"):
            parts.append(f"{fmt_number(self.exposure_s)}s")
        if self.filter is not None:
            parts.append(f"f:{self.filter}")
        if self.ladder is not None:
            parts.append(f"lvl{self.ladder.index}")
        return "|".join(parts)

    @property
    def is_dark(self) -> bool:
        """True for frames taken with no light (bias, dark, dark flat)."""
        return self.kind != "flat"

    @property
    def settings_label(self) -> str:
        """``g100_o50_bin1_-10C`` (plus the read-out mode when not the camera default)."""
        return f"g{self.gain}_o{self.offset}_bin{self.binning}_{fmt_number(self.setpoint_c)}C"

    @property
    def total_exposure_s(self) -> float:
        return self.exposure_s * self.count

    def describe(self) -> str:
        gain = f"{self.gain_label}={self.gain}" if self.gain_label not in ("", str(self.gain)) \
            else str(self.gain)
        text = (f"{self.kind} gain {gain} offset {self.offset} bin {self.binning} "
                f"mode {self.readout_mode} at {fmt_number(self.setpoint_c)} °C")
        if self.kind in ("dark", "darkflat"):
            text += f", {fmt_number(self.exposure_s)} s"
        if self.filter:
            text += f", filter {self.filter}"
        if self.ladder is not None:
            text += f", ladder level {self.ladder.index + 1}/{self.ladder.options.levels}"
        return text


def flat_group(cell: Cell) -> tuple[int, int, int, int, str, float]:
    """Flats captured together, and the dark flats they lead to, share these: the plan set,
    the camera settings and the set-point."""
    return (cell.set_index, cell.gain, cell.offset, cell.binning, cell.readout_mode,
            cell.setpoint_c)


def run_order(cells: list[Cell]) -> list[Cell]:
    """The order the sequencer captures cells in.

    Warmest set-point first (the cooler pulls down in steps and never swings back and forth);
    within a set-point bias first (the reference level for light-leak checks), darks from short
    to long, then flats and their dark flats; gains, offsets, binnings and modes grouped so each
    setting changes as rarely as possible.
    """
    return sorted(
        cells,
        key=lambda c: (
            -c.setpoint_c,
            KIND_ORDER[c.kind],
            c.binning,
            c.readout_mode,
            c.gain,
            c.offset,
            c.filter or "",
            c.exposure_s,
            c.ladder.index if c.ladder is not None else -1,
        ),
    )
