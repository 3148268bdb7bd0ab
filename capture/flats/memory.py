"""What the flat search learned, remembered per camera, filter, binning, gain, offset, read-out
mode and panel setting, so the next run starts at the answer (one test frame instead of three).

Panel mode "exposure" remembers the exposure found at a brightness; mode "brightness" remembers
the brightness found at an exposure. A result for another brightness (or exposure) of the same
filter is scaled linearly, which is exact for a linear panel and a good start otherwise.
"""

from __future__ import annotations

from calibd.capture.library.flat_memory import FlatKey
from calibd.capture.library.flat_memory import Mode
from calibd.capture.library.index import Index

__all__ = ["FlatKey", "FlatMemory", "Mode"]


class FlatMemory:
    def __init__(self, index: Index) -> None:
        self.index = index

    def recall(self, key: FlatKey, fixed: float) -> float | None:
        """The remembered value for ``fixed`` (brightness or exposure), scaled from the nearest
        remembered setting of the same filter when there is no exact match."""
        rows = self.index.remembered_flats(key)
        if not rows:
            return None
        for known, value in rows:
            if abs(known - fixed) < 1e-9:
                return value
        known, value = min(rows, key=lambda r: abs(r[0] - fixed))
        if known <= 0 or fixed <= 0:
            return None
        # Signal is proportional to brightness x exposure: keep the product.
        return value * known / fixed

    def remember(self, key: FlatKey, fixed: float, value: float, level: float) -> None:
        self.index.remember_flat(key, fixed, value, level)
