"""Decoding the FITS BLOBs INDI cameras send (in the consumer thread, never in a callback)."""

from __future__ import annotations

import io
import warnings
from datetime import UTC
from datetime import datetime
from typing import Any

import numpy as np

from calibd.drivers.contracts import ImageArray
from calibd.drivers.errors import ExposureFailed


def decode_fits(blob: bytes | bytearray, fmt: str = ".fits") -> tuple[ImageArray, dict[str, Any]]:
    """Parse an INDI FITS BLOB (plain or fpack ``.fz``) into a uint16 [row, column] top-down
    array and its primary header. 8-bit images are scaled to 16 bits. CPU-bound (~10 ms per
    2.6 MB); call it from the consumer thread, never from a callback. Raises ExposureFailed."""
    from astropy.io import fits  # type: ignore[import-untyped,unused-ignore]

    image = None
    try:
        with warnings.catch_warnings():
            # fpack'd (.fz) blobs from INDI carry trailing padding that astropy warns about.
            warnings.filterwarnings("ignore", message="Unexpected extra padding")
            with fits.open(io.BytesIO(bytes(blob)), memmap=False, lazy_load_hdus=False) as hdul:
                skip = ("COMMENT", "HISTORY")
                header = {k: v for k, v in hdul[0].header.items() if k not in skip}
                for hdu in hdul:
                    if hdu.data is not None and getattr(hdu, "is_image", True):
                        image = np.asarray(hdu.data)
                        if hdu is not hdul[0]:
                            header.update({k: v for k, v in hdu.header.items() if k not in header})
                        break
    except Exception as err:
        raise ExposureFailed(f"unreadable {fmt} image from the device: {err}") from err
    if image is not None and image.ndim == 3:
        raise ExposureFailed(
            f"the device sent a {image.shape[0]}-plane colour image (a debayered RGB capture "
            "format); calibd takes raw 16-bit mosaics only: select the camera's RAW16 / mono "
            "capture format")
    if image is None or image.ndim != 2:
        shape = None if image is None else image.shape
        raise ExposureFailed(f"expected a 2-D monochrome image, got shape {shape}")
    if image.dtype == np.uint8:
        data = image.astype(np.uint16) << 8
    elif image.dtype == np.uint16:
        data = image
    elif np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating):
        data = np.clip(np.nan_to_num(image), 0, 65535).astype(np.uint16)
    else:
        raise ExposureFailed(f"unsupported pixel type {image.dtype}")
    if str(header.get("ROWORDER", "TOP-DOWN")).strip().upper() == "BOTTOM-UP":
        data = data[::-1]
    return np.ascontiguousarray(data, dtype=np.uint16), header


def header_time(value: Any) -> datetime | None:
    """A FITS DATE-OBS string as an aware UTC datetime (naive values are UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().rstrip("Z"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
