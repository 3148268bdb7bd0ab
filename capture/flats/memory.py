"""What the flat search learned, remembered per camera, filter, binning, gain, offset, read-out
mode and panel setting, so the next run starts at the answer (one test frame instead of three).

Panel mode "exposure" remembers the exposure found at a brightness; mode "brightness" remembers
the brightness found at an exposure. A result for another brightness (or exposure) of the same
filter is scaled linearly, which is exact for a linear panel and a good start otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from capture.library.index import Index, utc_now_text

Mode = Literal["exposure", "brightness"]


@dataclass(frozen=True)
class FlatKey:
    camera: str
    filter: str
    binning: int
    gain: int
    offset: int
    readout_mode: str
    mode: Mode


class FlatMemory:
    def __init__(self, index: Index) -> None:
        self.index = index

    def recall(self, key: FlatKey, fixed: float) -> float | None:
        """The remembered value for ``fixed`` (brightness or exposure), scaled from the nearest
        remembered setting of the same filter when there is no exact match."""
        rows = self.index.query(
            'SELECT fixed, value FROM flat_memory WHERE camera=? AND filter=? AND binning=? AND '
            'gain=? AND "offset"=? AND readout_mode=? AND mode=? ORDER BY updated_utc DESC',
            (key.camera, key.filter, key.binning, key.gain, key.offset, key.readout_mode,
             key.mode))
        if not rows:
            return None
        for r in rows:
            if abs(float(r["fixed"]) - fixed) < 1e-9:
                return float(r["value"])
        nearest = min(rows, key=lambda r: abs(float(r["fixed"]) - fixed))
        if float(nearest["fixed"]) <= 0 or fixed <= 0:
            return None
        # Signal is proportional to brightness x exposure: keep the product.
        return float(nearest["value"]) * float(nearest["fixed"]) / fixed

    def remember(self, key: FlatKey, fixed: float, value: float, level: float) -> None:
        with self.index.tx() as db:
            db.execute(
                'INSERT OR REPLACE INTO flat_memory(camera, filter, binning, gain, "offset", '
                "readout_mode, mode, fixed, value, level, updated_utc) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                (key.camera, key.filter, key.binning, key.gain, key.offset, key.readout_mode,
                 key.mode, fixed, value, level, utc_now_text()))
