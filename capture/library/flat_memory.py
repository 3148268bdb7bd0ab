"""The ``flat_memory`` table: what the flat search found, per camera, filter, binning, gain,
offset, read-out mode and panel mode (a mixin of :class:`capture.library.index.Index`; the
flats decide what to do with it, :mod:`capture.flats.memory`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from calibd.capture.library.store import Store
from calibd.capture.library.store import utc_now_text

Mode = Literal["exposure", "brightness"]


@dataclass(frozen=True)
class FlatKey:
    """What a remembered flat setting is kept for: the camera (its setup name), the filter (""
    without a wheel), binning, gain, offset and read-out mode, and ``mode``: "exposure" (the
    panel brightness is fixed and the exposure is searched for) or "brightness" (the exposure
    is fixed and the brightness is searched for)."""

    camera: str
    filter: str
    binning: int
    gain: int
    offset: int
    readout_mode: str
    mode: Mode


class FlatMemoryTable(Store):
    def remembered_flats(self, key: FlatKey) -> list[tuple[float, float]]:
        """(fixed, value) remembered for ``key``, newest first: the exposure [s] found at a
        brightness (mode "exposure"), or the brightness found at an exposure [s]."""
        rows = self.query(
            'SELECT fixed, value FROM flat_memory WHERE camera=? AND filter=? AND binning=? AND '
            'gain=? AND "offset"=? AND readout_mode=? AND mode=? ORDER BY updated_utc DESC',
            (key.camera, key.filter, key.binning, key.gain, key.offset, key.readout_mode,
             key.mode))
        return [(float(r["fixed"]), float(r["value"])) for r in rows]

    def remember_flat(self, key: FlatKey, fixed: float, value: float, level: float) -> None:
        """Record (replace) the value found at ``fixed`` and the level [ADU] it gave."""
        with self.tx() as db:
            db.execute(
                'INSERT OR REPLACE INTO flat_memory(camera, filter, binning, gain, "offset", '
                "readout_mode, mode, fixed, value, level, updated_utc) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                (key.camera, key.filter, key.binning, key.gain, key.offset, key.readout_mode,
                 key.mode, fixed, value, level, utc_now_text(self.clock)))
