"""Bringing 10/12/14-bit raw data to calibd's 16-bit scale.

calibd's frames are always MSB-aligned 16-bit (:class:`drivers.contracts.CameraInfo` ``bit_depth``
is the native ADC depth; a 12-bit sensor's values are multiples of 16). ZWO, Player One and Touptek
(``OPTION_ZERO_PADDING``) already deliver RAW16 that way: the native values shifted left by
``16 - bits``. A driver that sends the native values instead (LSB-aligned) is recognised from the
data itself and shifted up, so statistics in e⁻/ADU stay consistent whatever the driver did.
"""

from __future__ import annotations

import numpy as np

from calibd.drivers.contracts import ImageArray


def align_msb(data: ImageArray, bit_depth: int) -> tuple[ImageArray, int]:
    """``(data on the 16-bit scale, the left shift applied)``. Data that is already MSB-aligned
    (every value a multiple of ``2**(16 - bit_depth)``) or that uses bits above ``bit_depth`` is
    returned unchanged with shift 0. Pure CPU, one pass over the frame."""
    shift = 16 - bit_depth
    if not 0 < shift < 16 or data.size == 0:
        return data, 0
    step_mask = np.uint16((1 << shift) - 1)
    if not np.any(data & step_mask):
        return data, 0  # already MSB-aligned
    if int(data.max()) >= 1 << bit_depth:
        return data, 0  # not native-range data either: leave it alone
    return np.left_shift(data, np.uint16(shift)), shift
