"""The mount and dome contract suites (:mod:`tests.mount_contract`) over every transport: the
simulator (built through ``simulators.registry``), INDI (indiserver's telescope and dome
simulators and the roll-off roof), Alpaca against our server and alpaca-simulators.

The servers are the session's (see conftest): missing INDI or Alpaca software skips these tests
on a developer machine and fails them under ``CALIBD_REQUIRE`` (CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from calibd.drivers.pointing import Place, altaz_to_radec
from calibd.simulators import registry as simulator
from calibd.simulators.clock import ScaledClock
from tests.mount_contract import DomeContract, DomeTarget, MountContract, MountTarget

SITE = Place(52.0, 5.0, 10.0)


class TestSimulatedMount(MountContract, DomeContract):
    @pytest.fixture
    def clock(self) -> ScaledClock:
        return ScaledClock(scale=100.0)

    @pytest.fixture
    def mount_target(self, clock: ScaledClock) -> Iterator[MountTarget]:
        mount = simulator.open_mount(clock, latitude_deg=SITE.latitude_deg,
                                     longitude_deg=SITE.longitude_deg,
                                     elevation_m=SITE.elevation_m)
        mount.connect()

        def radec_of(alt: float, az: float, when: datetime) -> tuple[float, float]:
            return altaz_to_radec(SITE, when, alt, az)

        yield MountTarget(mount, clock.now, radec_of, tolerance_deg=0.05)
        mount.disconnect()

    @pytest.fixture(params=[False, True], ids=["dome", "roof"])
    def dome_target(self, clock: ScaledClock, request: pytest.FixtureRequest
                    ) -> Iterator[DomeTarget]:
        dome = simulator.open_dome(clock, roof=request.param, shutter_move_s=20.0)
        dome.connect()
        yield DomeTarget(dome)
        dome.disconnect()
