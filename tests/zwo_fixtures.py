"""Fixtures for the ZWO driver tests: the ASI SDK double, built with gcc and loaded once.

``zwoasi.init`` loads one library per process and cannot switch, so the double is built and
loaded once per test session (``asi_double``) and each test starts from a clean double through
``AsiDouble.reset`` (``zwo_double``). Checks that need another library (the real SDK, discovery
from a pyzwoasi install) run in a subprocess.

Register with ``pytest_plugins = ("tests.zwo_fixtures",)`` (fixtures: ``asi_double_path``,
``asi_double``, ``zwo_double``, ``zwo_clock``, ``zwo_camera``).

Missing gcc or zwoasi skips these tests with the reason, unless ``$CALIBD_REQUIRE`` names ``zwo``
(e.g. ``CALIBD_REQUIRE=indi,alpaca,zwo``): then they fail, so CI cannot pass by skipping.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest

from calibd.drivers import zwo
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.zwo import ZwoCamera
from calibd.simulators.asi_sdk import AsiDouble
from calibd.simulators.asi_sdk import DoubleBuildError
from calibd.simulators.asi_sdk import build_double
from calibd.simulators.asi_sdk import find_compiler
from calibd.simulators.clock import ScaledClock
from tests.support import skip_or_fail

TIME_SCALE = 100.0  # simulated seconds per real second, in the double and the test clock
CameraFactory = Callable[..., ZwoCamera]


@pytest.fixture(scope="session")
def asi_double_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The double, compiled once per session (about 0.5 s)."""
    try:
        import zwoasi  # noqa: F401 - presence check only
    except ImportError:
        skip_or_fail("zwo", "zwoasi is not installed (pip install 'calibd[zwo]')")
    if find_compiler() is None:
        skip_or_fail("zwo", "gcc not found: cannot build the ASI SDK double")
    try:
        return build_double(tmp_path_factory.mktemp("asi_double"))
    except DoubleBuildError as err:
        pytest.fail(f"building the ASI SDK double failed: {err}", pytrace=False)


@pytest.fixture(scope="session")
def asi_double(asi_double_path: Path) -> AsiDouble:
    """The double loaded into zwoasi for the whole session (zwoasi.init runs once)."""
    try:
        location = zwo.load_sdk(str(asi_double_path))
    except DeviceUnavailable as err:
        skip_or_fail("zwo", f"cannot load the ASI SDK double into zwoasi: {err}")
    if not Path(location.path).samefile(asi_double_path):
        skip_or_fail("zwo", f"another ASI SDK is loaded in this process: {location.path}")
    return AsiDouble(asi_double_path)


@pytest.fixture
def zwo_double(asi_double: AsiDouble) -> Iterator[AsiDouble]:
    """A freshly reset double running at TIME_SCALE; reset again afterwards (which also makes any
    call still sleeping in a hang fault return without touching the next test's cameras)."""
    asi_double.reset(time_scale=TIME_SCALE)
    yield asi_double
    asi_double.reset(time_scale=TIME_SCALE)


@pytest.fixture
def zwo_clock() -> ScaledClock:
    """A clock running at the double's TIME_SCALE."""
    return ScaledClock(TIME_SCALE)


@pytest.fixture
def zwo_camera(asi_double_path: Path, zwo_clock: ScaledClock) -> Iterator[CameraFactory]:
    """``zwo_camera(**kwargs)`` -> an unconnected ZwoCamera on the double; all are disconnected
    at the end of the test."""
    made: list[ZwoCamera] = []

    def factory(**kwargs: object) -> ZwoCamera:
        kwargs.setdefault("sdk_path", str(asi_double_path))
        kwargs.setdefault("clock", zwo_clock)
        kwargs.setdefault("call_timeout_s", 2.0)
        cam = ZwoCamera(**kwargs)  # type: ignore[arg-type]
        made.append(cam)
        return cam

    yield factory
    for cam in made:
        cam.disconnect()
