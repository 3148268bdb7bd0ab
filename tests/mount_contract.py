"""The shared mount and dome contract suites (:class:`drivers.contracts.Mount`,
:class:`drivers.contracts.Dome`), run over every transport like :mod:`tests.accessory_contract`.

A transport's test class mixes in :class:`MountContract` and/or :class:`DomeContract` and
provides ``mount_target`` (a *connected* mount, unparked or parked) and ``dome_target`` (a
*connected* dome). The tests check the contract — park and unpark, alt/az slews that leave
tracking as asked (INDI's simulator turns it on after every slew), RA/Dec slews, refusals while
parked or out of range, abort from another thread, the shutter's states, errors of a
disconnected device — not a device's own extras. Device calls get the target's ``timeout_s``
(clock seconds); pointing is compared within ``tolerance_deg``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pytest

from calibd.drivers.contracts import Dome
from calibd.drivers.contracts import Mount
from calibd.drivers.contracts import MountState
from calibd.drivers.contracts import ShutterState
from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import SettingRejected
from calibd.drivers.pointing import separation_deg
from tests.support import wait_for


@dataclass
class MountTarget:
    """A connected mount. ``now`` is the clock the device's sky turns with; ``radec_of`` gives
    the RA (hours) / Dec (degrees) the device itself uses for an alt/az at a time."""

    mount: Mount
    now: Callable[[], datetime]
    radec_of: Callable[[float, float, datetime], tuple[float, float]]
    timeout_s: float = 120.0
    tolerance_deg: float = 0.5
    slew_seen_s: float = 10.0  # real seconds for a started slew to show as SLEWING


@dataclass
class DomeTarget:
    """A connected dome; ``reports_motion`` False for a server whose shutter moves at once."""

    dome: Dome
    timeout_s: float = 120.0
    reports_motion: bool = True


SIDEREAL_DEG_PER_S = 360.0 / 86164.0905  # the sky's turn, degrees per second


def shutter_states_during(dome: Dome, move: Callable[[], None]) -> list[ShutterState]:
    """The shutter states another thread saw (every 10 ms) while ``move`` ran; a state read that
    failed is left out. Blocks until ``move`` returns; raises what it raises."""
    seen: list[ShutterState] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(DeviceError):
                seen.append(dome.shutter())
            stop.wait(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        move()
    finally:
        stop.set()
        watcher.join(10.0)
    return seen


def _near(mount: Mount, alt: float, az: float, tol: float) -> float:
    status = mount.status()
    miss = separation_deg(status.alt_deg, status.az_deg, alt, az)
    assert miss < tol, f"points at {status.alt_deg:.2f}/{status.az_deg:.2f}, wanted {alt}/{az}"
    return miss


class MountContract:
    """Mix into a test class that defines a ``mount_target`` fixture."""

    def test_park_and_unpark(self, mount_target: MountTarget) -> None:
        mount, timeout = mount_target.mount, mount_target.timeout_s
        assert isinstance(mount, Mount)
        mount.park(timeout_s=timeout)
        assert mount.status().state is MountState.PARKED
        mount.park(timeout_s=timeout)  # already parked
        with pytest.raises(SettingRejected):
            mount.slew_altaz(60.0, 180.0, timeout_s=timeout)
        mount.unpark(timeout_s=timeout)
        assert mount.status().state in (MountState.STOPPED, MountState.TRACKING)
        mount.park(timeout_s=timeout)
        assert mount.status().parked

    def test_altaz_slew_leaves_tracking_as_asked(self, mount_target: MountTarget) -> None:
        mount, timeout, tol = mount_target.mount, mount_target.timeout_s, mount_target.tolerance_deg
        mount.unpark(timeout_s=timeout)
        mount.slew_altaz(78.0, 100.0, tracking=False, timeout_s=timeout)
        assert mount.status().state is MountState.STOPPED
        _near(mount, 78.0, 100.0, tol)
        tracking_from = mount_target.now()
        mount.set_tracking(True)
        assert mount.status().state is MountState.TRACKING
        mount.set_tracking(False)
        assert mount.status().state is MountState.STOPPED
        # while it tracked, the sky (and the mount with it) turned at most at the sidereal rate
        tracked_s = (mount_target.now() - tracking_from).total_seconds()
        _near(mount, 78.0, 100.0, tol + SIDEREAL_DEG_PER_S * max(tracked_s, 0.0))

    def test_radec_slew_tracks_then_stops(self, mount_target: MountTarget) -> None:
        mount, timeout = mount_target.mount, mount_target.timeout_s
        mount.unpark(timeout_s=timeout)
        ra, dec = mount_target.radec_of(75.0, 260.0, mount_target.now())
        mount.slew_radec(ra, dec, tracking=True, timeout_s=timeout)
        status = mount.status()
        assert status.state is MountState.TRACKING
        miss_ra_deg = abs(((status.ra_hours - ra) * 15.0 + 180.0) % 360.0 - 180.0)
        assert miss_ra_deg < mount_target.tolerance_deg
        assert abs(status.dec_deg - dec) < mount_target.tolerance_deg
        assert 70.0 < status.alt_deg < 80.0  # the sky turned a little during the slew
        mount.set_tracking(False)
        assert mount.status().state is MountState.STOPPED

    def test_out_of_range_is_rejected_and_the_mount_stays_usable(
            self, mount_target: MountTarget) -> None:
        mount, timeout = mount_target.mount, mount_target.timeout_s
        mount.unpark(timeout_s=timeout)
        for alt, az in ((95.0, 10.0), (45.0, 400.0), (float("nan"), 10.0)):
            with pytest.raises(SettingRejected):
                mount.slew_altaz(alt, az, timeout_s=timeout)
        with pytest.raises(SettingRejected):
            mount.slew_radec(25.0, 0.0, timeout_s=timeout)
        after = mount.status()
        assert after.state is not MountState.SLEWING and not after.parked
        mount.set_tracking(False)
        assert mount.status().state is MountState.STOPPED

    def test_abort_stops_a_slew_from_another_thread(self, mount_target: MountTarget) -> None:
        mount, timeout = mount_target.mount, mount_target.timeout_s
        mount.unpark(timeout_s=timeout)
        errors: list[BaseException] = []

        def far_slew() -> None:
            try:
                mount.slew_altaz(35.0, 180.0, timeout_s=timeout)
            except DeviceError as err:
                errors.append(err)

        worker = threading.Thread(target=far_slew)
        worker.start()
        try:
            wait_for(lambda: mount.status().state is MountState.SLEWING,
                     mount_target.slew_seen_s, "the slew to start")
            mount.abort()
        finally:
            worker.join(60.0)
        assert not worker.is_alive()
        assert errors and isinstance(errors[0], DeviceUnavailable), errors
        assert "abort" in str(errors[0])
        status = mount.status()
        assert status.state is not MountState.SLEWING
        mount.abort()  # idle: a no-op
        mount.set_tracking(False)  # usable again
        assert mount.status().state is MountState.STOPPED

    def test_a_disconnected_mount_refuses_then_reconnects(self, mount_target: MountTarget
                                                          ) -> None:
        mount, timeout = mount_target.mount, mount_target.timeout_s
        before = mount.status().state
        mount.disconnect()
        mount.disconnect()  # never raises
        with pytest.raises(DeviceUnavailable):
            mount.status()
        with pytest.raises(DeviceUnavailable):
            mount.park(timeout_s=timeout)
        mount.connect()
        assert mount.status().state is before


class DomeContract:
    """Mix into a test class that defines a ``dome_target`` fixture."""

    def test_the_shutter_opens_and_closes_reporting_its_motion(self, dome_target: DomeTarget
                                                                ) -> None:
        dome, timeout = dome_target.dome, dome_target.timeout_s
        assert isinstance(dome, Dome)
        dome.unpark(timeout_s=timeout)
        dome.stop_slaving()
        dome.close_shutter(timeout_s=timeout)
        assert dome.shutter() is ShutterState.CLOSED
        seen = shutter_states_during(dome, lambda: dome.open_shutter(timeout_s=timeout))
        assert dome.shutter() is ShutterState.OPEN
        assert ShutterState.OPENING in seen or not dome_target.reports_motion, seen
        assert set(seen) <= {ShutterState.CLOSED, ShutterState.OPENING, ShutterState.OPEN}
        dome.open_shutter(timeout_s=timeout)  # already open
        assert dome.shutter() is ShutterState.OPEN
        dome.close_shutter(timeout_s=timeout)
        assert dome.shutter() is ShutterState.CLOSED

    def test_park(self, dome_target: DomeTarget) -> None:
        dome, timeout = dome_target.dome, dome_target.timeout_s
        dome.unpark(timeout_s=timeout)
        dome.park(timeout_s=timeout)
        assert dome.at_park()
        dome.park(timeout_s=timeout)  # already parked
        assert dome.at_park()

    def test_a_disconnected_dome_refuses_then_reconnects(self, dome_target: DomeTarget) -> None:
        dome, timeout = dome_target.dome, dome_target.timeout_s
        dome.disconnect()
        dome.disconnect()  # never raises
        with pytest.raises(DeviceUnavailable):
            dome.shutter()
        with pytest.raises(DeviceUnavailable):
            dome.open_shutter(timeout_s=timeout)
        dome.connect()
        dome.close_shutter(timeout_s=timeout)
        assert dome.shutter() is ShutterState.CLOSED
