"""Row-band access to the 2-D image of a FITS file, without ever loading the whole image.

:class:`FrameSource` opens and validates a file once, then serves bands of rows:

* fast path -- uncompressed ``BITPIX=16, BZERO=32768, BSCALE=1`` (how every camera writes
  uint16): ``os.preadv`` of exactly the bytes of the rows, decoded to float32 (or handed over raw
  to the numba kernel, which decodes them itself);
* raw path -- any other uncompressed image (8/16/32/64-bit integers, float32/64, with
  BSCALE/BZERO): ``os.preadv`` and a numpy conversion (scaling in float64, then float32);
* astropy path -- tile-compressed images and integer images with ``BLANK``: astropy's
  ``section`` (reads or decompresses only the tiles it needs; slower).

Every failure to read or validate a file is a :class:`FrameReadError` (a :class:`ValueError`)
naming the file. Reads are positional, so one source may be read from several threads at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any
from typing import Literal
from typing import Protocol

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from calibd.capture.closeable import Closeable

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
U16 = npt.NDArray[np.uint16]

_RAW_DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


class FrameReadError(ValueError):
    """A frame cannot be used: not FITS, no 2-D image, truncated, unreadable or non-finite.

    ``path`` is the file, ``reason`` the problem without the file name.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


class RowSource(Protocol):
    """What the combination engine needs from a frame (file or in-memory array)."""

    @property
    def label(self) -> str:
        """Name used in messages and provenance (the path for files)."""
        ...

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        ...

    @property
    def fast_u16(self) -> bool:
        """True when :meth:`read_raw_rows` is available."""
        ...

    def read_rows(self, r0: int, r1: int, out: F32, scratch: npt.NDArray[np.uint8]) -> None:
        """Fill ``out`` (C-contiguous float32, ``(r1 - r0) * columns`` values) with rows r0..r1.

        ``scratch`` is a byte buffer of at least ``(r1 - r0) * columns * 8`` bytes the source may
        use. Blocks until done; raises :class:`FrameReadError`.
        """
        ...

    def read_raw_rows(self, r0: int, r1: int, out: U16) -> None:
        """Fill ``out`` (C-contiguous uint16) with the file's raw big-endian bytes of rows r0..r1
        (only when :attr:`fast_u16`). Blocks until done; raises :class:`FrameReadError`."""
        ...

    def close(self) -> None:
        """Release the file. Idempotent."""
        ...


_QUICK_KEYS = frozenset(
    {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "BZERO", "BSCALE", "BLANK"}
)
_MAX_HEADER_BLOCKS = 1000


def _quick_primary(path: Path) -> tuple[dict[str, str], int] | None:
    """Read the primary header's layout cards without astropy.

    Returns ``(cards, data_offset)`` for a standard primary header holding a 2-D image of a
    BITPIX the raw path reads, without BLANK; ``None`` for anything else (astropy decides).
    """
    cards: dict[str, str] = {}
    try:
        with open(path, "rb") as fh:
            for block_no in range(1, _MAX_HEADER_BLOCKS + 1):
                block = fh.read(2880)
                if len(block) != 2880:
                    return None
                text = block.decode("ascii")
                for k in range(0, 2880, 80):
                    key = text[k : k + 8].rstrip()
                    if key == "END":
                        ok = (
                            cards.get("SIMPLE") == "T"
                            and cards.get("NAXIS") == "2"
                            and "BLANK" not in cards
                            and int(cards.get("BITPIX", "0")) in _RAW_DTYPES
                            and "NAXIS1" in cards
                            and "NAXIS2" in cards
                        )
                        return (cards, block_no * 2880) if ok else None
                    if key in _QUICK_KEYS and text[k + 8 : k + 10] == "= ":
                        cards[key] = text[k + 10 : k + 80].split("/")[0].strip()
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return None


class FrameSource(Closeable):
    """One FITS frame, opened and validated; see the module docstring for the read paths.

    The image is the primary HDU if it holds a 2-D image, else the first 2-D image extension
    (plain or tile-compressed). Validation (here, in the constructor): it is FITS, the image is
    2-D and non-empty, and for uncompressed images the file holds every data byte. Raises
    :class:`FrameReadError`. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._fd: int | None = None
        self._hdul: fits.HDUList | None = None
        self._header: fits.Header | None = None
        self._lock = threading.Lock()
        self._kind: Literal["u16", "raw", "astropy"]
        try:
            self._open()
        except FrameReadError:
            self.close()
            raise
        except Exception as err:  # astropy raises many types for broken files
            self.close()
            raise FrameReadError(self._path, f"not a readable FITS image ({err})") from err

    # ------------------------------------------------------------------ opening

    def _open(self) -> None:
        if not self._path.is_file():
            raise FrameReadError(self._path, "no such file")
        with warnings.catch_warnings(record=True) as caught:
            # astropy warns about truncation or odd headers; truncation is detected below (size
            # check / reading the last row) with a clearer message, the rest is logged.
            warnings.simplefilter("always")
            try:
                self._open_hdu()
            finally:
                for w in caught:
                    log.debug("%s: %s", self._path, w.message)

    def _open_hdu(self) -> None:
        quick = _quick_primary(self._path)
        if quick is not None:  # plain 2-D primary image: no astropy needed (the common case)
            cards, self._offset = quick
            self._rows = int(cards["NAXIS2"])
            self._cols = int(cards["NAXIS1"])
            bitpix = int(cards["BITPIX"])
            self._bscale = float(cards.get("BSCALE", "1").replace("D", "E"))
            self._bzero = float(cards.get("BZERO", "0").replace("D", "E"))
            if self._rows >= 1 and self._cols >= 1:
                self._open_raw(bitpix)
                return
        hdul = fits.open(self._path, memmap=False, lazy_load_hdus=True)
        self._hdul = hdul
        index, hdu = self._find_image(hdul)
        header = hdu.header
        self._header = header.copy()
        self._rows = int(header["NAXIS2"])
        self._cols = int(header["NAXIS1"])
        if self._rows < 1 or self._cols < 1:
            raise FrameReadError(self._path, f"empty image ({self._cols}x{self._rows})")
        compressed = isinstance(hdu, fits.CompImageHDU)
        bitpix = int(header["BITPIX"])
        self._bscale = float(header.get("BSCALE", 1.0))
        self._bzero = float(header.get("BZERO", 0.0))
        blank = "BLANK" in header
        if compressed or bitpix not in _RAW_DTYPES or (blank and bitpix > 0):
            self._kind = "astropy"
            self._hdu: Any = hdu
            self._check_astropy()
            return
        info = hdul.fileinfo(index)
        if info is None:
            raise FrameReadError(self._path, "cannot locate the image data")
        self._offset = int(info["datLoc"])
        hdul.close()
        self._hdul = None
        self._open_raw(bitpix)

    def _open_raw(self, bitpix: int) -> None:
        self._dtype = np.dtype(_RAW_DTYPES[bitpix])
        need = self._offset + self._rows * self._cols * self._dtype.itemsize
        self._fd = os.open(self._path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        size = os.fstat(self._fd).st_size
        if size < need:
            raise FrameReadError(
                self._path, f"truncated: {size} bytes, the image needs {need} (header included)"
            )
        if hasattr(os, "posix_fadvise"):
            with contextlib.suppress(OSError):  # advisory only
                os.posix_fadvise(self._fd, self._offset, 0, os.POSIX_FADV_SEQUENTIAL)
        fast = (
            bitpix == 16
            and self._bzero == 32768.0
            and self._bscale == 1.0
            and sys.byteorder == "little"  # the decoders assume a little-endian host
        )
        self._kind = "u16" if fast else "raw"

    def _find_image(self, hdul: fits.HDUList) -> tuple[int, Any]:
        primary = hdul[0]
        naxis = int(primary.header.get("NAXIS", 0))
        if naxis == 2:
            return 0, primary
        if naxis != 0:
            raise FrameReadError(self._path, f"the primary image is {naxis}-D, not 2-D")
        for index, hdu in enumerate(hdul):
            if index == 0:
                continue
            if isinstance(hdu, fits.ImageHDU | fits.CompImageHDU):
                dims = int(hdu.header.get("NAXIS", 0))
                if dims == 2:
                    return index, hdu
                if dims != 0:
                    raise FrameReadError(self._path, f"HDU {index} is {dims}-D, not 2-D")
        raise FrameReadError(self._path, "no 2-D image in the file")

    def _check_astropy(self) -> None:
        # Decompress the last row: catches truncated compressed data up front.
        last = np.asarray(self._hdu.section[self._rows - 1 : self._rows, :])
        if last.shape != (1, self._cols):
            raise FrameReadError(self._path, f"unexpected data shape {last.shape}")

    # ------------------------------------------------------------------ properties

    @property
    def header(self) -> fits.Header:
        """The image's FITS header (read on first access for plain files). Raises
        :class:`FrameReadError` if it cannot be read any more."""
        if self._header is None:
            try:
                self._header = fits.getheader(self._path)
            except Exception as err:
                raise FrameReadError(self._path, f"cannot read the header ({err})") from err
        return self._header

    @property
    def path(self) -> Path:
        """The file."""
        return self._path

    @property
    def label(self) -> str:
        """The path as a string (for messages and provenance)."""
        return str(self._path)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the image."""
        return self._rows, self._cols

    @property
    def fast_u16(self) -> bool:
        """True for uncompressed ``BITPIX=16, BZERO=32768, BSCALE=1`` (raw reads possible)."""
        return self._kind == "u16"

    @property
    def kind(self) -> str:
        """``"u16"``, ``"raw"`` or ``"astropy"``: which read path serves this file."""
        return self._kind

    # ------------------------------------------------------------------ reading

    def _pread_into(self, buf: npt.NDArray[Any], offset: int) -> None:
        if self._fd is None:
            raise FrameReadError(self._path, "file is closed")
        view = buf.reshape(-1).view(np.uint8).data
        done = 0
        total = view.nbytes
        try:
            while done < total:
                got = os.preadv(self._fd, [view[done:]], offset + done)
                if got <= 0:
                    raise FrameReadError(self._path, f"file ended early at byte {offset + done}")
                done += got
        except OSError as err:
            raise FrameReadError(self._path, f"read failed: {err}") from err

    def _check_rows(self, r0: int, r1: int, n: int) -> None:
        if not (0 <= r0 < r1 <= self._rows):
            raise ValueError(f"rows {r0}..{r1} outside 0..{self._rows}")
        if n != (r1 - r0) * self._cols:
            raise ValueError(
                f"buffer holds {n} values, rows {r0}..{r1} need {(r1 - r0) * self._cols}"
            )

    def read_raw_rows(self, r0: int, r1: int, out: U16) -> None:
        """Fill ``out`` (C-contiguous uint16, ``(r1 - r0) * columns`` values) with the raw
        big-endian bytes of rows r0..r1 (fast path only). Blocks; raises FrameReadError."""
        if self._kind != "u16":
            raise ValueError(f"{self._path}: raw reads need BITPIX=16 and BZERO=32768")
        self._check_rows(r0, r1, out.size)
        self._pread_into(out, self._offset + r0 * self._cols * 2)

    def read_rows(self, r0: int, r1: int, out: F32, scratch: npt.NDArray[np.uint8]) -> None:
        """Fill ``out`` (C-contiguous float32, ``(r1 - r0) * columns`` values) with rows r0..r1
        as physical values (BSCALE/BZERO applied). ``scratch``: a byte buffer of at least
        ``(r1 - r0) * columns * 8`` bytes. Blocks; raises FrameReadError (also for NaN/inf)."""
        n = out.size
        self._check_rows(r0, r1, n)
        flat = out.reshape(-1)
        if self._kind == "astropy":
            with self._lock:
                try:
                    rows = np.asarray(self._hdu.section[r0:r1, :])
                except Exception as err:
                    raise FrameReadError(self._path, f"read failed: {err}") from err
            flat[:] = rows.reshape(-1)
        else:
            item = self._dtype.itemsize
            raw = scratch[: n * item].view(self._dtype)
            self._pread_into(raw, self._offset + r0 * self._cols * item)
            if self._kind == "u16":
                native = raw.view(np.uint16)
                np.bitwise_xor(native, 0x0080, out=native)  # flip the sign bit of each BE word
                flat[:] = native.view(">u2")
            elif self._bscale == 1.0 and self._bzero == 0.0:
                flat[:] = raw
            else:
                flat[:] = raw.astype(np.float64) * self._bscale + self._bzero
        floating = self._kind == "astropy" or self._dtype.kind == "f"
        if floating and not np.isfinite(flat).all():
            bad = int(np.count_nonzero(~np.isfinite(flat)))
            raise FrameReadError(self._path, f"{bad} non-finite value(s) in rows {r0}..{r1}")

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close the file. Idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._hdul is not None:
            self._hdul.close()
            self._hdul = None

    def __repr__(self) -> str:
        return f"FrameSource({str(self._path)!r}, shape={self.shape}, kind={self._kind!r})"
