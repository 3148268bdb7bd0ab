"""The mount and dome contract suites (:mod:`tests.mount_contract`) over every transport: the
simulator (built through ``simulators.registry``), INDI (indiserver's telescope, dome and
roll-off roof simulators), Alpaca against our server and alpaca-simulators.

The servers are the session's (see conftest): missing INDI or Alpaca software skips these tests
on a developer machine and fails them under ``CALIBD_REQUIRE`` (CI).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from typing import Any

import pytest

from calibd.drivers.alpaca import AlpacaDome
from calibd.drivers.alpaca import AlpacaMount
from calibd.drivers.contracts import ShutterState
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import SettingRejected
from calibd.drivers.indi import IndiDome
from calibd.drivers.indi import IndiMount
from calibd.drivers.indi._state import PropSnapshot
from calibd.drivers.pointing import Place
from calibd.drivers.pointing import altaz_to_radec
from calibd.simulators import registry as simulator
from calibd.simulators.clock import ScaledClock
from tests.alpaca_servers import AlpacaSimServer
from tests.alpaca_servers import OurAlpacaServer
from tests.alpaca_servers import call
from tests.indi_server import DOME
from tests.indi_server import ROOF
from tests.indi_server import ROOF_DRIVER
from tests.indi_server import TELESCOPE
from tests.indi_server import IndiTestServer
from tests.indi_server import observatory_double_args
from tests.indi_server import running_indi_server
from tests.mount_contract import DomeContract
from tests.mount_contract import DomeTarget
from tests.mount_contract import MountContract
from tests.mount_contract import MountTarget
from tests.mount_contract import shutter_states_during

SITE = Place(52.0, 5.0, 10.0)
HOST = "127.0.0.1"


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


def _jnow(alt: float, az: float, when: datetime) -> tuple[float, float]:
    return altaz_to_radec(SITE, when, alt, az)


@pytest.fixture(scope="module")
def indi_mount(indi_mount_server: IndiTestServer) -> Iterator[IndiMount]:
    srv = indi_mount_server
    mount = IndiMount(host=srv.host, port=srv.port, device=TELESCOPE,
                      latitude_deg=SITE.latitude_deg, longitude_deg=SITE.longitude_deg,
                      elevation_m=SITE.elevation_m)
    mount.connect()
    # Park near the zenith, where the suite slews, so parks stay short (the default park
    # position is on the horizon, a 24 s move).
    srv.setprop(f"{TELESCOPE}.TELESCOPE_PARK_POSITION.PARK_HA=0;PARK_DEC={SITE.latitude_deg}")
    yield mount
    mount.disconnect()


@pytest.mark.indi
class TestIndiMount(MountContract):
    @pytest.fixture
    def mount_target(self, indi_mount: IndiMount) -> MountTarget:
        indi_mount.connect()
        return MountTarget(indi_mount, lambda: datetime.now(UTC), _jnow, timeout_s=60.0)


@pytest.mark.indi
def test_a_park_another_client_interrupts_is_a_failure(
    indi_mount: IndiMount, indi_mount_server: IndiTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The telescope simulator answers UNPARK during a park with TELESCOPE_PARK Alert ("aborted")
    and, in the next report, Ok with PARK on. The wait must see the Alert even when both
    reports are in before it looks (see :func:`_park_interrupted_by_unpark`)."""
    srv, mount = indi_mount_server, indi_mount
    mount.connect()
    mount.unpark(timeout_s=10.0)
    # A park position far from the zenith, where the suite leaves the mount: a move of seconds.
    srv.setprop(f"{TELESCOPE}.TELESCOPE_PARK_POSITION.PARK_HA=-6;PARK_DEC=0")
    try:
        _park_interrupted_by_unpark(srv, mount, TELESCOPE, monkeypatch)
    finally:
        srv.setprop(f"{TELESCOPE}.TELESCOPE_PARK_POSITION.PARK_HA=0;PARK_DEC={SITE.latitude_deg}")
        mount.unpark(timeout_s=10.0)


def _park_interrupted_by_unpark(srv: IndiTestServer, mount: IndiMount, device: str,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Park ``mount`` (unparked) while another client sends UNPARK once the park's first answer
    is in; the park's wait starts only once the Alert and the Ok after it are both in (forced:
    the answer is held until then). The park must fail naming the abort."""
    conn = mount._require()
    set_switch = mount._set_switch

    def answered_then_interrupted(name: str, on: str, **kwargs: Any) -> PropSnapshot:
        answer = set_switch(name, on, **kwargs)  # PARK: Busy, the mount is on its way
        after = conn.version()
        srv.setprop(f"{device}.TELESCOPE_PARK.UNPARK=On")
        assert conn.wait_until(lambda st: _recovered(st.prop(device, name), after), 10.0)
        return answer

    monkeypatch.setattr(mount, "_set_switch", answered_then_interrupted)
    try:
        with pytest.raises(DeviceUnavailable, match=r"park failed: .*aborted"):
            mount.park(timeout_s=30.0)
    finally:
        monkeypatch.undo()


def _parked_by_another_client_after_the_check(
    mount: IndiMount, srv: IndiTestServer, monkeypatch: pytest.MonkeyPatch
) -> list[float]:
    """Make ``mount``'s own "parked?" check pass, then park the mount from a second client
    (indi_setprop) and wait until this client has seen the park finished: the race in which a
    request reaches a mount parked after calibd looked. Returns a list that gets the
    monotonic time the park was seen finished."""
    refuse_parked = mount._refuse_parked
    parked_at: list[float] = []

    def then_parked_elsewhere() -> None:
        refuse_parked()
        srv.setprop(f"{TELESCOPE}.TELESCOPE_PARK.PARK=On")
        conn = mount._require()
        parked = lambda st: _parked(st.prop(TELESCOPE, "TELESCOPE_PARK"))  # noqa: E731
        assert conn.wait_until(parked, 60.0), "the park from the second client did not finish"
        parked_at.append(time.monotonic())

    monkeypatch.setattr(mount, "_refuse_parked", then_parked_elsewhere)
    return parked_at


def _parked(snap: PropSnapshot | None) -> bool | None:
    return True if snap is not None and snap.is_on("PARK") and snap.state == "Ok" else None


@pytest.mark.indi
def test_a_goto_the_mount_refuses_because_it_was_parked_meanwhile_names_the_reason(
    indi_mount: IndiMount, indi_mount_server: IndiTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The telescope simulator refuses a goto while parked without an Alert: a warning
    ("Please unpark the mount before issuing any motion/sync commands."), then
    EQUATORIAL_EOD_COORD Idle and no Busy. The slew must say so at once (after a short
    grace), not wait to its deadline and report a timeout."""
    srv, mount = indi_mount_server, indi_mount
    mount.connect()
    mount.unpark(timeout_s=10.0)
    ra, dec = _jnow(60.0, 90.0, datetime.now(UTC))
    parked_at = _parked_by_another_client_after_the_check(mount, srv, monkeypatch)
    try:
        with pytest.raises(SettingRejected, match=r"the mount is parked: .*[Uu]npark"):
            mount.slew_radec(ra, dec, timeout_s=20.0)
        assert time.monotonic() - parked_at[0] < 5.0  # the grace, not the deadline
    finally:
        monkeypatch.undo()
        mount.unpark(timeout_s=10.0)


@pytest.mark.indi
def test_tracking_the_mount_refuses_because_it_was_parked_meanwhile_is_not_taken_as_set(
    indi_mount: IndiMount, indi_mount_server: IndiTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The telescope simulator refuses TRACK_ON while parked without an Alert: a warning
    ("Telescope is Parked, Unpark before tracking."), then TELESCOPE_TRACK_STATE Idle with
    TRACK_OFF on."""
    srv, mount = indi_mount_server, indi_mount
    mount.connect()
    mount.unpark(timeout_s=10.0)
    mount.set_tracking(False)
    _parked_by_another_client_after_the_check(mount, srv, monkeypatch)
    try:
        with pytest.raises(SettingRejected, match=r"the mount is parked: .*Unpark before"):
            mount.set_tracking(True)
        track = mount._prop("TELESCOPE_TRACK_STATE")
        assert track is not None and track.is_on("TRACK_OFF")
    finally:
        monkeypatch.undo()
        mount.unpark(timeout_s=10.0)


def _recovered(snap: PropSnapshot | None, version: int) -> bool | None:
    """True once ``snap`` was Alert after ``version`` and has been reported again since."""
    ok = snap is not None and snap.alerted_since(version) and snap.version > snap.alerted
    return True if ok else None


@pytest.mark.indi
class TestIndiDome(DomeContract):
    @pytest.fixture(params=[(DOME, 60.0), (ROOF, 30.0)], ids=["dome", "roof"])
    def dome_target(self, indi_mount_server: IndiTestServer, request: pytest.FixtureRequest
                    ) -> Iterator[DomeTarget]:
        """The dome simulator, or indi_rolloff_dome (its roof is DOME_PARK, moved through
        DOME_MOTION; the first move of a session starts from an unknown position), on the
        session's mount server."""
        srv = indi_mount_server
        device, timeout_s = request.param
        dome = IndiDome(host=srv.host, port=srv.port, device=device)
        dome.connect()
        yield DomeTarget(dome, timeout_s=timeout_s)
        dome.disconnect()


@pytest.mark.indi
class TestIndiRoof:
    """indi_rolloff_dome on a server of its own."""

    def test_a_fresh_roof_is_driven_to_its_limit_switches(self) -> None:
        """Without saved park data (a server of its own, fresh HOME) the roof driver reports no
        position, then UNPARK, with both limit switches off, and answers UNPARK without moving:
        opening must move the roof (10 s)."""
        with running_indi_server(drivers=(ROOF_DRIVER,)) as srv:
            roof = IndiDome(host=srv.host, port=srv.port, device=ROOF)
            roof.connect()
            try:
                seen = shutter_states_during(roof, lambda: roof.open_shutter(timeout_s=30.0))
                assert ShutterState.OPENING in seen, seen
                assert roof.shutter() is ShutterState.OPEN  # closing: the contract above
            finally:
                roof.disconnect()


DOUBLES_SCALE = 20.0  # simulated seconds per real second of the doubles' observatory


@pytest.fixture(scope="module")
def observatory_doubles() -> Iterator[tuple[IndiTestServer, ScaledClock]]:
    """A camera double serving the simulated observatory's telescope and dome (our INDI doubles
    under indiserver), and the clock it runs (same scale, start and real start)."""
    from calibd.simulators.indi_doubles.families import FAMILIES

    start = datetime.now(UTC)
    with running_indi_server(drivers=(FAMILIES["asi"].executable,), double_scale=DOUBLES_SCALE,
                             double_size=(32, 24),
                             double_args=observatory_double_args(SITE, start, start)) as srv:
        yield srv, ScaledClock(DOUBLES_SCALE, start, real_start=start)


@pytest.mark.indi
class TestIndiObservatoryDoubles(MountContract, DomeContract):
    """The doubles' telescope and dome hold to the contracts INDI's own simulators do."""

    @pytest.fixture
    def mount_target(self, observatory_doubles: tuple[IndiTestServer, ScaledClock]
                     ) -> Iterator[MountTarget]:
        from calibd.simulators.indi_doubles.observatory import TELESCOPE

        srv, clock = observatory_doubles
        mount = IndiMount(host=srv.host, port=srv.port, device=TELESCOPE, clock=clock,
                          latitude_deg=SITE.latitude_deg, longitude_deg=SITE.longitude_deg,
                          elevation_m=SITE.elevation_m)
        mount.connect()
        yield MountTarget(mount, clock.now, _jnow, timeout_s=60.0, tolerance_deg=0.2)
        mount.disconnect()

    def test_a_park_another_client_interrupts_is_a_failure(
            self, mount_target: MountTarget,
            observatory_doubles: tuple[IndiTestServer, ScaledClock],
            monkeypatch: pytest.MonkeyPatch) -> None:
        """As the real simulator (the test above): UNPARK during a park is answered Alert and
        at once Ok with PARK on; the park fails, and the mount is parked where it stopped."""
        from calibd.simulators.indi_doubles.observatory import TELESCOPE as TELESCOPE_DOUBLE

        mount = mount_target.mount
        assert isinstance(mount, IndiMount)
        mount.unpark(timeout_s=10.0)
        # Far from the park position (alt 0°, az 0°): a park of 170°, 2 s at this scale
        mount.slew_altaz(10.0, 180.0, timeout_s=30.0)
        _park_interrupted_by_unpark(observatory_doubles[0], mount, TELESCOPE_DOUBLE,
                                    monkeypatch)
        park = mount._require().prop(TELESCOPE_DOUBLE, "TELESCOPE_PARK")
        assert park is not None and park.state == "Ok" and park.is_on("PARK")
        mount.unpark(timeout_s=10.0)

    @pytest.fixture
    def dome_target(self, observatory_doubles: tuple[IndiTestServer, ScaledClock]
                    ) -> Iterator[DomeTarget]:
        from calibd.simulators.indi_doubles.observatory import DOME as DOME_DOUBLE

        srv, _ = observatory_doubles
        dome = IndiDome(host=srv.host, port=srv.port, device=DOME_DOUBLE)
        dome.connect()
        yield DomeTarget(dome, timeout_s=60.0)
        dome.disconnect()


@pytest.mark.alpaca
class TestAlpacaSimulatorsMount(MountContract, DomeContract):
    @pytest.fixture
    def mount_target(self, alpaca_simulators: AlpacaSimServer) -> Iterator[MountTarget]:
        mount = AlpacaMount(host=HOST, port=alpaca_simulators.port, device_number=1)
        mount.connect()
        yield MountTarget(mount, lambda: datetime.now(UTC), _jnow, timeout_s=60.0,
                          tolerance_deg=0.5)
        mount.connect()  # leave the shared server's device connected

    @pytest.fixture
    def dome_target(self, alpaca_simulators: AlpacaSimServer) -> Iterator[DomeTarget]:
        dome = AlpacaDome(host=HOST, port=alpaca_simulators.port)
        dome.connect()
        yield DomeTarget(dome, timeout_s=30.0, reports_motion=False)
        dome.connect()


OUR_SITE = Place(45.0, 7.0, 400.0)  # the site of our Alpaca server's mount


@pytest.mark.alpaca
class TestOurAlpacaMount(MountContract, DomeContract):
    """Our server's Telescope 0 and Dome 0."""

    @pytest.fixture
    def mount_target(self, our_alpaca: OurAlpacaServer) -> Iterator[MountTarget]:
        mount = AlpacaMount(host=HOST, port=our_alpaca.port)
        mount.connect()

        def device_now() -> datetime:  # the server's simulated clock
            text = call(our_alpaca.port, "GET", "telescope/0/utcdate")["Value"]
            return datetime.fromisoformat(text.replace("Z", "+00:00"))

        def radec_of(alt: float, az: float, when: datetime) -> tuple[float, float]:
            return altaz_to_radec(OUR_SITE, when, alt, az)

        yield MountTarget(mount, device_now, radec_of, timeout_s=600.0, tolerance_deg=0.05)
        mount.connect()  # leave the shared server's device connected

    @pytest.fixture
    def dome_target(self, our_alpaca: OurAlpacaServer) -> Iterator[DomeTarget]:
        dome = AlpacaDome(host=HOST, port=our_alpaca.port)
        dome.connect()
        yield DomeTarget(dome, timeout_s=60.0)
        dome.connect()  # leave the shared server's device connected
