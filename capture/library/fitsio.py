"""FITS files the way stacking programs expect them, written so a crash never leaves a counted,
half-written file.

Headers follow the conventions PixInsight (WBPP), Siril, APP and DSS group and match on:
``IMAGETYP``, ``EXPTIME``/``EXPOSURE``/``DARKTIME``, ``DATE-OBS``, ``CCD-TEMP``/``SET-TEMP``,
``GAIN``/``OFFSET`` as integers, ``XBINNING``/``YBINNING``, ``READOUTM``, ``EGAIN``, ``INSTRUME``,
``FILTER``, ``ROWORDER``, ``SWCREATE``, plus calibd's own plan/run/cell keywords for resume and
rebuilding the index.

Colour (Bayer mosaic) frames: the pixels are written as the camera delivered them, row 0 first,
and labelled ``ROWORDER = 'TOP-DOWN'``; ``BAYERPAT`` is the colours of the first two pixels of
the first two rows written (the frame's own pattern: subframe origin and binning already folded
in by the driver), so ``XBAYROFF = YBAYROFF = 0``. Siril, PixInsight and OpenCV-style readers then
demosaic to the right colours (tests/test_bayer_fits.py proves it for all four phases, both row
orders). A mono image (or a colour sensor's mono-binned output) gets none of the three.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import IO
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
from astropy.io import fits

from calibd.capture import __version__
from calibd.capture import cfa
from calibd.capture.errors import LibraryError
from calibd.capture.inputfile import open_regular
from calibd.capture.library.atomic import AtomicFile
from calibd.capture.library.checksum import placeholder_cards
from calibd.capture.library.checksum import seal
from calibd.capture.textsafe import shown

if TYPE_CHECKING:  # annotations only: reading headers needs no plan or driver modules
    from calibd.capture.plans.cells import Cell
    from calibd.drivers.contracts import CameraInfo
    from calibd.drivers.contracts import Frame

IMAGETYP: dict[str, str] = {
    "bias": "Bias Frame",
    "dark": "Dark Frame",
    "flat": "Flat Frame",
    "darkflat": "Dark Flat",  # not "Dark Frame": selecting darks by IMAGETYP must not take them
}
Card = tuple[str, Any, str]


@dataclass(frozen=True)
class FrameContext:
    """What the sequencer knows about a frame beyond the camera's :class:`Frame`."""

    camera_name: str
    info: CameraInfo
    cell: Cell
    plan_name: str
    run_id: int
    seq: int
    cooler_power_pct: float | None = None
    extra: Mapping[str, str | int | float | bool] | None = None


def iso_utc(when: datetime) -> str:
    """ISO 8601 UTC with milliseconds and no offset suffix, as FITS DATE-OBS wants."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def frame_cards(frame: Frame, ctx: FrameContext) -> list[Card]:
    """Header cards for one captured frame (values as actually applied and measured)."""
    cell, info, s = ctx.cell, ctx.info, frame.settings
    temps = [t for t in (frame.temp_start_c, frame.temp_end_c) if t is not None]
    cards: list[Card] = [
        ("IMAGETYP", IMAGETYP[cell.kind], "type of image"),
        ("EXPTIME", float(frame.exposure_s), "[s] exposure time"),
        ("EXPOSURE", float(frame.exposure_s), "[s] exposure time"),
        ("DATE-OBS", iso_utc(frame.start_utc), "UTC start of exposure"),
        ("TIMESYS", "UTC", "time scale of DATE-OBS"),
    ]
    if cell.kind != "flat":
        cards.append(("DARKTIME", float(frame.exposure_s), "[s] dark current integration time"))
    if cell.kind == "darkflat":
        cards.append(("CALTYPE", "DARKFLAT", "dark frame for flats"))
    if temps:
        cards.append(("CCD-TEMP", round(sum(temps) / len(temps), 2),
                      "[degC] mean of start and end sensor temp"))
    if frame.temp_start_c is not None:
        cards.append(("CCDTSTRT", float(frame.temp_start_c), "[degC] sensor temp at start"))
    if frame.temp_end_c is not None:
        cards.append(("CCDTEND", float(frame.temp_end_c), "[degC] sensor temp at end"))
    cards.append(("SET-TEMP", float(cell.setpoint_c), "[degC] cooler set-point"))
    if ctx.cooler_power_pct is not None:
        cards.append(("COOLPWR", float(ctx.cooler_power_pct), "[%] cooler power"))
    cards += [
        ("GAIN", int(s.gain), "sensor gain (camera units)"),
        ("OFFSET", int(s.offset), "sensor offset (camera units)"),
    ]
    if frame.electrons_per_adu is not None:
        cards.append(("EGAIN", round(float(frame.electrons_per_adu), 6), "[e-/ADU] conversion"))
    cards += [
        ("XBINNING", int(s.binning), "binning factor, x"),
        ("YBINNING", int(s.binning), "binning factor, y"),
        ("READOUTM", s.readout_mode, "read-out mode"),
        ("XPIXSZ", float(info.pixel_size_um * s.binning), "[um] pixel size incl. binning"),
        ("YPIXSZ", float(info.pixel_size_um * s.binning), "[um] pixel size incl. binning"),
        ("BITDEPTH", int(info.bit_depth), "native ADC bits (data scaled to 16)"),
        ("INSTRUME", info.model, "camera model"),
        ("CAMERAID", info.camera_id, "camera serial / id"),
        ("CAMNAME", ctx.camera_name, "camera name in calibd"),
    ]
    if cell.filter is not None:
        cards.append(("FILTER", cell.filter, "filter"))
    pattern = cfa.normalize(frame.bayer_pattern)
    if pattern is not None:  # the pattern of these pixels, origin and binning folded in
        cards += [
            ("BAYERPAT", pattern, "Bayer colours of the first 2x2 pixels, top-down"),
            ("XBAYROFF", 0, "Bayer X offset (folded into BAYERPAT)"),
            ("YBAYROFF", 0, "Bayer Y offset (folded into BAYERPAT)"),
        ]
    cards += [
        ("ROWORDER", "TOP-DOWN", "row 0 is the top of the image"),
        ("SWCREATE", f"calibd {__version__}", "software that created this file"),
        ("PLANNAME", ctx.plan_name, "calibd plan"),
        ("RUNID", int(ctx.run_id), "calibd run id in this library"),
        ("CELLKEY", cell.key, "calibd cell"),
        ("CELLN", int(cell.count), "frames planned for this cell"),
        ("FRAMESEQ", int(ctx.seq), "frame number within the cell"),
    ]
    if cell.sensor:
        cards.append(("SENSSET", True, "sensor analysis frame: never a master's input"))
    for key, value in {**frame.extra_header, **(ctx.extra or {})}.items():
        cards.append((key, value, EXTRA_COMMENTS.get(key, "")))
    return cards


#: Comments of calibd's own cards that the capture adds to some frames (colour flats).
EXTRA_COMMENTS = {
    "CFALVLR": "[ADU] R channel, central median",
    "CFALVLG1": "[ADU] G on the R row, central median",
    "CFALVLG2": "[ADU] G on the B row, central median",
    "CFALVLB": "[ADU] B channel, central median",
    "FLATBIAS": "[ADU] bias level the flat was judged against",
}


def set_card(header: fits.Header, key: str, value: Any, comment: str = "") -> None:
    """Set ``key``; the comment is shortened (or dropped) so the card stays on one line."""
    header[key] = value
    room = 80 - len(str(header.cards[key]).rstrip()) - 3
    if comment and room > 8:
        header.comments[key] = comment[:room]


def build_header(cards: Iterable[Card]) -> fits.Header:
    header = fits.Header()
    for key, value, comment in cards:
        set_card(header, key, value, comment)
    return header


def write_atomic(path: Path, data: np.ndarray, header: fits.Header, *, fsync: bool = True,
                 data_written: Callable[[], None] | None = None) -> int:
    """Write a FITS file so that ``path`` either does not exist or is complete, with its
    ``CHECKSUM``/``DATASUM`` filled in (:mod:`capture.library.checksum`).

    Goes through the one atomic writer (:class:`capture.library.atomic.AtomicFile`).
    ``data_written`` is called once the image is in the file, before the checksum and the fsyncs
    (the caller may drop the image then). Returns the file size in bytes. Blocks on disk I/O.
    Raises LibraryError on a full disk or an unwritable folder (the temporary file is removed).
    """
    for key, value, comment in placeholder_cards():
        set_card(header, key, value, comment)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with AtomicFile(path, fsync=fsync) as out:
            fh = out.file()
            write_image(fh, data, header)
            del data  # this function's reference: the caller may free the image now
            if data_written is not None:
                data_written()
            fh.flush()
            assert out.fd is not None
            seal(out.fd)
            return out.commit()
    except OSError as err:
        raise disk_error(err, path) from err


def disk_error(err: OSError, path: Path) -> LibraryError:
    """The LibraryError for a failed write of ``path``: "disk full" said plainly."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return LibraryError(f"disk full while writing {path.name}: {err.strerror}; free space, "
                            "then run again (nothing counted was lost)")
    return LibraryError(f"cannot write {path}: {err.strerror or err}")


def write_image(fh: IO[bytes], data: np.ndarray, header: fits.Header) -> None:
    """Write one primary HDU holding ``data`` to the binary file ``fh``: the same bytes as
    astropy's ``PrimaryHDU(data, header).writeto``, without its two full-size copies of the
    image. A uint16 image is written as FITS's big-endian int16 with BZERO 32768 a band of rows
    at a time (~1 MB of memory whatever the frame's size); other types go through astropy.
    Blocks on I/O; raises OSError."""
    hdu = fits.PrimaryHDU(data=data, header=header)  # the structural cards; the data is not copied
    if data.dtype != np.uint16 or data.ndim != 2:
        hdu.writeto(fh)
        return
    fh.write(hdu.header.tostring().encode("ascii"))
    height, width = data.shape
    rows = max(1, _WRITE_BAND_BYTES // max(1, 2 * width))
    band = np.empty((min(rows, height), width), dtype=np.uint16)
    for r0 in range(0, height, rows):
        part = band[: min(height, r0 + rows) - r0]
        np.bitwise_xor(data[r0 : r0 + part.shape[0]], np.uint16(0x8000), out=part)  # - BZERO
        part.byteswap(inplace=True)
        fh.write(part.data)
    fh.write(bytes(-(2 * data.size) % 2880))


_WRITE_BAND_BYTES = 1 << 20


class UnreadableCard(ValueError):
    """A FITS file whose header has a card no FITS reader can parse (its value); ``key``: the
    card's keyword, made safe to show."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def read_complete_header(path: Path) -> fits.Header:
    """Header of a complete single-image FITS file, every card's value readable.

    Only a regular file is opened, without blocking (a FIFO or a device in the library is
    refused, not waited on). Raises ValueError (its text made safe to show) when the file is
    not such a file, not FITS, is truncated (shorter than its header says), or has no 2-D
    image; UnreadableCard (a ValueError) when a card's value cannot be parsed.
    """
    try:
        with os.fdopen(open_regular(path), "rb") as fh:
            header = fits.Header.fromfile(fh)
            data_start = fh.tell()
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{shown(path.name)}: not a readable FITS file "
                         f"({shown(str(err), 200)})") from None
    for card in header.cards:  # parsed here once, so that no later read of a value raises
        try:
            card.value  # noqa: B018 - astropy parses a card's value when it is first read
        except Exception:  # astropy raises several kinds (VerifyError, ValueError)
            key = shown(str(card.keyword), 8)
            raise UnreadableCard(f"{shown(path.name)}: the card {key} cannot be read",
                                 key) from None
    if header.get("NAXIS") != 2:
        raise ValueError(f"{shown(path.name)}: not a 2-D image")
    bitpix, width, height = (header.get(key) for key in ("BITPIX", "NAXIS1", "NAXIS2"))
    if not all(type(v) is int for v in (bitpix, width, height)) \
            or bitpix not in (8, 16, 32, 64, -32, -64) \
            or not (0 < width <= 1_000_000 and 0 < height <= 1_000_000):
        raise ValueError(f"{shown(path.name)}: BITPIX, NAXIS1 or NAXIS2 is not a valid size")
    data_bytes = width * height * abs(bitpix) // 8
    padded = -(-data_bytes // 2880) * 2880
    size = path.stat().st_size
    if size < data_start + data_bytes:
        raise ValueError(f"{shown(path.name)}: truncated ({size} bytes, needs "
                         f"{data_start + padded})")
    return header
