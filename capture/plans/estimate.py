"""How long a plan takes and how much disk it needs, before it runs.

Wall time = exposures + read-out/download per frame + cooling (set-point ramps at the plan's rate,
plus settling and dwell at each set-point) + the final warm-up. Disk = FITS files of 16-bit
pixels plus header blocks. Flats find their exposure at run time: they are estimated at the
geometric mean of the set's exposure range, and their dark flats (one set per filter, or one for
a panel in brightness mode) are added.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from dataclasses import replace

from calibd.capture.plans.cells import Cell
from calibd.capture.plans.resolve import ResolvedPlan
from calibd.drivers.contracts import CameraInfo

FITS_BLOCK = 2880
HEADER_BYTES = 2 * FITS_BLOCK  # calibd headers fit in two blocks
PER_FRAME_OVERHEAD_S = 0.05  # command round trips and checks
SETTLE_MARGIN_S = 60.0  # the sensor lags the ramp; time to come into the band


@dataclass(frozen=True)
class Estimate:
    frames: int
    exposure_s: float
    readout_s: float
    cooling_s: float
    warmup_s: float
    disk_bytes: int
    dark_flat_frames: int = 0  # expected, decided at run time
    warmup_target_c: float | None = None  # where the warm-up ramps to (None: no warm-up)

    @property
    def wall_s(self) -> float:
        return self.exposure_s + self.readout_s + self.cooling_s + self.warmup_s


def file_bytes(info: CameraInfo, cell: Cell) -> int:
    pixels = (info.width // cell.binning) * (info.height // cell.binning)
    data = -(-pixels * 2 // FITS_BLOCK) * FITS_BLOCK
    return HEADER_BYTES + data


def flat_exposure_guess(cell: Cell) -> float:
    """The exposure a flat cell is estimated at (the geometric mean of its set's range)."""
    fset = cell.flat_set
    if fset is None:
        raise ValueError(f"{cell.describe()} carries no flat-set settings")
    if fset.panel.mode == "brightness" and fset.source == "panel" and fset.panel.exposure_s:
        return fset.panel.exposure_s
    return math.sqrt(fset.min_exposure_s * fset.max_exposure_s)


def expected_dark_flats(plan: ResolvedPlan) -> list[Cell]:
    """Dark-flat cells the run will add: per flat cell, or one per set and settings when the
    panel works in brightness mode (one exposure for every filter)."""
    out: dict[tuple[object, ...], Cell] = {}
    for c in plan.cells:
        if c.kind != "flat":
            continue
        fset = c.flat_set
        if fset is None or fset.dark_flats is None or fset.dark_flats.count is None:
            continue
        shared = fset.source == "panel" and fset.panel.mode == "brightness"
        key = (c.set_index, c.gain, c.offset, c.binning, c.readout_mode, c.setpoint_c,
               None if shared else c.filter, c.ladder.index if c.ladder is not None else -1)
        out[key] = replace(c, kind="darkflat", filter=None, count=fset.dark_flats.count,
                           exposure_s=flat_exposure_guess(c))
    return list(out.values())


def estimate(plan: ResolvedPlan, info: CameraInfo, start_temp_c: float | None,
             ambient_c: float | None = None) -> Estimate:
    """Estimate for the cells still to capture (all of ``plan.cells``). ``start_temp_c``: the
    sensor now; ``ambient_c``: what the warm-up ramps to by default (see Warmup.target_for)."""
    cooling = plan.policy.cooling
    darkflats = expected_dark_flats(plan)
    cells = [replace(c, exposure_s=flat_exposure_guess(c)) if c.kind == "flat" else c
             for c in plan.cells] + darkflats
    readout = sum(c.count * (info.readout_s / (c.binning * c.binning) + PER_FRAME_OVERHEAD_S)
                  for c in cells)
    current = start_temp_c
    cooling_s = 0.0
    for setpoint, _ in itertools.groupby(plan.cells, key=lambda c: c.setpoint_c):
        delta = abs(setpoint - current) if current is not None else 0.0
        cooling_s += delta / cooling.ramp_c_per_min * 60.0 + cooling.dwell_s + SETTLE_MARGIN_S
        current = setpoint
    warmup_s = 0.0
    warmup = plan.policy.warmup
    target_c = None
    if warmup.enabled and current is not None:
        target_c = warmup.target_for(ambient_c, current)
        if target_c > current:
            warmup_s = (target_c - current) / warmup.rate_c_per_min * 60.0
    return Estimate(
        frames=plan.frames,
        exposure_s=sum(c.total_exposure_s for c in cells),
        readout_s=readout,
        cooling_s=cooling_s,
        warmup_s=warmup_s,
        disk_bytes=sum(c.count * file_bytes(info, c) for c in cells),
        dark_flat_frames=sum(c.count for c in darkflats),
        warmup_target_c=target_c,
    )


def human_duration(seconds: float) -> str:
    """3725 -> '1 h 02 min', 42 -> '42 s'."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    h, rem = divmod(s, 3600)
    if h < 48:
        return f"{h} h {rem // 60:02d} min"
    return f"{h / 24:.1f} days ({h} h)"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
