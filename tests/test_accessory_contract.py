"""The accessory contract suite (:mod:`tests.accessory_contract`) over every transport: the
simulator (built through ``simulators.registry``, as the core builds it), INDI (indiserver's
wheel, light panel and weather simulators), and Alpaca against our server (``calibd sim serve
--alpaca``) and the third-party alpaca-simulators.

The servers are the session's (see conftest): missing INDI or Alpaca software skips these tests
on a developer machine and fails them under ``CALIBD_REQUIRE`` (CI).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from calibd.drivers.alpaca import AlpacaFilterWheel
from calibd.drivers.alpaca import AlpacaFlatPanel
from calibd.drivers.alpaca import AlpacaSafetyMonitor
from calibd.drivers.indi import IndiFilterWheel
from calibd.drivers.indi import IndiFlatPanel
from calibd.drivers.indi import IndiSafetyMonitor
from calibd.simulators import registry as simulator
from calibd.simulators.clock import ScaledClock
from tests.accessory_contract import FilterWheelContract
from tests.accessory_contract import FlatPanelContract
from tests.accessory_contract import PanelTarget
from tests.accessory_contract import SafetyMonitorContract
from tests.accessory_contract import SafetyTarget
from tests.accessory_contract import WheelTarget
from tests.alpaca_servers import AlpacaSimServer
from tests.alpaca_servers import OurAlpacaServer
from tests.alpaca_servers import call
from tests.indi_server import PANEL
from tests.indi_server import WEATHER
from tests.indi_server import WHEEL
from tests.indi_server import IndiTestServer

HOST = "127.0.0.1"


class TestSimulatedAccessories(FilterWheelContract, FlatPanelContract, SafetyMonitorContract):
    @pytest.fixture
    def clock(self) -> ScaledClock:
        return ScaledClock(scale=10_000.0)

    @pytest.fixture
    def wheel_target(self, clock: ScaledClock) -> Iterator[WheelTarget]:
        wheel = simulator.open_wheel(clock, filters=["L", "R", "G", "B", "Ha"],
                                     seconds_per_slot=1.0)
        wheel.connect()
        yield WheelTarget(wheel)
        wheel.disconnect()

    @pytest.fixture(params=[True, False], ids=["flip-flat", "panel-only"])
    def panel_target(self, clock: ScaledClock, request: pytest.FixtureRequest
                     ) -> Iterator[PanelTarget]:
        panel = simulator.open_panel(clock, max_brightness=1023, cover=request.param,
                                     flux_e_per_s_max=1e5, drift_pct_per_min=0.0)
        panel.connect()
        yield PanelTarget(panel)
        panel.disconnect()

    @pytest.fixture
    def safety_target(self, clock: ScaledClock) -> Iterator[SafetyTarget]:
        monitor = simulator.open_safety_monitor(clock)
        monitor.connect()
        yield SafetyTarget(monitor, monitor.set_cloudy, reports_cloud_cover=True, settle_s=1.0)
        monitor.disconnect()


IndiDevices = tuple[IndiFilterWheel, IndiFlatPanel, IndiSafetyMonitor]


@pytest.fixture(scope="module")
def indi_accessories(indi_server: IndiTestServer) -> Iterator[IndiDevices]:
    """One connection for the module: a device disconnected by a test leaves the others holding
    the shared server connection, so nothing waits for it to close."""
    srv = indi_server
    devices = (IndiFilterWheel(host=srv.host, port=srv.port, device=WHEEL),
               IndiFlatPanel(host=srv.host, port=srv.port, device=PANEL),
               IndiSafetyMonitor(host=srv.host, port=srv.port, device=WEATHER))
    for device in devices:
        device.connect()
    yield devices
    for device in devices:
        device.disconnect()


@pytest.mark.indi
class TestIndiAccessories(FilterWheelContract, FlatPanelContract, SafetyMonitorContract):
    @pytest.fixture
    def wheel_target(self, indi_accessories: IndiDevices) -> WheelTarget:
        indi_accessories[0].connect()
        return WheelTarget(indi_accessories[0], timeout_s=30.0)

    @pytest.fixture
    def panel_target(self, indi_accessories: IndiDevices) -> PanelTarget:
        indi_accessories[1].connect()
        return PanelTarget(indi_accessories[1], timeout_s=30.0)

    @pytest.fixture
    def safety_target(self, indi_server: IndiTestServer,
                      indi_accessories: IndiDevices) -> SafetyTarget:
        def make_unsafe(rain: bool) -> None:
            indi_server.setprop(f"{WEATHER}.WEATHER_CONTROL.Precip={10 if rain else 0}")
            indi_server.setprop(f"{WEATHER}.WEATHER_REFRESH.REFRESH=On")

        indi_accessories[2].connect()
        return SafetyTarget(indi_accessories[2], make_unsafe, reports_cloud_cover=False)

    def test_a_danger_between_two_checks_reads_unsafe_once(
            self, safety_target: SafetyTarget, caplog: pytest.LogCaptureFixture) -> None:
        """Rain starts and stops (another client) between two is_safe() calls: the station
        reported WEATHER_STATUS Alert, then Ok, and the next call says unsafe, logged, once."""
        monitor = safety_target.monitor
        assert isinstance(monitor, IndiSafetyMonitor)
        conn = monitor._require()
        assert monitor.is_safe() is True
        before = conn.version()
        safety_target.make_unsafe(True)
        safety_target.make_unsafe(False)
        recovered = conn.wait_until(
            lambda st: (p if (p := st.prop(WEATHER, "WEATHER_STATUS")) is not None
                        and p.alerted_since(before) and p.version > p.alerted
                        and p.state == "Ok" else None), 10.0)
        assert recovered is not None
        with caplog.at_level(logging.WARNING, logger="calibd.drivers.indi.weather"):
            assert monitor.is_safe() is False
            assert monitor.is_safe() is True
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "reported danger" in warnings[0], warnings


@pytest.mark.alpaca
class TestOurAlpacaAccessories(FilterWheelContract, FlatPanelContract, SafetyMonitorContract):
    @pytest.fixture
    def wheel_target(self, our_alpaca: OurAlpacaServer) -> Iterator[WheelTarget]:
        wheel = AlpacaFilterWheel(host=HOST, port=our_alpaca.port)
        wheel.connect()
        yield WheelTarget(wheel, timeout_s=30.0)
        wheel.connect()  # leave the shared server's device connected

    @pytest.fixture
    def panel_target(self, our_alpaca: OurAlpacaServer) -> Iterator[PanelTarget]:
        panel = AlpacaFlatPanel(host=HOST, port=our_alpaca.port)
        panel.connect()
        yield PanelTarget(panel, timeout_s=30.0)
        panel.connect()

    @pytest.fixture
    def safety_target(self, our_alpaca: OurAlpacaServer) -> Iterator[SafetyTarget]:
        def make_unsafe(cloudy: bool) -> None:
            answer = call(our_alpaca.port, "PUT", "safetymonitor/0/action", Action="SetCloudy",
                          Parameters=str(cloudy).lower())
            assert answer["ErrorNumber"] == 0, answer

        monitor = AlpacaSafetyMonitor(host=HOST, port=our_alpaca.port,
                                      conditions_device_number=0)
        monitor.connect()
        yield SafetyTarget(monitor, make_unsafe, reports_cloud_cover=True)
        monitor.connect()


@pytest.mark.alpaca
class TestAlpacaSimulatorsAccessories(FilterWheelContract, FlatPanelContract,
                                      SafetyMonitorContract):
    @pytest.fixture
    def wheel_target(self, alpaca_simulators: AlpacaSimServer) -> Iterator[WheelTarget]:
        wheel = AlpacaFilterWheel(host=HOST, port=alpaca_simulators.port)
        wheel.connect()
        yield WheelTarget(wheel, timeout_s=30.0)
        wheel.connect()

    @pytest.fixture
    def panel_target(self, alpaca_simulators: AlpacaSimServer) -> Iterator[PanelTarget]:
        panel = AlpacaFlatPanel(host=HOST, port=alpaca_simulators.port)
        panel.connect()
        yield PanelTarget(panel, timeout_s=30.0)
        panel.connect()

    @pytest.fixture
    def safety_target(self, alpaca_simulators: AlpacaSimServer) -> Iterator[SafetyTarget]:
        sim = alpaca_simulators

        def make_unsafe(cloudy: bool) -> None:  # IsSafe is writable in alpaca-simulators
            sim.http("PUT", "/api/v1/safetymonitor/0/issafe", f"IsSafe={str(not cloudy).lower()}")
            sim.http("PUT", "/api/v1/observingconditions/0/cloudcover",
                     f"CloudCover={0.9 if cloudy else 0.2}")

        monitor = AlpacaSafetyMonitor(host=HOST, port=sim.port, conditions_device_number=0)
        monitor.connect()
        yield SafetyTarget(monitor, make_unsafe, reports_cloud_cover=True)
        monitor.connect()
