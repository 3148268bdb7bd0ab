"""Alpaca SafetyMonitor and ObservingConditions over one simulated weather
(:class:`simulators.accessories.SimulatedSafetyMonitor`): unsafe when cloudy, cloud cover in
percent. Both offer the Action ``SetCloudy`` (Parameters ``true``/``false``) to change the weather,
so clients and tests can make the night cloudy without reaching into the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar

from calibd.drivers.clock import Clock
from calibd.simulators.accessories import SimulatedSafetyMonitor
from calibd.simulators.alpaca_server.device import SimulatorDevice
from calibd.simulators.alpaca_server.protocol import Params
from calibd.simulators.alpaca_server.protocol import invalid_value
from calibd.simulators.alpaca_server.protocol import not_implemented


class _WeatherDevice(SimulatorDevice[SimulatedSafetyMonitor]):
    """A device over the simulated weather, with the Action ``SetCloudy`` (Parameters
    ``true``/``false``): the simulator's weather switch."""

    def __init__(
        self, sim: SimulatedSafetyMonitor, clock: Clock, *, unique_id: str, number: int = 0
    ) -> None:
        super().__init__(sim, clock, unique_id=unique_id, number=number)
        self.actions["SetCloudy"] = self._set_cloudy

    def _set_cloudy(self, argument: str) -> str:
        value = argument.strip().lower()
        if value not in ("true", "false"):
            raise invalid_value(f"SetCloudy takes true or false, not {argument!r}")
        self.sim.set_cloudy(value == "true")
        return ""


class SafetyMonitorDevice(_WeatherDevice):
    """Alpaca SafetyMonitor (interface version 3). Action ``SetCloudy`` switches the weather."""

    type_name = "SafetyMonitor"
    interface_version = 3
    sim_name = "calibd simulated safety monitor"
    sim_description = "safe unless cloudy (simulated weather)"

    def _device_state(self) -> Sequence[tuple[str, Any]]:
        return (("IsSafe", self.sim.is_safe()),)

    def get_issafe(self, p: Params) -> bool:
        return self.sim.is_safe()


_WEATHER_SENSORS = frozenset(
    {
        "dewpoint",
        "humidity",
        "pressure",
        "rainrate",
        "skybrightness",
        "skyquality",
        "skytemperature",
        "starfwhm",
        "temperature",
        "winddirection",
        "windgust",
        "windspeed",
    }
)


class ObservingConditionsDevice(_WeatherDevice):
    """Alpaca ObservingConditions (interface version 2) with CloudCover only (percent, from the
    simulated weather shared with the safety monitor). Action ``SetCloudy`` as there."""

    type_name = "ObservingConditions"
    interface_version = 2
    sim_name = "calibd simulated weather station"
    sim_description = "cloud cover from the simulated weather"
    disconnects_sim = False  # the weather's connection belongs to the safety monitor device
    constants: ClassVar[Mapping[str, Any]] = {"averageperiod": 0.0}

    def _connect(self) -> None:
        self._connected = True  # nor does connecting reach the weather

    def _device_state(self) -> Sequence[tuple[str, Any]]:
        return (("CloudCover", self._cloud_cover()),)

    def _cloud_cover(self) -> float:
        value = self.sim.cloud_cover_pct()
        return 0.0 if value is None else value

    def get_cloudcover(self, p: Params) -> float:
        return self._cloud_cover()

    def put_averageperiod(self, p: Params) -> None:
        hours = p.number("AveragePeriod")
        if hours != 0:
            raise invalid_value(f"AveragePeriod {hours} h: only 0 (instantaneous) is supported")

    def put_refresh(self, p: Params) -> None:
        """Values are always current: nothing to do."""

    def _sensor(self, p: Params) -> str:
        name = p.text("SensorName").strip().lower()
        if name in _WEATHER_SENSORS:
            raise not_implemented(f"sensor {p.text('SensorName')} is not implemented")
        if name not in ("cloudcover", ""):
            raise invalid_value(f"unknown sensor {p.text('SensorName')!r}")
        return name

    def get_sensordescription(self, p: Params) -> str:
        if self._sensor(p) == "":
            raise invalid_value("SensorDescription needs a sensor name")
        return "simulated cloud sensor (percent of sky covered)"

    def get_timesincelastupdate(self, p: Params) -> float:
        self._sensor(p)
        return 0.0
