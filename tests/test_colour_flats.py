"""Flats on colour (Bayer) sensors: the level of each CFA channel, the brightest aimed at the
target, no channel clipped, the weakest above the floor, the levels in the header, the index and
``library status``."""

from __future__ import annotations

import numpy as np
import pytest

from calibd.capture import cfa
from calibd.capture.flats.channels import colour_problem, measure

BIAS = 500.0


def mosaic(pattern: str, levels: dict[str, float], shape: tuple[int, int] = (240, 320),
           seed: int = 3) -> np.ndarray:
    """A raw colour flat: each channel at its level (ADU, bias included) with 1 % noise."""
    rng = np.random.default_rng(seed)
    data = np.empty(shape)
    for name, plane in cfa.channels(data, pattern).items():
        plane[...] = rng.normal(levels[name], 0.01 * (levels[name] - BIAS) + 2, plane.shape)
    return data.clip(0, 65535).astype(np.uint16)


@pytest.mark.parametrize("pattern", cfa.PATTERNS)
def test_channel_levels_follow_the_pattern(pattern: str) -> None:
    levels = {"R": 8000.0, "G1": 20000.0, "G2": 19800.0, "B": 6000.0}
    found = measure(mosaic(pattern, levels), pattern, 65535.0)
    for name, want in levels.items():
        assert abs(found.levels[name] - want) < 0.01 * want, (name, found.levels)
    assert found.brightest[0] == "G1" and found.weakest[0] == "B"
    assert set(found.header()) == {"CFALVLR", "CFALVLG1", "CFALVLG2", "CFALVLB"}
    assert colour_problem(found, bias_adu=BIAS, floor_adu=1000.0) is None


def test_a_clipping_channel_or_a_starved_one_is_refused_with_the_reason() -> None:
    clipped = measure(mosaic("RGGB", {"R": 9000.0, "G1": 65535.0, "G2": 65535.0, "B": 4000.0}),
                      "RGGB", 65535.0)
    why = colour_problem(clipped, bias_adu=BIAS, floor_adu=1000.0)
    assert why is not None and why.startswith("channel G1/G2 clips")
    starved = measure(mosaic("BGGR", {"R": 1200.0, "G1": 20000.0, "G2": 20000.0, "B": 9000.0}),
                      "BGGR", 65535.0)
    why = colour_problem(starved, bias_adu=BIAS, floor_adu=1000.0)
    assert why is not None and "weakest channel R is only 69" in why and "floor of 1000" in why
    assert colour_problem(starved, bias_adu=BIAS, floor_adu=500.0) is None
