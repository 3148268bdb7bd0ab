"""Local levels of a master, and the dead-pixel fill of master flats.

A master flat must have no value <= 0: Siril guards only against an exact zero, and a pixel
divided by -1e-4 comes out near +-65,535. Dead pixels (no response) are therefore raised to
``cold_fraction / 2`` times their local level: a reader dividing by the flat gets a finite value
of the usual size, and the bad pixel map (cold: below ``cold_fraction`` of the local level) still
marks them, so a program that reads the map can still reject them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from calibd.capture import cfa
from calibd.capture.combine import write_master

log = logging.getLogger(__name__)


_BAND_ROWS = 256  # rows handled at once where a full-size temporary is not needed


class _LevelGrid:
    """Medians of ``block`` x ``block`` tiles of an image, interpolated bilinearly (clamped at
    the edges) on demand, a band of rows at a time. Holds the tile medians interpolated along
    the rows only (``h / block`` rows of the image's width), never a full-size temporary."""

    def __init__(self, image: npt.NDArray[np.float32], block: int) -> None:
        h, w = image.shape
        nby, nbx = max(1, h // block), max(1, w // block)
        by, bx = h // nby, w // nbx
        medians = np.empty((nby, nbx), dtype=np.float32)
        for i in range(nby):  # one band of tiles at a time: a copy of by rows, not the image
            band = image[i * by:(i + 1) * by, : nbx * bx]
            tiles = band.reshape(by, nbx, bx).transpose(1, 0, 2).reshape(nbx, by * bx)
            medians[i] = np.median(tiles, axis=1)
        self.cy = (np.arange(nby) + 0.5) * by - 0.5
        cx = (np.arange(nbx) + 0.5) * bx - 0.5
        xs = np.arange(w)
        self.rows: npt.NDArray[np.float64] = np.stack(
            [np.interp(xs, cx, medians[i]) for i in range(nby)])
        self.shape = (h, w)

    def band(self, y0: int, y1: int) -> npt.NDArray[np.float32]:
        """The interpolated level of rows ``y0 .. y1 - 1`` (float32, ``(y1 - y0, w)``)."""
        nby = self.rows.shape[0]
        if nby == 1:
            return np.repeat(self.rows[:1], y1 - y0, axis=0).astype(np.float32)
        t = np.interp(np.arange(y0, y1), self.cy, np.arange(nby, dtype=np.float64))
        i0 = np.minimum(np.floor(t).astype(np.intp), nby - 2)
        f = (t - i0)[:, None]
        level: npt.NDArray[np.float64] = self.rows[i0] * (1.0 - f) + self.rows[i0 + 1] * f
        return level.astype(np.float32)


def local_level(image: npt.NDArray[np.float32], block: int) -> npt.NDArray[np.float32]:
    """Median of ``block`` x ``block`` tiles, bilinearly interpolated back to full size."""
    grid = _LevelGrid(image, block)
    out = np.empty(image.shape, dtype=np.float32)
    for y0 in range(0, image.shape[0], _BAND_ROWS):
        y1 = min(image.shape[0], y0 + _BAND_ROWS)
        out[y0:y1] = grid.band(y0, y1)
    return out


def _fill_plane(plane: npt.NDArray[np.float32], cold_fraction: float, block: int) -> int:
    """Raise the pixels of ``plane`` (a view; written in place) below ``cold_fraction / 2`` of
    their local level -- itself at least 1e-3 of the plane's median, so the floor is always
    > 0 -- and the non-finite ones, to that floor. Returns how many. Works a band of rows at a
    time: a few band-sized temporaries besides ``plane``."""
    finite_sub = plane[::4, ::4]
    sub = np.where(np.isfinite(finite_sub), finite_sub, np.float32(0.0))
    least = max(float(np.median(sub)), 1e-6) * 1e-3
    if np.isfinite(plane).all():
        grid = _LevelGrid(plane, block)
    else:  # the tile medians see NaN/inf as 0, as a dead pixel
        grid = _LevelGrid(np.where(np.isfinite(plane), plane, np.float32(0.0)), block)
    factor = np.float32(cold_fraction / 2)
    count = 0
    for y0 in range(0, plane.shape[0], _BAND_ROWS):
        y1 = min(plane.shape[0], y0 + _BAND_ROWS)
        floor = grid.band(y0, y1)
        np.maximum(floor, np.float32(least), out=floor)
        floor *= factor
        rows = plane[y0:y1]
        low = ~(rows >= floor)  # NaN included
        count += int(np.count_nonzero(low))
        rows[low] = floor[low]
    return count


def fill_dead_pixels(path: Path, cold_fraction: float, block: int,
                     pattern: str | None = None) -> int:
    """Raise the pixels of the master flat ``path`` below ``cold_fraction / 2`` of their local
    level (non-finite ones too) to that floor, rewriting the file atomically with ``FLATFILL``
    = their count. A mosaic (``pattern``, a Bayer pattern) is treated one CFA channel at a
    time, as the bad pixel map does. Holds the image once plus band-sized temporaries (26 MP:
    about 130 MB above the process's base). Returns the count. Blocks for a read and a write
    of the file; raises OSError."""
    with fits.open(path, memmap=False) as hdul:
        header = hdul[0].header.copy()
        raw = hdul[0].data
        if raw.dtype == np.dtype(">f4"):  # swapped in place: no second copy of the image
            data = raw.byteswap(inplace=True).view("<f4")
        else:
            data = np.asarray(raw, dtype=np.float32)
    if pattern is None:
        count = _fill_plane(data, cold_fraction, block)
    else:
        planes = cfa.channels(data, pattern).values()
        count = sum(_fill_plane(cast(npt.NDArray[np.float32], plane), cold_fraction,
                                max(4, block // 2)) for plane in planes)
    for key in ("DATAMIN", "DATAMAX"):  # the writer states the range of the new values
        header.remove(key, ignore_missing=True)
    header["FLATFILL"] = (count, f"px raised to {cold_fraction / 2:g} x local level (dead)")
    if count:
        log.info("%s: %d dead pixels raised to %g x their local level", path.name, count,
                 cold_fraction / 2)
    write_master(path, data, header)
    return count
