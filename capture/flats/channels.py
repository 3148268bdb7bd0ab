"""The level of a flat: the central median of a mono frame, or of each CFA channel of a colour
(Bayer) mosaic.

On a colour sensor the four sub-planes (R, G1, G2, B) see different light: a white LED panel is
green-heavy, the twilight sky blue-heavy. The exposure search therefore aims the **brightest**
channel at the target (it is the one that clips first), and a flat is refused when a channel
clips or the weakest one sits below the set's floor (``min_channel_adu`` above the bias). A mono
frame (no pattern) keeps its one level, exactly as before. Pure numpy, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from calibd.capture import cfa

SAMPLE_TARGET: Final = 50_000  # pixels sampled per channel for its level
CLIP_LEVEL: Final = 0.98  # a pixel at or above this fraction of saturation counts as clipped
CLIP_FRACTION: Final = 0.01  # a channel with more clipped pixels than this clips
#: FITS keyword of each channel's level in a colour flat's header (raw ADU, bias included).
LEVEL_KEYWORDS: Final = {"R": "CFALVLR", "G1": "CFALVLG1", "G2": "CFALVLG2", "B": "CFALVLB"}


@dataclass(frozen=True)
class ChannelLevels:
    """Levels of the four CFA channels of one mosaic, in raw ADU (bias included)."""

    pattern: str
    levels: dict[str, float]  # central median of each sub-plane, keyed by cfa.CHANNEL_NAMES
    clipped: dict[str, float]  # fraction of each sub-plane's pixels at or near saturation

    @property
    def brightest(self) -> tuple[str, float]:
        name = max(self.levels, key=lambda n: self.levels[n])
        return name, self.levels[name]

    @property
    def weakest(self) -> tuple[str, float]:
        name = min(self.levels, key=lambda n: self.levels[n])
        return name, self.levels[name]

    def header(self) -> dict[str, str | int | float | bool]:
        """The cards a colour flat carries: each channel's level (ADU, rounded to 0.1)."""
        return {LEVEL_KEYWORDS[n]: round(v, 1) for n, v in self.levels.items()}

    def describe(self, bias_adu: float) -> str:
        """``R 8123, G1 20011, G2 19987, B 7012 ADU above bias`` for messages."""
        return ", ".join(f"{n} {v - bias_adu:.0f}" for n, v in self.levels.items()) + \
            " ADU above bias"


def measure(data: npt.NDArray[np.generic], pattern: str,
            saturation_adu: float) -> ChannelLevels:
    """Per-channel levels of a mosaic: the median of each sub-plane over the central half of the
    image (subsampled to about :data:`SAMPLE_TARGET` pixels per channel), and the fraction of
    each sub-plane's pixels within 2 % of ``saturation_adu`` (over the whole image, subsampled).
    Raises ValueError for a pattern that is not a Bayer phase or an image that is not 2-D."""
    if data.ndim != 2:
        raise ValueError(f"a mosaic is 2-D, got {data.ndim} dimensions")
    h, w = data.shape
    r0, c0 = (h // 4) & ~1, (w // 4) & ~1  # even: the crop keeps the pattern's phase
    centre = data[r0: max(r0 + 2, h - r0), c0: max(c0 + 2, w - c0)]
    centre_planes = cfa.channels(centre, pattern)
    whole_planes = cfa.channels(data, pattern)
    levels: dict[str, float] = {}
    clipped: dict[str, float] = {}
    for name in cfa.CHANNEL_NAMES:
        plane = centre_planes[name]
        step = max(1, int(np.sqrt(plane.size / SAMPLE_TARGET)))
        levels[name] = float(np.median(np.asarray(plane[::step, ::step], dtype=np.float32)))
        whole = whole_planes[name]
        step = max(1, int(np.sqrt(whole.size / (4 * SAMPLE_TARGET))))
        sample = np.asarray(whole[::step, ::step], dtype=np.float32)
        clipped[name] = float(np.mean(sample >= CLIP_LEVEL * saturation_adu))
    return ChannelLevels(pattern, levels, clipped)


def colour_problem(found: ChannelLevels, *, bias_adu: float, floor_adu: float) -> str | None:
    """Why a colour flat with these channel levels must not be kept, or None: a channel clips
    (more than 1 % of its pixels within 2 % of saturation), or the weakest channel's level above
    the bias is below ``floor_adu``."""
    clipping = [n for n, f in found.clipped.items() if f > CLIP_FRACTION]
    if clipping:
        worst = max(clipping, key=lambda n: found.clipped[n])
        return (f"channel {'/'.join(clipping)} clips ({found.clipped[worst]:.1%} of its pixels "
                f"at saturation; {found.describe(bias_adu)})")
    name, level = found.weakest
    if level - bias_adu < floor_adu:
        return (f"the weakest channel {name} is only {level - bias_adu:.0f} ADU above the bias, "
                f"below the floor of {floor_adu:.0f} ADU ({found.describe(bias_adu)}): this "
                "light is too far from white for the sensor's colours; lower the set's "
                "min_channel_adu or use a whiter light")
    return None
