"""numba set-up for the combination kernels: cache location, the jit decorator, constants.

Importing this module imports numba. Before that it points ``NUMBA_CACHE_DIR`` at a
user-writable directory (``$XDG_CACHE_HOME/calibd/numba``, else ``~/.cache/calibd/numba``) unless
the variable is already set or numba is already imported, so compiled kernels are cached
(``cache=True``) and only the very first build on a machine pays the compile (seconds).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)


def default_cache_dir() -> str:
    """Where compiled kernels are cached unless ``NUMBA_CACHE_DIR`` says otherwise."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "calibd", "numba")


def _configure_cache() -> None:
    if "NUMBA_CACHE_DIR" in os.environ or "numba" in sys.modules:
        return
    path = default_cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:  # numba then falls back to its own default locations
        log.warning("cannot create numba cache directory %s: %s", path, err)
        return
    if os.access(path, os.W_OK):
        os.environ["NUMBA_CACHE_DIR"] = path


_configure_cache()


_configure_cache()

import numba  # noqa: E402
import numpy as np  # noqa: E402

TILE = 512  # pixels per tile: the statistics loops run over this many lanes
SORT_CHUNK = 128  # lanes sorted at a time: N rows of this many stay in L1
INF = np.inf

# method / combine codes (same as capture.combine.kernels)
NONE, SIGMA, WINSOR, MINMAX, PERCENTILE = 0, 1, 2, 3, 4
MEDIAN = 1
MAD_TO_SIGMA = 1.482602218505602
W_CLAMP = 1.5
W_CORR = 1.134
W_TOL = 5e-4
W_ROUNDS = 10

#: every kernel releases the GIL and is cached on disk
jit = numba.njit(nogil=True, cache=True)
