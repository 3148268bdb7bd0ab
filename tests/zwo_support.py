"""Plain helpers for the ZWO tests (the fixtures live in tests/zwo_fixtures.py, a pytest plugin)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import NoReturn

import pytest

from drivers.zwo import ZwoCamera

TIME_SCALE = 100.0  # simulated seconds per real second, in the double and the test clock


def zwo_required() -> bool:
    """True when $CALIBD_REQUIRE lists ``zwo``: missing parts fail instead of skipping."""
    tokens = re.split(r"[\s,;]+", os.environ.get("CALIBD_REQUIRE", "").strip().lower())
    return "zwo" in tokens


def skip_or_fail(reason: str) -> NoReturn:
    if zwo_required():
        pytest.fail(f"{reason} (required because CALIBD_REQUIRE contains 'zwo')", pytrace=False)
    pytest.skip(reason)


CameraFactory = Callable[..., ZwoCamera]


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> bool:
    """Poll ``predicate`` for up to ``timeout_s`` real seconds."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()
