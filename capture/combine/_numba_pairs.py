"""numba kernel of :mod:`capture.combine.pairs`: the sums of a pair of uint16 images per 2x2
phase, in one pass (importing this module imports numba)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._numba_setup import jit


@jit
def _value(w: Any, raw: bool) -> Any:
    """One pixel as int64: a raw FITS word (big-endian int16 read as native little-endian
    uint16) is byte-swapped and offset by 32768."""
    x = np.int64(w)
    if raw:
        x = (((x >> 8) | (x << 8)) & 0xFFFF) ^ 0x8000
    return x


@jit
def _add(out: Any, q: int, sa: Any, sb: Any, sd: Any, sdd: Any, za: Any, zb: Any,
         bits: Any) -> None:
    out[q, 0] += sa
    out[q, 1] += sb
    out[q, 2] += sd
    out[q, 3] += sdd
    out[q, 4] += za
    out[q, 5] += zb
    out[q, 6] |= bits


@jit
def pair_phase_sums(a: Any, b: Any, raw: bool, shift: int) -> Any:
    """(4, 7) int64: for each 2x2 phase (row parity * 2 + column parity, from the arrays'
    origin) sum a, sum b, sum (a - b), sum (a - b)^2, zeros of a, zeros of b, and the bitwise
    OR of every value of both, of two 2-D uint16 arrays of one shape (strided views allowed).
    Values are decoded first when ``raw``, then shifted right by ``shift`` bits (the OR is
    taken before the shift)."""
    out = np.zeros((4, 7), np.int64)
    h, w = a.shape
    half = w // 2
    for i in range(h):
        ra = a[i]
        rb = b[i]
        p = (i & 1) * 2
        sa0 = sb0 = sd0 = sdd0 = za0 = zb0 = or0 = np.int64(0)
        sa1 = sb1 = sd1 = sdd1 = za1 = zb1 = or1 = np.int64(0)
        for k in range(half):
            x0 = _value(ra[2 * k], raw)
            y0 = _value(rb[2 * k], raw)
            x1 = _value(ra[2 * k + 1], raw)
            y1 = _value(rb[2 * k + 1], raw)
            or0 |= x0 | y0
            or1 |= x1 | y1
            x0 >>= shift
            y0 >>= shift
            x1 >>= shift
            y1 >>= shift
            d0 = x0 - y0
            d1 = x1 - y1
            sa0 += x0
            sb0 += y0
            sd0 += d0
            sdd0 += d0 * d0
            za0 += x0 == 0
            zb0 += y0 == 0
            sa1 += x1
            sb1 += y1
            sd1 += d1
            sdd1 += d1 * d1
            za1 += x1 == 0
            zb1 += y1 == 0
        if w & 1:
            x0 = _value(ra[w - 1], raw)
            y0 = _value(rb[w - 1], raw)
            or0 |= x0 | y0
            x0 >>= shift
            y0 >>= shift
            d0 = x0 - y0
            sa0 += x0
            sb0 += y0
            sd0 += d0
            sdd0 += d0 * d0
            za0 += x0 == 0
            zb0 += y0 == 0
        _add(out, p, sa0, sb0, sd0, sdd0, za0, zb0, or0)
        _add(out, p + 1, sa1, sb1, sd1, sdd1, za1, zb1, or1)
    return out


@jit
def accumulate(acc: Any, w: Any, raw: bool, first: bool, scale: Any, minus: Any) -> None:
    """``acc = ((acc if not first else 0) + w) * scale - minus`` in float32, pixel by pixel,
    ``w`` decoded when ``raw``; ``minus`` of shape (0, 0): nothing subtracted."""
    h, wd = acc.shape
    sub = minus.shape[0] > 0
    one = scale == np.float32(1.0)
    for i in range(h):
        ra = acc[i]
        rw = w[i]
        for j in range(wd):
            x = np.float32(_value(rw[j], raw))
            v = x if first else ra[j] + x
            if not one:
                v = v * scale
            if sub:
                v = v - minus[i, j]
            ra[j] = v


@jit
def above_background(img: Any, cols: Any, rows: Any, med: Any, margin: Any, out: Any) -> int:
    """Count the pixels of ``img`` (2-D float32) above ``(cols[j] + rows[i] - med) + margin``
    (float32 steps) and write the first ``out.size`` of their flat indices (row-major) into
    ``out``; returns the count."""
    h, w = img.shape
    n = 0
    cap = out.size
    for i in range(h):
        r = rows[i]
        row = img[i]
        for j in range(w):
            b = (cols[j] + r) - med
            b = b + margin
            if row[j] > b:
                if n < cap:
                    out[n] = i * w + j
                n += 1
    return n
