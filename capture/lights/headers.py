"""Reading the header of a light frame, and nothing else, from a file we do not trust.

FITS: 2880-byte blocks are read until the ``END`` card, at most :data:`MAX_FITS_HEADER_BLOCKS`
of them; the pixel data after the header is never read. When the primary HDU is empty (no data)
the next header, which then follows at once, is read too (within the same block limit): an IMAGE
extension, or a tile-compressed image (its ``ZNAXIS1``/``ZNAXIS2`` are the image's size); its
keywords win over the primary's. XISF (PixInsight's format: the
signature ``XISF0100``, a little-endian 32-bit header length, 4 reserved bytes, then a UTF-8
XML header; the image follows as an attachment): only the XML header is read, at most
:data:`MAX_XISF_HEADER_BYTES`, and a header that declares a DOCTYPE or entities is refused
(no entity expansion, no external references). Its ``FITSKeyword`` elements (``name``,
``value``, ``comment``) are the header. Only regular files are opened, without blocking.

Files are opened read-only and never written, moved or touched otherwise.
"""

from __future__ import annotations

import os
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from astropy.io import fits

from calibd.capture.inputfile import InputFileError
from calibd.capture.inputfile import open_regular
from calibd.capture.inputfile import read_up_to

FITS_BLOCK = 2880
MAX_FITS_HEADER_BLOCKS = 64  # 64 x 36 cards: far more than any capture program writes
MAX_XISF_HEADER_BYTES = 1024 * 1024
XISF_SIGNATURE = b"XISF0100"
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fz")  # .fz: fpack's tile-compressed FITS
XISF_SUFFIXES = (".xisf",)
LIGHT_SUFFIXES = FITS_SUFFIXES + XISF_SUFFIXES

Header = dict[str, Any]  # keyword (upper case) -> int, float, bool, str or UNREADABLE


class _Unreadable:
    """The value of a card that is present but cannot be parsed (malformed, unprintable)."""

    def __repr__(self) -> str:
        return "<unreadable>"


UNREADABLE = _Unreadable()


class HeaderError(ValueError):
    """The file's header cannot be read; the message says why without quoting the file."""


def _read_exact(fd: int, size: int) -> bytes:
    try:
        return read_up_to(fd, size)
    except InputFileError as err:
        raise HeaderError(str(err)) from None


def read_header(path: Path) -> Header:
    """The header of the FITS or XISF file ``path`` (by its suffix). Reads at most
    64 FITS blocks or 1 MB of XISF XML; blocks on file I/O only. Raises HeaderError."""
    suffix = path.suffix.lower()
    try:
        fd = open_regular(path)
    except InputFileError as err:
        raise HeaderError(str(err)) from None
    try:
        if suffix in XISF_SUFFIXES:
            return _xisf_header(fd)
        if suffix in FITS_SUFFIXES:
            return _fits_header(fd)
        if suffix == ".gz":
            raise HeaderError("is gzip-compressed: unpack it (gunzip), or compress with fpack "
                              "(.fz), which is read")
        raise HeaderError("is neither FITS nor XISF")
    finally:
        os.close(fd)


def _fits_header(fd: int) -> Header:
    primary, used = _fits_hdu_header(fd, first=True, budget=MAX_FITS_HEADER_BLOCKS)
    if primary.get("NAXIS") != 0:  # (EXTEND is optional: FITS does not require it)
        return primary
    # An empty primary HDU has no data: the next header follows at once. A tile-compressed
    # image (fpack, CFITSIO; N.I.N.A.'s compressed FITS) or an IMAGE extension keeps the
    # image's keywords there.
    try:
        ext, _ = _fits_hdu_header(fd, first=False, budget=MAX_FITS_HEADER_BLOCKS - used)
    except HeaderError:
        return primary
    if ext.get("XTENSION") == "BINTABLE" and ext.get("ZIMAGE") is True:
        for axis in ("NAXIS1", "NAXIS2"):  # the table's are bytes and rows, not pixels
            ext.pop(axis, None)
            if f"Z{axis}" in ext:
                ext[axis] = ext[f"Z{axis}"]
    elif ext.get("XTENSION") != "IMAGE":
        return primary
    return {**primary, **ext}


def _fits_hdu_header(fd: int, *, first: bool, budget: int) -> tuple[Header, int]:
    """The next header of the file at ``fd``'s position, read block by block up to ``END``
    (at most ``budget`` blocks), and the number of blocks read. Raises HeaderError."""
    blocks: list[bytes] = []
    for _ in range(budget):
        block = _read_exact(fd, FITS_BLOCK)
        if len(block) < FITS_BLOCK:
            raise HeaderError("ends inside its FITS header")
        if first and not blocks and not block.startswith(b"SIMPLE  ="):
            raise HeaderError("is not a FITS file (no SIMPLE card)")
        blocks.append(block)
        cards = [block[i:i + 80] for i in range(0, FITS_BLOCK, 80)]
        if any(c.rstrip() == b"END" for c in cards):
            break
    else:
        raise HeaderError(f"has no END card in its first {MAX_FITS_HEADER_BLOCKS} header "
                          "blocks")
    raw = b"".join(blocks)
    # A byte outside ASCII (a "°" in a comment, written by some programs) is its card's
    # problem, not the file's: read with "?" in its place, that card keeps a number or a
    # truth value (the byte was in the comment) but not a text, which would be altered.
    cards = [raw[i:i + 80] for i in range(0, len(raw), 80)]
    altered = {c[:8].decode("ascii", "replace").strip().upper() for c in cards
               if not c.isascii()}
    text = b"".join(bytes(b if b < 128 else 63 for b in c) for c in cards).decode("ascii")
    try:
        header = fits.Header.fromstring(text)
    except Exception as err:  # astropy raises several kinds for a malformed card
        raise HeaderError(f"has a malformed FITS header ({type(err).__name__})") from None
    out: Header = {}
    for card in header.cards:
        key = str(card.keyword).upper()
        if not key or key in ("COMMENT", "HISTORY") or key in out:
            continue
        try:
            value = card.value
        except Exception:  # astropy raises several kinds for a card it cannot parse
            value = UNREADABLE
        if isinstance(value, str) and key in altered:
            value = UNREADABLE
        if isinstance(value, bool | int | float | str | _Unreadable):
            out[key] = value
    return out, len(blocks)


def _xisf_header(fd: int) -> Header:
    head = _read_exact(fd, 16)
    if len(head) < 16 or not head.startswith(XISF_SIGNATURE):
        raise HeaderError("is not an XISF file (no XISF0100 signature)")
    (length,) = struct.unpack("<I", head[8:12])
    if length == 0 or length > MAX_XISF_HEADER_BYTES:
        raise HeaderError(f"declares an XISF header of {length} bytes (at most "
                          f"{MAX_XISF_HEADER_BYTES})")
    data = _read_exact(fd, length)
    if len(data) < length:
        raise HeaderError("ends inside its XISF header")
    upper = data.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise HeaderError("declares a DOCTYPE or entities in its XISF header (refused)")
    try:
        root = ET.fromstring(data.decode("utf-8"))
    except (UnicodeDecodeError, ET.ParseError) as err:
        raise HeaderError(f"has a malformed XISF header ({type(err).__name__})") from None
    out: Header = {}
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "Image" and "NAXIS1" not in out:  # geometry="width:height:channels"
            dims = (el.get("geometry") or "").split(":")
            if len(dims) >= 2 and all(d.isdigit() and len(d) <= 6 for d in dims[:2]):
                out["NAXIS1"], out["NAXIS2"] = int(dims[0]), int(dims[1])
            continue
        if tag != "FITSKeyword":
            continue
        key = (el.get("name") or "").strip().upper()
        if not key or key in ("COMMENT", "HISTORY") or key in out:
            continue
        out[key] = _xisf_value(el.get("value") or "")
    return out


def _xisf_value(raw: str) -> Any:
    """A FITSKeyword value as FITS would read it: quoted text, T/F, integer, real, else the
    text itself (N.I.N.A. wrote strings unquoted before version 3)."""
    s = raw.strip()
    if len(s) >= 2 and s[0] == s[-1] == "'":
        return s[1:-1].replace("''", "'").rstrip()
    if s in ("T", "F"):
        return s == "T"
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s
