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

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from calibd.capture import cfa
from calibd.capture.combine import write_master

log = logging.getLogger(__name__)


def local_level(image: npt.NDArray[np.float32], block: int) -> npt.NDArray[np.float32]:
    """Median of ``block`` x ``block`` tiles, bilinearly interpolated back to full size."""
    h, w = image.shape
    nby, nbx = max(1, h // block), max(1, w // block)
    by, bx = h // nby, w // nbx
    tiles = image[: nby * by, : nbx * bx].reshape(nby, by, nbx, bx).transpose(0, 2, 1, 3)
    medians = np.median(tiles.reshape(nby, nbx, by * bx), axis=2).astype(np.float32)
    cy = (np.arange(nby) + 0.5) * by - 0.5
    cx = (np.arange(nbx) + 0.5) * bx - 0.5
    rows = np.empty((nby, w), dtype=np.float32)
    for i in range(nby):
        rows[i] = np.interp(np.arange(w), cx, medians[i])
    out = np.empty((h, w), dtype=np.float32)
    ys = np.arange(h)
    for j in range(w):
        out[:, j] = np.interp(ys, cy, rows[:, j])
    return out


def dead_floor(flat: npt.NDArray[np.float32], cold_fraction: float,
               block: int) -> npt.NDArray[np.float32]:
    """Per pixel, the least value a master flat may hold: ``cold_fraction / 2`` of the local
    level (itself at least 1e-3 of the flat's median, so the floor is always > 0). Holds about
    two more images of ``flat``'s size while it works."""
    finite = np.isfinite(flat)
    source = flat if finite.all() else np.where(finite, flat, np.float32(0.0)).astype(np.float32)
    del finite
    floor = local_level(source, block)
    least = np.float32(max(float(np.median(source[::4, ::4])), 1e-6) * 1e-3)
    np.maximum(floor, least, out=floor)
    floor *= np.float32(cold_fraction / 2)
    return floor


def fill_dead_pixels(path: Path, cold_fraction: float, block: int,
                     pattern: str | None = None) -> int:
    """Raise the pixels of the master flat ``path`` below :func:`dead_floor` (non-finite ones
    too) to it, rewriting the file atomically with ``FLATFILL`` = their count. A mosaic
    (``pattern``, a Bayer pattern) is treated one CFA channel at a time, as the bad pixel map
    does. Returns the count. Blocks for a read and a write of the file; raises OSError."""
    with fits.open(path, memmap=False) as hdul:
        header = hdul[0].header.copy()
        data = np.asarray(hdul[0].data, dtype=np.float32)
    if pattern is None:
        floor = dead_floor(data, cold_fraction, block)
    else:
        floor = np.empty_like(data)
        planes, floors = cfa.channels(data, pattern), cfa.channels(floor, pattern)
        for name, plane in planes.items():
            floors[name][...] = dead_floor(np.ascontiguousarray(plane, dtype=np.float32),
                                           cold_fraction, max(4, block // 2))
    low = ~(data >= floor)  # NaN included
    count = int(np.count_nonzero(low))
    data[low] = floor[low]
    del floor, low
    for key in ("DATAMIN", "DATAMAX"):  # the writer states the range of the new values
        header.remove(key, ignore_missing=True)
    header["FLATFILL"] = (count, f"px raised to {cold_fraction / 2:g} x local level (dead)")
    if count:
        log.info("%s: %d dead pixels raised to %g x their local level", path.name, count,
                 cold_fraction / 2)
    write_master(path, data, header)
    return count
