"""The sums a pair of frames gives (the sensor analysis' pair statistics), exact, in one pass
over both frames: of each frame, of their difference and of its square, the zeros of each
(clipped pixels) and the bitwise OR of every value (a RAW16 left shift), per 2x2 phase (so a
colour frame's four CFA channels come from the same pass). Frames may be handed over as the raw
words of the file (big-endian int16, decoded in the pass) and shifted right on the way. And the
mean image of a few frames (:func:`accumulate`), in float32 like numpy's in-place arithmetic.

With numba (when installed and not disabled by ``CALIBD_NO_NUMBA``) one compiled pass that
releases the GIL (so two threads can each measure a pair); else numpy in bands of rows (int64).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from calibd.capture.combine.kernels import numba_available

U16 = npt.NDArray[np.uint16]
I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
BAND_PIXELS = 1 << 20  # the numpy path works through bands of about this many pixels
FIELDS = 7  # per phase: sum a, sum b, sum d, sum d^2, zeros a, zeros b, OR of the values


class PairSums(NamedTuple):
    """The exact sums of a pair (a, b) of images over some pixels (``n`` of them)."""

    n: int
    sum_a: int
    sum_b: int
    sum_d: int  # of a - b
    sum_dd: int  # of (a - b)^2
    zeros_a: int
    zeros_b: int
    bits: int  # bitwise OR of every value of both (before any shift)


def phase_sums(a: U16, b: U16, *, raw: bool = False, shift: int = 0) -> I64:
    """(4, 7) int64 sums of a pair of 2-D uint16 images of one shape (strided views allowed),
    per 2x2 phase (row parity * 2 + column parity from the arrays' origin): the fields of
    :class:`PairSums` after ``n``. ``raw``: the arrays hold the file's raw words (big-endian
    int16 as :meth:`capture.combine.reader.FrameSource.read_raw_rows` gives them, on a
    little-endian host) and are decoded in the pass; values are shifted right by ``shift``
    bits (0..15) before the sums (not before the OR). Blocks (releasing the GIL with numba);
    raises ValueError for other shapes or types."""
    if a.shape != b.shape or a.ndim != 2 or a.dtype != np.uint16 or b.dtype != np.uint16:
        raise ValueError(f"a pair is two 2-D uint16 images of one shape, got {a.dtype}"
                         f"{a.shape} and {b.dtype}{b.shape}")
    if not 0 <= shift < 16:
        raise ValueError(f"shift must be 0..15 bits, got {shift}")
    if numba_available():
        from calibd.capture.combine._numba_pairs import pair_phase_sums

        return np.asarray(pair_phase_sums(a, b, raw, shift), dtype=np.int64)
    return _numpy_phase_sums(a, b, raw, shift)


def pair_sums(a: U16, b: U16, *, raw: bool = False, shift: int = 0,
              phases: tuple[int, ...] = (0, 1, 2, 3)) -> PairSums:
    """The sums of :func:`phase_sums` over the given phases (all: the whole images)."""
    return combine_phases(phase_sums(a, b, raw=raw, shift=shift), a.shape, phases)


def combine_phases(sums: I64, shape: tuple[int, ...], phases: tuple[int, ...]) -> PairSums:
    """Add the rows of :func:`phase_sums` for ``phases`` of an image of ``shape``."""
    h, w = shape
    n = sum(((h - p // 2 + 1) // 2) * ((w - p % 2 + 1) // 2) for p in phases)
    s = [int(sums[list(phases), f].sum()) for f in range(FIELDS - 1)]
    bits = 0
    for p in phases:
        bits |= int(sums[p, FIELDS - 1])
    return PairSums(n, s[0], s[1], s[2], s[3], s[4], s[5], bits)


def accumulate(acc: F32, frame: U16, *, raw: bool = False, first: bool = False,
               scale: float = 1.0, minus: F32 | None = None) -> None:
    """One frame into a float32 sum image, in place: ``acc = (acc + frame) * scale - minus``
    (``first``: ``acc`` is not read, the frame starts the sum), each step in float32 like
    numpy's in-place ``+=``, ``*= float32(scale)``, ``-=``. ``raw``: as :func:`phase_sums`.
    Blocks (releasing the GIL with numba); raises ValueError for other shapes or types."""
    if acc.dtype != np.float32 or frame.dtype != np.uint16 or acc.shape != frame.shape or \
            acc.ndim != 2 or (minus is not None and minus.shape != acc.shape):
        raise ValueError(f"accumulate wants 2-D float32 and uint16 of one shape, got {acc.dtype}"
                         f"{acc.shape} and {frame.dtype}{frame.shape}")
    f32 = np.float32(scale)
    if numba_available():
        from calibd.capture.combine._numba_pairs import accumulate as kernel

        kernel(acc, frame, raw, first, f32,
               np.empty((0, 0), np.float32) if minus is None else minus)
        return
    h, w = acc.shape
    rows = max(1, BAND_PIXELS // max(w, 1))
    for r0 in range(0, h, rows):
        band = acc[r0 : r0 + rows]
        x = frame[r0 : r0 + rows]
        x = x.view(">u2") ^ np.uint16(0x8000) if raw else x
        if first:
            band[...] = x
        else:
            band += x
        if f32 != 1:
            band *= f32
        if minus is not None:
            band -= minus[r0 : r0 + rows]


def above_background(img: F32, cols: F32, rows: F32, med: float, margin: float) -> I64:
    """Flat indices (row-major, int64) of the pixels of a 2-D float32 image above their
    background plus a margin: ``img[i, j] > (cols[j] + rows[i] - med) + margin``, each step in
    float32 as numpy's broadcasting has it, without a full-size temporary. Blocks (releasing
    the GIL with numba)."""
    h, w = img.shape
    if img.dtype != np.float32 or cols.shape != (w,) or rows.shape != (h,):
        raise ValueError(f"above_background wants a 2-D float32 image and its {w} column and "
                         f"{h} row levels, got {img.dtype}{img.shape}, {cols.shape}, {rows.shape}")
    c, r = cols.astype(np.float32), rows.astype(np.float32)
    m, g = np.float32(med), np.float32(margin)
    if numba_available():
        from calibd.capture.combine._numba_pairs import above_background as kernel

        out = np.empty(max(1024, img.size // 64), dtype=np.int64)
        n = int(kernel(img, c, r, m, g, out))
        if n > out.size:  # more than the guess: again, with room for every one
            out = np.empty(n, dtype=np.int64)
            kernel(img, c, r, m, g, out)
        return out[:n].copy()
    rows_per = max(1, BAND_PIXELS // max(w, 1))
    parts = []
    for r0 in range(0, h, rows_per):
        band = img[r0 : r0 + rows_per]
        background = c[None, :] + r[r0 : r0 + rows_per, None] - m
        background += g
        parts.append(np.flatnonzero(band > background) + r0 * w)
    return np.concatenate(parts).astype(np.int64)


def _numpy_phase_sums(a: U16, b: U16, raw: bool, shift: int) -> I64:
    h, w = a.shape
    rows = max(2, BAND_PIXELS // max(w, 1)) // 2 * 2  # even: a band keeps the row parity
    out = np.zeros((4, FIELDS), dtype=np.int64)
    for r0 in range(0, h, rows):
        x, y = (_decode(v[r0 : r0 + rows], raw) for v in (a, b))
        for p in range(4):
            xs, ys = x[p // 2 :: 2, p % 2 :: 2], y[p // 2 :: 2, p % 2 :: 2]
            if xs.size == 0:
                continue
            out[p, 6] |= int(np.bitwise_or.reduce(xs, axis=None)) | \
                int(np.bitwise_or.reduce(ys, axis=None))
            xs, ys = xs >> shift, ys >> shift
            d = xs - ys
            out[p, :6] += (int(xs.sum()), int(ys.sum()), int(d.sum()), int((d * d).sum()),
                           int(np.count_nonzero(xs == 0)), int(np.count_nonzero(ys == 0)))
    return out


def _decode(v: U16, raw: bool) -> I64:
    """A band as int64 values (raw words decoded)."""
    if raw:
        return (v.view(">u2") ^ np.uint16(0x8000)).astype(np.int64)
    return v.astype(np.int64)
