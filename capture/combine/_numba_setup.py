"""numba set-up for the combination kernels: cache location, the jit decorator, constants.

Importing this module imports numba. Before that it points ``NUMBA_CACHE_DIR`` at a
user-writable directory unless the variable is already set or numba is already imported, so
compiled kernels are cached (``cache=True``) and only the very first build on a machine pays the
compile (seconds): ``$XDG_CACHE_HOME/calibd/numba`` (else ``~/.cache/calibd/numba``), or, when
that cannot be written (a package installed system-wide and run by a user without a usable home,
say), ``calibd-numba-<uid>`` in the temporary folder, made private (0700, owned by the user) or
not used at all. Without any, numba would refuse to load the kernels.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import tempfile

log = logging.getLogger(__name__)


def default_cache_dir() -> str:
    """Where compiled kernels are cached unless ``NUMBA_CACHE_DIR`` says otherwise."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "calibd", "numba")


def fallback_cache_dir() -> str:
    """The cache used when :func:`default_cache_dir` cannot be written: private, in the
    temporary folder."""
    return os.path.join(tempfile.gettempdir(), f"calibd-numba-{os.getuid()}")


def _writable(path: str, *, private: bool) -> bool:
    """Create ``path`` if needed; True if this user can write it (and, with ``private``, it is
    a directory of this user's that nobody else can write: a shared folder's cache could be
    planted by another user)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        return False
    if private and (info.st_uid != os.getuid() or info.st_mode & 0o022):
        return False
    return os.access(path, os.W_OK | os.X_OK)


def choose_cache_dir() -> str | None:
    """The first usable of :func:`default_cache_dir` and :func:`fallback_cache_dir`."""
    if _writable(default_cache_dir(), private=False):
        return default_cache_dir()
    if _writable(fallback_cache_dir(), private=True):
        return fallback_cache_dir()
    return None


def _configure_cache() -> None:
    if "NUMBA_CACHE_DIR" in os.environ or "numba" in sys.modules:
        return
    path = choose_cache_dir()
    if path is None:  # numba then tries its own default locations
        log.warning("no writable folder for compiled kernels (%s, %s)", default_cache_dir(),
                    fallback_cache_dir())
        return
    os.environ["NUMBA_CACHE_DIR"] = path


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
