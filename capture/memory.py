"""Process-wide allocator setting for a process that handles frames of tens of megabytes.

glibc serves blocks above its mmap threshold with ``mmap`` and returns them to the system when
they are freed, but it raises that threshold to the size of the largest such block freed so far
(up to 32 MB). After the first frame, the band buffers, noise windows and read scratch of the
capture, writer and combine threads then come from per-thread arenas and stay there once freed:
tens of megabytes per thread for the life of the daemon. :func:`fix_mmap_threshold` pins the
threshold at 4 MB: frames, maps and noise banks go back to the system as soon as they are freed,
while the small band buffers that each thread reuses frame after frame stay in its arena.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 4 * 2**20  # above the bands (~2 MB), below frames, maps and banks


def fix_mmap_threshold(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold at ``threshold_bytes``. Returns False (and changes nothing)
    where the C library has no ``mallopt`` (not glibc). Never raises."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")
    return ok
