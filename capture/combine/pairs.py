"""The sums a pair of frames gives (the sensor analysis' pair statistics): of each frame, of
their difference and of its square, exact, in one pass with numba (when installed and not
disabled by ``CALIBD_NO_NUMBA``), else with numpy in bands of rows (float32, exact for 16-bit
values and their differences, the band sums added in float64)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from calibd.capture.combine.kernels import numba_available

U16 = npt.NDArray[np.uint16]
BAND_PIXELS = 1 << 20  # the numpy path works through bands of about this many pixels


def pair_sums(a: U16, b: U16) -> tuple[float, float, float, float]:
    """(sum a, sum b, sum (a - b), sum (a - b)^2) of two uint16 images of the same shape.
    Raises ValueError for other shapes or types."""
    if a.shape != b.shape or a.ndim != 2 or a.dtype != np.uint16 or b.dtype != np.uint16:
        raise ValueError(f"a pair is two 2-D uint16 images of one shape, got {a.dtype}"
                         f"{a.shape} and {b.dtype}{b.shape}")
    if numba_available():
        from calibd.capture.combine._numba_pairs import pair_sums as kernel

        sa, sb, sd, sdd = kernel(a, b)
        return float(sa), float(sb), float(sd), float(sdd)
    return _numpy_sums(a, b)


def _numpy_sums(a: U16, b: U16) -> tuple[float, float, float, float]:
    h, w = a.shape
    rows = max(1, BAND_PIXELS // max(w, 1))
    buf = np.empty((min(rows, h), w), dtype=np.float32)
    tmp = np.empty_like(buf)
    sa = sb = sd = sdd = 0.0
    for r0 in range(0, h, rows):
        n = min(rows, h - r0)
        x, y = buf[:n], tmp[:n]
        np.copyto(x, a[r0 : r0 + n])
        np.copyto(y, b[r0 : r0 + n])
        sa += float(x.sum())
        sb += float(y.sum())
        x -= y
        d = x.reshape(-1)
        sd += float(d.sum())
        sdd += float(np.dot(d, d))
    return sa, sb, sd, sdd
