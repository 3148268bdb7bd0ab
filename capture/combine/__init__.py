"""Streaming combination of calibration frames into masters (bias, dark, flat).

N frames are combined under a fixed memory budget that does not grow with N: row bands are
streamed from every file (a fast raw path for uint16/BZERO files, astropy for anything else),
outliers are rejected per pixel (sigma clipping, winsorized sigma clipping, min/max, percentile
or none) and the kept samples are averaged or median-combined into a float32 master with its
provenance in the header. numba kernels are used when numba is installed (and not disabled by
``CALIBD_NO_NUMBA=1``); a pure-numpy path gives identical results without it.

Typical use::

    from calibd.capture.combine import Rejection, combine_to_fits

    stats = combine_to_fits(bias_paths, "Master_Bias.fits", rejection=Rejection("sigma"))
"""

from .engine import CombineOptions
from .engine import CombineResult
from .engine import CombineStats
from .engine import combine_arrays
from .engine import combine_files
from .engine import combine_to_fits
from .engine import rejection_mask
from .engine import warm_up
from .kernels import CombineMethod
from .kernels import Engine
from .kernels import numba_available
from .kernels import resolve_engine
from .reader import FrameReadError
from .reader import FrameSource
from .rejection import Rejection
from .rejection import RejectionMethod
from .writer import MasterWriter
from .writer import write_master

__all__ = [
    "CombineMethod",
    "CombineOptions",
    "CombineResult",
    "CombineStats",
    "Engine",
    "FrameReadError",
    "FrameSource",
    "MasterWriter",
    "Rejection",
    "RejectionMethod",
    "combine_arrays",
    "combine_files",
    "combine_to_fits",
    "numba_available",
    "rejection_mask",
    "resolve_engine",
    "warm_up",
    "write_master",
]
