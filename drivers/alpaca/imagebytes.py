"""Camera image download over Alpaca, ours rather than alpyca's.

alpyca's ``Camera.ImageArray`` downloads with ``requests.get`` *without a timeout* while holding a
class-wide lock, so one stalled download would block every Alpaca device in the process forever.
This module fetches ``GET /api/v1/camera/{n}/imagearray`` on its own connection per download,
with a connect timeout, a total deadline enforced on every socket read, and a ``cancel()`` that any
thread may call (it shuts the socket down, which wakes a blocked read at once).

It asks for ``application/imagebytes`` (Alpaca ImageBytes: a 44-byte little-endian header of
eleven int32 — MetadataVersion, ErrorNumber, ClientTransactionID, ServerTransactionID, DataStart,
ImageElementType, TransmissionElementType, Rank, Dimension1, Dimension2, Dimension3 — then the
pixels with the last dimension varying fastest) and falls back to the JSON ImageArray only when the
server answers JSON. Alpaca images are indexed [x][y]; everything returned here is [row, column]
``uint16``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt

from calibd.drivers.contracts import ImageArray
from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import ExposureTimeout

logger = logging.getLogger(__name__)

HEADER = struct.Struct("<11i")
HEADER_BYTES = HEADER.size  # 44

#: ImageBytes TransmissionElementType -> numpy dtype (ASCOM ImageArrayElementTypes).
TRANSMISSION_DTYPES: Mapping[int, str] = {
    1: "<i2",  # Int16
    2: "<i4",  # Int32
    3: "<f8",  # Double
    4: "<f4",  # Single
    5: "<u8",  # UInt64
    6: "u1",  # Byte
    7: "<i8",  # Int64
    8: "<u2",  # UInt16
    9: "<u4",  # UInt32
}

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageBytesHeader:
    """The ImageBytes metadata (version 1)."""

    metadata_version: int
    error_number: int
    client_transaction_id: int
    server_transaction_id: int
    data_start: int
    image_element_type: int
    transmission_element_type: int
    rank: int
    dimension1: int
    dimension2: int
    dimension3: int

    @classmethod
    def parse(cls, raw: bytes) -> ImageBytesHeader:
        """Decode the first 44 bytes. Raises ExposureFailed when short or inconsistent."""
        if len(raw) < HEADER_BYTES:
            raise ExposureFailed(f"ImageBytes header is {len(raw)} bytes, expected {HEADER_BYTES}")
        header = cls(*HEADER.unpack_from(raw))
        if header.data_start < HEADER_BYTES:
            raise ExposureFailed(f"ImageBytes DataStart {header.data_start} < {HEADER_BYTES}")
        if header.error_number == 0:
            if header.rank not in (2, 3):
                raise ExposureFailed(f"ImageBytes rank {header.rank} is not 2 or 3")
            if header.dimension1 <= 0 or header.dimension2 <= 0:
                raise ExposureFailed(
                    f"ImageBytes dimensions {header.dimension1} x {header.dimension2} are empty"
                )
        return header

    @property
    def dtype(self) -> np.dtype[Any]:
        """numpy dtype of the transmitted pixels. Raises ExposureFailed for an unknown type."""
        code = TRANSMISSION_DTYPES.get(self.transmission_element_type)
        if code is None:
            raise ExposureFailed(
                f"ImageBytes TransmissionElementType {self.transmission_element_type} unknown"
            )
        return np.dtype(code)

    @property
    def payload_bytes(self) -> int:
        planes = self.dimension3 if self.rank == 3 else 1
        return self.dimension1 * self.dimension2 * planes * self.dtype.itemsize


#: Why a rank-3 (SensorType Color) image is refused: calibration frames must be the sensor's raw
#: values (a debayered image has interpolated, white-balanced pixels no master can correct).
RANK3_REFUSED = (
    "a colour image with 3 planes (rank 3: ASCOM SensorType Color, debayered by the driver); "
    "calibd calibrates raw sensor data only: set the camera's driver to deliver the raw mosaic "
    "(SensorType RGGB) or monochrome"
)


def xy_to_row_column(xy: npt.NDArray[Any]) -> ImageArray:
    """Turn an Alpaca [x][y] array into a C-contiguous [row, column] ``uint16`` array.

    Raises ExposureFailed for colour planes (rank 3) or pixel values outside 0..65535.
    """
    if xy.ndim != 2:
        raise ExposureFailed(RANK3_REFUSED if xy.ndim == 3 else
                             f"image has {xy.ndim} dimensions; only 2-D (mono/raw Bayer) is "
                             "supported")
    rc = xy.T
    if rc.dtype == np.uint16:
        return np.ascontiguousarray(rc)
    if rc.size:
        low, high = rc.min(), rc.max()
        if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 65535:
            raise ExposureFailed(f"pixel values {low}..{high} do not fit 16 bits")
    if rc.dtype.kind == "f":
        rc = np.rint(rc)
    return np.ascontiguousarray(rc, dtype=np.uint16)


def decode_imagebytes(blob: bytes | bytearray | memoryview) -> ImageArray:
    """Decode a whole ImageBytes response body into [row, column] uint16.

    Raises ExposureFailed (an error reported in the header, short or malformed data).
    """
    raw = bytes(blob[:HEADER_BYTES])
    header = ImageBytesHeader.parse(raw)
    if header.error_number != 0:
        message = bytes(blob[header.data_start :]).decode("utf-8", "replace")
        raise ExposureFailed(f"ImageArray: {message} (Alpaca error 0x{header.error_number:X})")
    return _pixels(header, memoryview(blob)[header.data_start :])


def _pixels(header: ImageBytesHeader, payload: memoryview | bytes | bytearray) -> ImageArray:
    if header.rank != 2:
        raise ExposureFailed(RANK3_REFUSED)
    if len(payload) != header.payload_bytes:
        raise ExposureFailed(
            f"ImageBytes payload is {len(payload)} bytes, header says {header.payload_bytes}"
        )
    xy = np.frombuffer(payload, dtype=header.dtype).reshape(header.dimension1, header.dimension2)
    return xy_to_row_column(xy)


def decode_json_imagearray(doc: Any) -> ImageArray:
    """Decode a JSON ImageArray answer (``{"Type":.., "Rank":.., "Value": [[...]], ...}``).

    Raises ExposureFailed (reported error, malformed or non-rectangular data).
    """
    if not isinstance(doc, dict):
        raise ExposureFailed("JSON ImageArray answer is not an object")
    number = int(doc.get("ErrorNumber") or 0)
    if number:
        raise ExposureFailed(
            f"ImageArray: {doc.get('ErrorMessage', '')} (Alpaca error 0x{number:X})"
        )
    try:
        xy = np.asarray(doc["Value"])
    except (KeyError, ValueError) as err:
        raise ExposureFailed(f"JSON ImageArray is malformed: {err}") from err
    if xy.dtype.kind not in "iuf":
        raise ExposureFailed(f"JSON ImageArray has {xy.dtype} elements, not numbers")
    return xy_to_row_column(xy)


class ImageDownload:
    """One image download with a deadline, cancellable from another thread.

    ``deadline`` is on :func:`time.monotonic` (real seconds): socket timeouts are real time.
    """

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        params: Mapping[str, str],
        *,
        deadline: float,
        connect_timeout_s: float,
        device: str,
    ) -> None:
        self._host = host
        self._port = port
        self._target = f"{path}?{urlencode(params)}"
        self._deadline = deadline
        self._connect_timeout_s = connect_timeout_s
        self._device = device
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._cancelled = False
        self.content_type = ""
        self.bytes_read = 0

    def cancel(self) -> None:
        """Abort the download from any thread (never raises); :meth:`run` raises ExposureFailed."""
        with self._lock:
            self._cancelled = True
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise ExposureTimeout(
                f"image download not finished by its deadline ({self.bytes_read} bytes received)",
                device=self._device,
            )
        return left

    def _arm(self) -> None:
        """Set the socket timeout to what is left of the deadline before a blocking read."""
        sock = self._sock
        if sock is not None:
            sock.settimeout(self._remaining())

    def run(self) -> ImageArray:
        """Download and decode. Blocks until done or the deadline.

        Raises ExposureTimeout (deadline), ExposureFailed (cancelled, HTTP or Alpaca error, bad
        data), DeviceUnavailable (cannot connect, connection refused or reset).
        """
        conn = http.client.HTTPConnection(
            self._host, self._port, timeout=min(self._connect_timeout_s, self._remaining())
        )
        try:
            try:
                conn.connect()
                with self._lock:
                    self._sock = conn.sock
                    if self._cancelled:
                        raise ExposureFailed("image download aborted", device=self._device)
                self._arm()
                conn.request(
                    "GET",
                    self._target,
                    headers={
                        "Accept": "application/imagebytes, application/json;q=0.5",
                        "Accept-Encoding": "identity",
                    },
                )
                self._arm()
                resp = conn.getresponse()
                return self._read(resp)
            except DeviceError:
                raise
            except TimeoutError as err:
                if self._cancelled:
                    raise ExposureFailed("image download aborted", device=self._device) from err
                raise ExposureTimeout(
                    f"image download stalled past its deadline ({self.bytes_read} bytes received)",
                    device=self._device,
                ) from err
            except (OSError, http.client.HTTPException) as err:
                if self._cancelled:
                    raise ExposureFailed("image download aborted", device=self._device) from err
                if time.monotonic() >= self._deadline:
                    raise ExposureTimeout(
                        f"image download not finished by its deadline: {err}", device=self._device
                    ) from err
                if self.bytes_read or isinstance(err, http.client.HTTPException):
                    # The server answered and then broke off: the frame is lost, the server
                    # may well be fine.
                    raise ExposureFailed(
                        f"image download broke off after {self.bytes_read} bytes: {err!r}",
                        device=self._device,
                    ) from err
                raise DeviceUnavailable(
                    f"image download failed: {err!r}", device=self._device
                ) from err
        finally:
            with self._lock:
                self._sock = None
            conn.close()

    def _read(self, resp: http.client.HTTPResponse) -> ImageArray:
        self.content_type = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if resp.status != 200:
            body = self._read_exactly(resp, 4096, allow_short=True)
            text = bytes(body).decode("utf-8", "replace")
            raise ExposureFailed(
                f"ImageArray: HTTP {resp.status} {resp.reason}: {text}", device=self._device
            )
        if self.content_type == "application/imagebytes":
            raw = bytes(self._read_exactly(resp, HEADER_BYTES))
            header = ImageBytesHeader.parse(raw)
            self._read_exactly(resp, header.data_start - HEADER_BYTES)
            if header.error_number != 0:
                message = bytes(self._read_exactly(resp, 65536, allow_short=True))
                raise ExposureFailed(
                    f"ImageArray: {message.decode('utf-8', 'replace')} "
                    f"(Alpaca error 0x{header.error_number:X})",
                    device=self._device,
                )
            payload = self._read_exactly(resp, header.payload_bytes)
            return _pixels(header, payload)
        # No ImageBytes: the JSON ImageArray (slow and memory hungry, but standard).
        logger.info(
            "%s: server answered ImageArray as %r, not ImageBytes",
            self._device,
            self.content_type or "no content type",
        )
        length = resp.getheader("Content-Length")
        limit = int(length) if length and length.isdigit() else 1 << 34
        body = self._read_exactly(resp, limit, allow_short=True)
        try:
            doc = json.loads(bytes(body))
        except ValueError as err:
            raise ExposureFailed(
                f"ImageArray answer is neither ImageBytes nor JSON: {err}", device=self._device
            ) from err
        return decode_json_imagearray(doc)

    def _read_exactly(
        self, resp: http.client.HTTPResponse, count: int, *, allow_short: bool = False
    ) -> bytearray:
        """Read ``count`` bytes (fewer at end of body when ``allow_short``), re-arming the socket
        timeout to the remaining deadline before every read so a trickle cannot outlive it."""
        out = bytearray()
        while len(out) < count:
            if self._cancelled:
                raise ExposureFailed("image download aborted", device=self._device)
            self._arm()
            chunk = resp.read1(min(_CHUNK, count - len(out)))
            if not chunk:
                if self._cancelled:
                    raise ExposureFailed("image download aborted", device=self._device)
                if allow_short:
                    break
                raise ExposureFailed(
                    f"image data ended after {self.bytes_read} bytes", device=self._device
                )
            out += chunk
            self.bytes_read += len(chunk)
        return out
