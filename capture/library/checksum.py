"""FITS ``DATASUM`` and ``CHECKSUM`` (the FITS standard's checksum convention, appendix J).

``DATASUM`` is the 32-bit ones' complement sum of the data (big-endian 32-bit words, padding
included); ``CHECKSUM`` is a 16-character ASCII encoding chosen so that the whole HDU (header and
data) sums to minus zero. Any program reading FITS can verify them (``fitsverify``, astropy
``checksum=True``).

:func:`seal` fills both into a file calibd has just written (before it is renamed into place);
:func:`verify` checks a file: ``full`` reads the data and compares with ``DATASUM``, otherwise
only the header is read and checked against its ``CHECKSUM`` and the declared ``DATASUM``.
Both read in bounded chunks (a few MB), never the whole image at once.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

BLOCK = 2880
CARD = 80
CHUNK = 4 * 2**20  # bytes read at a time; a multiple of 4
ZERO_CHECKSUM = "0" * 16
_EXCLUDE = frozenset(range(0x3A, 0x41)) | frozenset(range(0x5B, 0x61))


class ChecksumError(ValueError):
    """A FITS file does not match its ``CHECKSUM``/``DATASUM`` (damaged after it was written)."""


def fold(total: int) -> int:
    """Fold a sum of 32-bit words into a 32-bit ones' complement sum."""
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def ones_sum(buf: bytes | bytearray | memoryview) -> int:
    """Ones' complement sum of ``buf`` as big-endian 32-bit words (zero-padded to 4 bytes)."""
    view = memoryview(buf).cast("B")
    n = len(view) - len(view) % 4
    total = 0
    if n:
        total = int(np.frombuffer(view[:n], dtype=">u4").sum(dtype=np.uint64))
    if n < len(view):
        total += int.from_bytes(bytes(view[n:]).ljust(4, b"\0"), "big")
    return fold(total)


def encode(value: int) -> str:
    """The 16-character ASCII encoding of the complement of ``value`` (the standard's
    algorithm: printable characters, none of ``:;<=>?@[\\]^_``, rotated one to the right)."""
    value = ~value & 0xFFFFFFFF
    out = [0] * 16
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        quotient, remainder = byte // 4 + 0x30, byte % 4
        ch = [quotient + remainder, quotient, quotient, quotient]
        changed = True
        while changed:
            changed = False
            for j in (0, 2):
                while ch[j] in _EXCLUDE or ch[j + 1] in _EXCLUDE:
                    ch[j] += 1
                    ch[j + 1] -= 1
                    changed = True
        for j in range(4):
            out[4 * j + i] = ch[j]
    text = bytes(out)
    return (text[-1:] + text[:-1]).decode("ascii")


def _header_cards(fd: int) -> tuple[bytes, int]:
    """(header bytes, data offset) of the primary HDU open at ``fd``."""
    header = bytearray()
    while True:
        block = os.pread(fd, BLOCK, len(header))
        if len(block) < BLOCK:
            raise ChecksumError("the header is truncated")
        header += block
        for i in range(0, BLOCK, CARD):
            if block[i:i + 8] == b"END     ":
                return bytes(header), len(header)
        if len(header) > 2000 * BLOCK:
            raise ChecksumError("no END card in the header")


def _card_index(header: bytes, key: str) -> int | None:
    want = key.encode("ascii").ljust(8)
    for i in range(0, len(header), CARD):
        if header[i:i + 8] == want:
            return i
    return None


def _value(header: bytes, key: str) -> str | None:
    i = _card_index(header, key)
    if i is None:
        return None
    text = header[i + 10:i + CARD].decode("ascii", "replace").strip()
    if text.startswith("'"):
        end = text.find("'", 1)
        return text[1:end].strip() if end > 0 else None
    return text.split("/", 1)[0].strip()


def _data_bytes(header: bytes) -> int:
    def num(key: str) -> int:
        v = _value(header, key)
        if v is None:
            raise ChecksumError(f"no {key} in the header")
        return int(v)

    naxis = num("NAXIS")
    if naxis == 0:
        return 0
    size = abs(num("BITPIX")) // 8
    for axis in range(1, naxis + 1):
        size *= num(f"NAXIS{axis}")
    return size


_buffers = threading.local()


def _chunk_buffer() -> memoryview:
    """This thread's reusable read buffer of CHUNK bytes (a fresh buffer per chunk would cost
    page faults on every read)."""
    buf: memoryview | None = getattr(_buffers, "buf", None)
    if buf is None:
        buf = memoryview(bytearray(CHUNK))
        _buffers.buf = buf
    return buf


def data_sum(fd: int, offset: int, nbytes: int) -> int:
    """Ones' complement sum of ``nbytes`` of data at ``offset`` (padded to whole FITS blocks
    with zeros, which add nothing). Reads in chunks into a reused buffer. Raises ChecksumError
    when short."""
    buf = _chunk_buffer()
    total = 0
    done = 0
    while done < nbytes:
        want = min(CHUNK, nbytes - done)
        got = 0
        while got < want:
            n = os.preadv(fd, [buf[got:want]], offset + done + got)
            if n <= 0:
                raise ChecksumError(f"the data is truncated ({offset + done + got} bytes)")
            got += n
        total += ones_sum(buf[:want])
        done += want
    return fold(total)


def seal(fd: int, datasum: int | None = None) -> None:
    """Fill in ``DATASUM`` and ``CHECKSUM`` of the FITS file open (read-write) at ``fd``. Its
    header must already carry both keywords (placeholders: see :func:`placeholder_cards`).
    ``datasum``: the data's :func:`ones_sum` when the writer summed what it wrote; otherwise
    the data is read back once (from the page cache, just written). Raises OSError."""
    header, start = _header_cards(fd)
    ds_at, cs_at = _card_index(header, "DATASUM"), _card_index(header, "CHECKSUM")
    if ds_at is None or cs_at is None:
        raise ValueError("the header has no DATASUM/CHECKSUM cards to fill in")
    if datasum is None:
        datasum = data_sum(fd, start, _data_bytes(header))
    fixed = bytearray(header)
    fixed[ds_at:ds_at + CARD] = _card("DATASUM", str(datasum), "data unit checksum")
    fixed[cs_at:cs_at + CARD] = _card("CHECKSUM", ZERO_CHECKSUM, "HDU checksum")
    checksum = encode(fold(ones_sum(fixed) + datasum))
    fixed[cs_at:cs_at + CARD] = _card("CHECKSUM", checksum, "HDU checksum")
    os.pwrite(fd, bytes(fixed), 0)


def _card(key: str, value: str, comment: str) -> bytes:
    quoted = "'" + value + "'"
    text = f"{key:<8}= {quoted:<20} / {comment}"
    return text.ljust(CARD)[:CARD].encode("ascii")


def placeholder_cards() -> list[tuple[str, str, str]]:
    """(key, value, comment) cards to put in a header :func:`seal` will fill in."""
    return [("CHECKSUM", ZERO_CHECKSUM, "HDU checksum"),
            ("DATASUM", "0", "data unit checksum")]


def verify(path: Path, *, full: bool) -> bool:
    """Check ``path`` against its checksums. Returns False when it has none (written before
    calibd wrote them: nothing to check), True when they match. ``full`` reads the whole data.

    Raises ChecksumError when the file does not match (or is truncated), OSError when it cannot
    be read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        header, start = _header_cards(fd)
        declared = _value(header, "DATASUM")
        if declared is None or _value(header, "CHECKSUM") is None:
            return False
        try:
            datasum = int(declared)
        except ValueError:
            raise ChecksumError(f"DATASUM {declared!r} is not a number") from None
        if fold(ones_sum(header) + datasum) != 0xFFFFFFFF:
            raise ChecksumError("the header does not match its CHECKSUM")
        nbytes = _data_bytes(header)
        size = os.fstat(fd).st_size
        if size < start + nbytes:
            raise ChecksumError(f"truncated: {size} bytes, the header announces "
                                f"{start + nbytes}")
        if full and data_sum(fd, start, nbytes) != datasum:
            raise ChecksumError("the data does not match its DATASUM")
        return True
    finally:
        os.close(fd)
