"""Camera images on the wire: Alpaca ImageBytes (metadata version 1) and the JSON ImageArray.

Our frames are ``uint16`` arrays indexed [row, column]. Alpaca images are indexed [x][y] (x =
column, y = row) and both encodings send them with the *last* index varying fastest, so the wire
order is the frame's column-major (Fortran) order: ``data.T`` in C order.

ImageBytes header: eleven little-endian int32 — MetadataVersion (1), ErrorNumber,
ClientTransactionID, ServerTransactionID, DataStart (44), ImageElementType, TransmissionElementType,
Rank, Dimension1 (x size), Dimension2 (y size), Dimension3 (0 for rank 2). ImageElementType is
Int32 (2): the ASCOM Camera interface defines ImageArray as Int32. TransmissionElementType is UInt16
(8) by default — lossless for our 16-bit pixels and half the bytes — or Int32 (2) on request. An
error travels as a header with the error number and the UTF-8 message as the data.
"""

from __future__ import annotations

import enum
import json
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

HEADER = struct.Struct("<11i")
METADATA_VERSION = 1
IMAGEBYTES_MIME = "application/imagebytes"


class ElementType(enum.IntEnum):
    """ASCOM ImageArrayElementTypes (the subset this server sends)."""

    INT32 = 2
    UINT16 = 8


_DTYPES = {ElementType.INT32: "<i4", ElementType.UINT16: "<u2"}


def wants_imagebytes(accept: str | None) -> bool:
    """True when an HTTP Accept header lists ``application/imagebytes`` (q > 0)."""
    for item in (accept or "").split(","):
        media, *options = item.split(";")
        if media.strip().lower() != IMAGEBYTES_MIME:
            continue
        quality = 1.0
        for option in options:
            key, _, value = option.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        return quality > 0
    return False


def encode_imagebytes(
    data: npt.NDArray[np.uint16],
    *,
    client_transaction_id: int,
    server_transaction_id: int,
    transmission: ElementType = ElementType.UINT16,
) -> bytes:
    """ImageBytes for a 2-D [row, column] image. Copies the pixels once (to column-major).

    Raises ValueError for anything but a 2-D array.
    """
    if data.ndim != 2:
        raise ValueError(f"ImageBytes needs a 2-D image, got {data.ndim} dimensions")
    rows, columns = int(data.shape[0]), int(data.shape[1])
    header = HEADER.pack(
        METADATA_VERSION,
        0,
        client_transaction_id,
        server_transaction_id,
        HEADER.size,
        ElementType.INT32,
        transmission,
        2,
        columns,
        rows,
        0,
    )
    pixels = np.asarray(data).astype(_DTYPES[transmission], copy=False).tobytes(order="F")
    return header + pixels


def encode_imagebytes_error(
    number: int, message: str, *, client_transaction_id: int, server_transaction_id: int
) -> bytes:
    """An ImageBytes answer that carries an Alpaca error and its message instead of pixels."""
    header = HEADER.pack(
        METADATA_VERSION,
        number,
        client_transaction_id,
        server_transaction_id,
        HEADER.size,
        0,
        0,
        0,
        0,
        0,
        0,
    )
    return header + message.encode("utf-8")


def encode_json_imagearray(
    data: npt.NDArray[np.uint16], *, client_transaction_id: int, server_transaction_id: int
) -> bytes:
    """The JSON ImageArray answer (``Type`` 2 = Int32, ``Rank`` 2, ``Value`` as [x][y] lists).

    Slow and large (about 6 bytes and 0.1 µs per pixel): for clients without ImageBytes.
    """
    columns = data.T.tolist()
    value = "[" + ",".join("[" + ",".join(map(str, column)) + "]" for column in columns) + "]"
    head: dict[str, Any] = {"Type": int(ElementType.INT32), "Rank": 2}
    tail: dict[str, Any] = {
        "ClientTransactionID": client_transaction_id,
        "ServerTransactionID": server_transaction_id,
        "ErrorNumber": 0,
        "ErrorMessage": "",
    }
    text = json.dumps(head)[:-1] + ', "Value": ' + value + ", " + json.dumps(tail)[1:]
    return text.encode("ascii")
