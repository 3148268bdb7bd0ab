"""Atomic float32 FITS writing: whole arrays (:func:`write_master`) or streamed row bands.

A :class:`MasterWriter` creates a temporary file through calibd's one atomic writer
(:class:`capture.library.atomic.AtomicFile`), writes the header (with room to spare), accepts row
bands in any order from any thread (``os.pwrite`` at their offsets), and on
:meth:`MasterWriter.commit` pads the data, rewrites the final header, fills in ``DATASUM``
(summed as the rows were written) and ``CHECKSUM``, ``fsync``\\ s the file, renames it over the
destination and ``fsync``\\ s the directory. Until then the destination is untouched; on any
failure (or :meth:`MasterWriter.abort`) the temporary file is removed, so a half-written master
never exists under its final name (and a kill leaves a temporary file the next reconcile removes).

The image is a primary HDU, ``BITPIX = -32`` (big-endian IEEE float32), no scaling. Every master
carries ``DATAMIN``/``DATAMAX``, the range of its values: readers of float FITS decide from them
whether the data are in ADU or normalised to [0, 1] (Siril, lacking ``DATAMAX``, takes the
largest pixel, so a short bias-subtracted dark of a few ADU would pass for normalised data). The
writer widens the range the caller's header states (``DATAMAX = 65535`` for a master in 16-bit
ADU) to every value actually written.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from calibd.capture.library.atomic import AtomicFile
from calibd.capture.library.checksum import fold
from calibd.capture.library.checksum import ones_sum
from calibd.capture.library.checksum import placeholder_cards
from calibd.capture.library.checksum import seal

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
BLOCK = 2880
#: Keywords that describe the data layout: never copied from a caller's header.
STRUCTURAL = frozenset(
    {
        "SIMPLE",
        "XTENSION",
        "BITPIX",
        "NAXIS",
        "NAXIS1",
        "NAXIS2",
        "NAXIS3",
        "EXTEND",
        "PCOUNT",
        "GCOUNT",
        "BZERO",
        "BSCALE",
        "BLANK",
        "CHECKSUM",
        "DATASUM",
        "END",
    }
)


def master_header(shape: tuple[int, int], header: fits.Header | None = None) -> fits.Header:
    """A primary header for a float32 image of ``shape`` (rows, columns) carrying the
    non-structural cards of ``header`` (in order, HISTORY/COMMENT included)."""
    rows, cols = shape
    out = fits.Header()
    out["SIMPLE"] = (True, "conforms to FITS standard")
    out["BITPIX"] = (-32, "IEEE single precision floating point")
    out["NAXIS"] = 2
    out["NAXIS1"] = cols
    out["NAXIS2"] = rows
    if header is not None:
        for card in header.cards:
            if card.keyword in STRUCTURAL:
                continue
            out.append(card, end=True)
    for key, value, comment in placeholder_cards():  # filled in by commit
        out[key] = (value, comment)
    return out


def _header_bytes(header: fits.Header, size: int | None = None) -> bytes:
    """Serialise ``header``; with ``size``, pad with blank cards before END to exactly that size."""
    body = bytes(str(header.tostring(sep="", endcard=False, padding=False)), "ascii")
    end = b"END".ljust(80)
    if size is None:
        total = len(body) + len(end)
        size = -(-total // BLOCK) * BLOCK
    room = size - len(body) - len(end)
    if room < 0:
        raise ValueError(f"header needs {len(body) + len(end)} bytes, only {size} reserved")
    return body + b" " * room + end


class MasterWriter:
    """Stream a float32 image of ``shape`` (rows, columns) into ``path`` atomically.

    The constructor creates the temporary file and writes a provisional header; one spare
    2880-byte block is reserved so :meth:`commit` can store a slightly larger final header.
    :meth:`write_rows` may be called from several threads. Raises :class:`OSError` for I/O
    failures (disk full, unwritable directory). Use as a context manager: leaving the block with
    an exception aborts.
    """

    def __init__(
        self, path: str | os.PathLike[str], shape: tuple[int, int], header: fits.Header | None
    ) -> None:
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        if self.shape[0] < 1 or self.shape[1] < 1:
            raise ValueError(f"empty image shape {shape}")
        self._header = header
        provisional = master_header(self.shape, header)
        self._reserved = len(_header_bytes(provisional)) + BLOCK
        self._local = threading.local()
        self._range_lock = threading.Lock()
        self._range = (math.inf, -math.inf)  # of the finite values written so far
        # DATASUM of the rows written so far (ones' complement sums add in any order); only
        # used if no row was written twice (unwritten rows are zeros, which add nothing)
        self._datasum = 0
        self._written = np.zeros(self.shape[0], dtype=np.bool_)
        self._rewritten = False
        self._out: AtomicFile | None = AtomicFile(self.path)
        self._fd: int | None = self._out.fd
        fd = self._fd
        assert fd is not None
        try:
            os.pwrite(fd, _header_bytes(provisional, self._reserved), 0)
        except BaseException:
            self.abort()
            raise

    @property
    def data_offset(self) -> int:
        """Byte offset of the first data row in the file."""
        return self._reserved

    def write_rows(self, r0: int, rows: F32) -> None:
        """Write ``rows`` (float32, ``(k, columns)`` or flat ``k * columns``) as rows r0..r0+k.

        Thread-safe (positional writes). Blocks until the bytes are in the page cache.
        """
        if self._fd is None:
            raise ValueError("writer is closed")
        cols = self.shape[1]
        n = rows.size
        if n % cols or r0 < 0 or r0 + n // cols > self.shape[0]:
            raise ValueError(f"bad row band: start {r0}, {n} values, {cols} columns")
        buf: npt.NDArray[np.float32] | None = getattr(self._local, "buf", None)
        if buf is None or buf.size < n:
            buf = np.empty(n, dtype=">f4")
            self._local.buf = buf
        band = buf[:n]
        np.copyto(band, rows.reshape(-1), casting="same_kind")
        self._widen(band)
        view = band.view(np.uint8).data
        self._add_sum(r0, n // cols, ones_sum(view))
        offset = self._reserved + r0 * cols * 4
        done = 0
        while done < view.nbytes:
            done += os.pwrite(self._fd, view[done:], offset + done)

    def _widen(self, values: npt.NDArray[np.float32]) -> None:
        finite = values if np.isfinite(values).all() else values[np.isfinite(values)]
        if finite.size == 0:
            return
        lo, hi = float(finite.min()), float(finite.max())
        with self._range_lock:
            self._range = (min(self._range[0], lo), max(self._range[1], hi))

    def _add_sum(self, r0: int, k: int, part: int) -> None:
        with self._range_lock:
            self._datasum += part
            self._rewritten = self._rewritten or bool(self._written[r0 : r0 + k].any())
            self._written[r0 : r0 + k] = True

    def _with_range(self, header: fits.Header | None) -> fits.Header:
        """``header`` plus ``DATAMIN``/``DATAMAX`` covering its stated range and every value
        written."""
        out = fits.Header() if header is None else header.copy()
        lo, hi = self._range
        if lo > hi:  # nothing finite written
            lo = hi = 0.0
        stated_lo, stated_hi = out.get("DATAMIN"), out.get("DATAMAX")
        if isinstance(stated_lo, int | float) and not isinstance(stated_lo, bool):
            lo = min(lo, float(stated_lo))
        if isinstance(stated_hi, int | float) and not isinstance(stated_hi, bool):
            hi = max(hi, float(stated_hi))
        out["DATAMIN"] = (lo, "lowest value (of the data or of its unit)")
        out["DATAMAX"] = (hi, "highest value (of the data or of its unit)")
        return out

    def commit(self, header: fits.Header | None = None) -> Path:
        """Finish: final header (``header``'s cards, as for the constructor, plus ``DATAMIN`` /
        ``DATAMAX``), zero padding, fsync, atomic rename onto :attr:`path`, fsync of the
        directory. Returns the path.

        Raises :class:`OSError` on I/O failure (the temporary file is then removed).
        """
        if self._fd is None or self._out is None:
            raise ValueError("writer is closed")
        try:
            final_cards = self._with_range(self._header if header is None else header)
            final = _header_bytes(master_header(self.shape, final_cards), self._reserved)
            os.pwrite(self._fd, final, 0)
            end = self._reserved + self.shape[0] * self.shape[1] * 4
            os.ftruncate(self._fd, -(-end // BLOCK) * BLOCK)  # zero padding
            seal(self._fd, None if self._rewritten else fold(self._datasum))
            self._out.commit()
            self._out = None
            self._fd = None
        except BaseException:
            self.abort()
            raise
        log.debug("wrote %s", self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (the destination is untouched). Idempotent."""
        if self._out is not None:
            self._out.abort()
            self._out = None
        self._fd = None

    def __enter__(self) -> MasterWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None or self._fd is not None:
            self.abort()


def write_master(
    path: str | os.PathLike[str], data: npt.ArrayLike, header: fits.Header | None = None
) -> Path:
    """Write a 2-D image as a float32 FITS master atomically (temporary file in the same
    directory, fsync, rename). ``header``'s non-structural cards are kept. Blocks until the
    file is durable; raises :class:`ValueError` for a non-2-D image, :class:`OSError` on I/O
    failure (nothing is left behind then)."""
    image = np.asarray(data)
    if image.ndim != 2:
        raise ValueError(f"a master must be 2-D, got shape {image.shape}")
    image = np.ascontiguousarray(image, dtype=np.float32)
    band = max(1, (4 << 20) // (4 * max(1, image.shape[1])))  # ~4 MB of big-endian rows at once
    with MasterWriter(path, (image.shape[0], image.shape[1]), header) as writer:
        for r0 in range(0, image.shape[0], band):
            writer.write_rows(r0, image[r0:r0 + band])
        return writer.commit()
