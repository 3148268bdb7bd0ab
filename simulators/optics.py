"""The simulated optical train: filter transmissions, vignetting and dust donuts.

The illumination pattern is what a master flat should recover: a radial vignetting fall-off
(about 25 % darker in the corners) times dust donuts — shadows of dust on the sensor window
(common to every filter) and on each filter (different per filter). Transmissions are relative
to a clear luminance filter; narrowband filters pass a few per cent of a broadband one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from dataclasses import field

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

# Relative throughput for a flat-field source; unknown names get BROADBAND_DEFAULT.
TRANSMISSION: dict[str, float] = {
    "L": 1.0,
    "Lum": 1.0,
    "Clear": 1.05,
    "R": 0.32,
    "G": 0.30,
    "B": 0.28,
    "Ha": 0.030,
    "OIII": 0.028,
    "SII": 0.025,
}
BROADBAND_DEFAULT = 0.3


def transmission(name: str | None) -> float:
    """Relative throughput of a filter (1.0 for no filter)."""
    if name is None:
        return 1.0
    return TRANSMISSION.get(name, BROADBAND_DEFAULT)


@dataclass(eq=False)
class OpticalTrain:
    """Illumination patterns (mean ~1 in the centre) for one sensor size. Caches the pattern of
    the filter last asked for (full-resolution float32)."""

    width: int
    height: int
    seed: int = 11
    vignetting: float = 0.25
    _common: F32 | None = field(init=False, default=None, repr=False)
    _cached: tuple[str | None, F32] | None = field(init=False, default=None, repr=False)

    def pattern(self, filter_name: str | None) -> F32:
        if self._cached is not None and self._cached[0] == filter_name:
            return self._cached[1]
        pattern = self._common_pattern().copy()
        if filter_name is not None:
            salt = zlib.crc32(filter_name.encode())
            self._add_donuts(pattern, np.random.default_rng(self.seed + salt), count=2,
                             scale=1.6)
        self._cached = (filter_name, pattern)
        return pattern

    def _common_pattern(self) -> F32:
        if self._common is None:
            h, w = self.height, self.width
            y = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / (max(h, w) / 2)
            x = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / (max(h, w) / 2)
            r2 = y[:, np.newaxis] ** 2 + x[np.newaxis, :] ** 2
            common = (1.0 - self.vignetting * r2 / np.float32(r2.max())).astype(np.float32)
            self._add_donuts(common, np.random.default_rng(self.seed), count=4, scale=1.0)
            self._common = common
        return self._common

    def _add_donuts(self, pattern: F32, rng: np.random.Generator, count: int,
                    scale: float) -> None:
        """Multiply in ``count`` donut shadows (a dark ring around a lighter centre)."""
        h, w = pattern.shape
        size = min(h, w)
        for _ in range(count):
            radius = float(rng.uniform(0.04, 0.09)) * size * scale
            width = radius * 0.35
            depth = float(rng.uniform(0.04, 0.12))
            cy, cx = float(rng.uniform(0.15, 0.85)) * h, float(rng.uniform(0.15, 0.85)) * w
            r0, r1 = int(max(0, cy - 2 * radius)), int(min(h, cy + 2 * radius + 1))
            c0, c1 = int(max(0, cx - 2 * radius)), int(min(w, cx + 2 * radius + 1))
            if r0 >= r1 or c0 >= c1:
                continue
            yy = np.arange(r0, r1, dtype=np.float32)[:, np.newaxis] - cy
            xx = np.arange(c0, c1, dtype=np.float32)[np.newaxis, :] - cx
            r = np.sqrt(yy * yy + xx * xx)
            shadow = depth * np.exp(-(((r - radius) / width) ** 2))
            pattern[r0:r1, c0:c1] *= (1.0 - shadow).astype(np.float32)
