"""Finding and reading the frames of a sensor analysis.

Frames are grouped by camera settings (gain, offset, binning, read-out mode) from the library
index (:meth:`capture.library.index.Index.sensor_frames`); when several runs hold the same cell,
the newest run's frames are used. Images are read as uint16 through the raw reader of
:mod:`capture.combine.reader`, and a RAW16 left shift (10/12/14-bit data padded with low zero
bits) is undone before any statistics.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from calibd.capture.cfa import channels
from calibd.capture.cfa import header_pattern
from calibd.capture.combine.reader import FrameSource
from calibd.capture.library.frame_queries import SensorFrame

U16 = npt.NDArray[np.uint16]
LADDER_KEY = re.compile(r"\|lvl(\d+)$")
Settings = tuple[int, int, int, str]  # gain, offset, binning, read-out mode


@dataclass
class Group:
    """The frames of one setting (gain, offset, binning, mode), by role."""

    settings: Settings
    camera: str
    bias: dict[float, list[SensorFrame]] = field(default_factory=dict)  # by set-point
    darks: dict[tuple[float, float], list[SensorFrame]] = field(default_factory=dict)
    darkflats: dict[float, list[SensorFrame]] = field(default_factory=dict)  # by exposure
    ladder: dict[int, list[SensorFrame]] = field(default_factory=dict)  # by level index


def group_frames(frames: list[SensorFrame]) -> tuple[dict[tuple[str, Settings], Group],
                                                     dict[tuple[str, int, int, str],
                                                          dict[int, list[SensorFrame]]]]:
    """Group indexed frames: per camera and settings; and the offset sweep, per camera,
    gain, binning and mode: offset -> bias frames (set-point ignored). Newest run wins per cell."""
    newest: dict[str, int] = {}
    for f in frames:
        newest[f.cell_key] = max(newest.get(f.cell_key, f.run_id), f.run_id)
    groups: dict[tuple[str, Settings], Group] = {}
    sweep: dict[tuple[str, int, int, str], dict[int, list[SensorFrame]]] = defaultdict(dict)
    for f in frames:
        if f.run_id != newest[f.cell_key]:
            continue
        settings = (int(f.gain), int(f.offset), int(f.binning), str(f.readout_mode))
        g = groups.setdefault((f.camera, settings), Group(settings, f.camera))
        if f.kind == "bias":
            g.bias.setdefault(float(f.setpoint_c), []).append(f)
            sweep[(f.camera, settings[0], settings[2], settings[3])].setdefault(
                settings[1], []).append(f)
        elif f.kind == "dark":
            g.darks.setdefault((float(f.setpoint_c), float(f.exposure_s)), []).append(f)
        elif f.kind == "darkflat":
            g.darkflats.setdefault(float(f.exposure_s), []).append(f)
        elif f.kind == "flat":
            m = LADDER_KEY.search(f.cell_key)
            if m:
                g.ladder.setdefault(int(m.group(1)), []).append(f)
    return groups, sweep


@dataclass(frozen=True)
class Image:
    """One frame's pixels (native ADU after undoing a left shift) and its colour pattern."""

    data: U16
    pattern: str | None  # Bayer pattern, None for mono


@dataclass(frozen=True)
class Words:
    """One frame as read: the file's raw words (``raw``: big-endian int16 as
    :meth:`capture.combine.reader.FrameSource.read_raw_rows` gives them, for the pair kernel to
    decode) or, for a file off the fast path, the decoded uint16 values."""

    data: U16
    raw: bool
    pattern: str | None  # Bayer pattern, None for mono


def read_words(root: Path, frame: SensorFrame, buf: U16 | None = None) -> Words:
    """Read one frame without decoding it when its file allows (uncompressed 16-bit):
    into ``buf`` when it has the frame's shape, else into a new array. Blocks on the disk;
    raises FrameReadError."""
    path = root / frame.path
    with FrameSource(path) as src:
        h, w = src.shape
        pattern = header_pattern(src.header, h)
        if src.fast_u16:
            raw = buf if buf is not None and buf.shape == (h, w) else \
                np.empty((h, w), dtype=np.uint16)
            src.read_raw_rows(0, h, raw)
            return Words(raw, True, pattern)
        tmp = np.empty((h, w), dtype=np.float32)
        src.read_rows(0, h, tmp, np.empty(h * w * 8, dtype=np.uint8))
        np.clip(tmp, 0, 65535, out=tmp)
        out = np.empty((h, w), dtype=np.uint16)
        out[...] = tmp
        return Words(out, False, pattern)


def read_image(root: Path, frame: SensorFrame, scratch: list[U16] | None = None) -> Image:
    """Read one frame as uint16. ``scratch``: a one-element list holding the raw-read buffer to
    reuse (a reader of many frames saves allocating and zeroing one per frame); filled when
    empty or of another size. Blocks on the disk; raises FrameReadError."""
    words = read_words(root, frame, scratch[0] if scratch else None)
    if not words.raw:
        return Image(words.data, words.pattern)
    if scratch is not None:
        scratch[:] = [words.data]
    return Image(decode(words.data, True), words.pattern)


def decode(words: U16, raw: bool, shift: int = 0) -> U16:
    """A new uint16 array of the values of ``words`` (a view of :attr:`Words.data`), decoded
    when ``raw`` (big-endian int16 + 32768: one pass, swapping bytes as it reads), shifted right
    by ``shift`` bits."""
    out = words.view(">u2") ^ np.uint16(0x8000) if raw else words.copy()
    if shift:
        out >>= np.uint16(shift)
    return np.asarray(out, dtype=np.uint16)


def left_shift(images: list[U16]) -> int:
    """Bits every value of every image is shifted left by (RAW16 of a 10/12/14-bit sensor
    is MSB-aligned: its low bits are always zero); 0 when any low bit is set. At most 8."""
    acc = 0
    for img in images:
        acc |= int(np.bitwise_or.reduce(img, axis=None))
        if acc & 1:
            return 0
    return shift_of(acc)


def shift_of(bits: int) -> int:
    """:func:`left_shift` from the bitwise OR of every value: its trailing zero bits, at most
    8; 0 for 0."""
    if bits == 0:
        return 0
    shift = 0
    while not bits & (1 << shift) and shift < 8:
        shift += 1
    return shift


def planes(img: U16, pattern: str | None) -> dict[str, U16]:
    """``{'mono': img}``, or the four CFA sub-planes (views) of a colour frame."""
    if pattern is None:
        return {"mono": img}
    return {k: np.asarray(v, dtype=np.uint16) for k, v in channels(img, pattern).items()}
