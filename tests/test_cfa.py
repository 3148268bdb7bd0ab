"""capture/cfa.py: Bayer phases, shifts, row flips and the four sub-planes."""

from __future__ import annotations

import numpy as np
import pytest

from calibd.capture import cfa


def _mosaic(pattern: str, shape: tuple[int, int]) -> np.ndarray:
    """An image whose every pixel holds the ASCII code of its colour letter under ``pattern``."""
    rows, cols = np.indices(shape)
    letters = np.array([ord(ch) for ch in pattern]).reshape(2, 2)
    return letters[rows % 2, cols % 2]


@pytest.mark.parametrize("pattern", cfa.PATTERNS)
@pytest.mark.parametrize(("dx", "dy"), [(0, 0), (1, 0), (0, 1), (1, 1), (3, 2)])
def test_shifted_matches_a_cropped_mosaic(pattern: str, dx: int, dy: int) -> None:
    image = _mosaic(pattern, (8, 8))
    crop = image[dy:, dx:]
    seen = "".join(chr(int(v)) for v in crop[:2, :2].ravel())
    assert cfa.shifted(pattern, dx, dy) == seen


@pytest.mark.parametrize("pattern", cfa.PATTERNS)
@pytest.mark.parametrize("height", [6, 7])
def test_flipped_rows_matches_a_flipped_mosaic(pattern: str, height: int) -> None:
    image = _mosaic(pattern, (height, 4))[::-1]
    seen = "".join(chr(int(v)) for v in image[:2, :2].ravel())
    assert cfa.flipped_rows(pattern, height) == seen
    assert (seen == pattern) == (height % 2 == 1)


@pytest.mark.parametrize("pattern", cfa.PATTERNS)
def test_channels_are_single_coloured_views(pattern: str) -> None:
    image = _mosaic(pattern, (6, 10))
    planes = cfa.channels(image, pattern)
    assert list(planes) == list(cfa.CHANNEL_NAMES)
    for name, plane in planes.items():
        assert plane.shape == (3, 5)
        assert np.shares_memory(plane, image)
        assert set(np.unique(plane)) == {ord(name[0])}
    # G1 shares its row with red, G2 with blue.
    r_row = cfa.channel_origins(pattern)["R"][0]
    assert cfa.channel_origins(pattern)["G1"][0] == r_row
    assert cfa.channel_origins(pattern)["G2"][0] != r_row
    cmap = cfa.colour_map(pattern, image.shape)
    for index, name in enumerate(cfa.CHANNEL_NAMES):
        assert set(np.unique(image[cmap == index])) == {ord(name[0])}


def test_normalize_and_refusals() -> None:
    assert cfa.normalize(" rggb ") == "RGGB"
    for bad in (None, "", "CMYG", "RGB", 3, "RGGBX"):
        assert cfa.normalize(bad) is None
    with pytest.raises(ValueError, match="not a Bayer pattern"):
        cfa.shifted("CMYG", 1, 0)
    with pytest.raises(ValueError, match="2-D"):
        cfa.channels(np.zeros((2, 2, 3)), "RGGB")


def test_header_pattern_reads_offsets_and_row_order_like_siril() -> None:
    assert cfa.header_pattern({"BAYERPAT": "RGGB"}, 100) == "RGGB"
    assert cfa.header_pattern({"BAYERPAT": "rggb", "XBAYROFF": 1}, 100) == "GRBG"
    assert cfa.header_pattern({"BAYERPAT": "RGGB", "YBAYROFF": 1}, 100) == "GBRG"
    # BOTTOM-UP: BAYERPAT is the displayed top-left, the last row stored
    assert cfa.header_pattern({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"}, 100) == "GBRG"
    assert cfa.header_pattern({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"}, 101) == "RGGB"
    assert cfa.header_pattern({"BAYERPAT": "CMYG"}, 100) is None
    assert cfa.header_pattern({}, 100) is None
    assert cfa.header_pattern({"BAYERPAT": "RGGB", "XBAYROFF": "x"}, 100) == "RGGB"

