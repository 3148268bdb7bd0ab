"""numba kernel of :mod:`capture.combine.pairs`: the four sums of a pair of uint16 images in
one pass (importing this module imports numba)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._numba_setup import jit


@jit
def pair_sums(a: Any, b: Any) -> tuple[Any, Any, Any, Any]:
    """(sum a, sum b, sum (a - b), sum (a - b)^2) as exact int64 of two 2-D uint16 arrays of
    the same shape (strided views allowed)."""
    sa = np.int64(0)
    sb = np.int64(0)
    sd = np.int64(0)
    sdd = np.int64(0)
    for i in range(a.shape[0]):
        ra = a[i]
        rb = b[i]
        for j in range(a.shape[1]):
            x = np.int64(ra[j])
            y = np.int64(rb[j])
            d = x - y
            sa += x
            sb += y
            sd += d
            sdd += d * d
    return sa, sb, sd, sdd
