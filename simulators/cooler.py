"""A first-order thermoelectric cooler.

The sensor temperature relaxes exponentially (time constant ``tau_s``) toward an equilibrium: the
set-point when the cooler is on and the set-point is reachable, else ``ambient - max_delta_c``
(a set-point too cold for the ambient is never reached); the ambient when the cooler is off.
Power is what holding that equilibrium costs (``100 * (ambient - T_eq) / max_delta_c``) plus a
proportional term while the sensor is still warmer than its target, clipped to 0-100 %.
Temperature is analytic in clock time, so there is no background thread and any clock speed works.
"""

from __future__ import annotations

import math
import threading
from dataclasses import KW_ONLY
from dataclasses import dataclass
from dataclasses import field

from calibd.drivers.clock import Clock


@dataclass(eq=False)
class CoolerModel:
    """Thread-safe; all temperatures in °C, times in clock seconds."""

    clock: Clock
    _: KW_ONLY
    ambient_c: float = 10.0
    max_delta_c: float = 35.0
    tau_s: float = 40.0
    proportional_c: float = 4.0
    resolution_c: float = 0.1
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _on: bool = field(init=False, default=False)
    _setpoint: float | None = field(init=False, default=None)
    # the temperature relaxes from (_t0, _temp0); a disturbance decays from _disturbance_t0
    _t0: float = field(init=False)
    _temp0: float = field(init=False)
    _disturbance_c: float = field(init=False, default=0.0)
    _disturbance_t0: float = field(init=False)

    def __post_init__(self) -> None:
        self._t0 = self._disturbance_t0 = self.clock.monotonic()
        self._temp0 = self.ambient_c

    @property
    def on(self) -> bool:
        return self._on

    @property
    def setpoint_c(self) -> float | None:
        return self._setpoint

    def equilibrium_c(self) -> float:
        """Where the sensor is heading with the current settings."""
        if not self._on or self._setpoint is None:
            return self.ambient_c
        return max(self._setpoint, self.ambient_c - self.max_delta_c)

    def set(self, on: bool, setpoint_c: float | None) -> None:
        """Switch the cooler and/or change the target; the temperature is continuous."""
        with self._lock:
            now = self.clock.monotonic()
            self._temp0 = self._true_temperature(now)
            self._t0 = now
            self._on = on
            if setpoint_c is not None:
                self._setpoint = setpoint_c

    def disturb(self, delta_c: float) -> None:
        """Add a transient (e.g. a heat pulse) that decays with the cooler's time constant."""
        with self._lock:
            now = self.clock.monotonic()
            self._disturbance_c = self._disturbance(now) + delta_c
            self._disturbance_t0 = now

    def temperature_c(self) -> float:
        """Sensor temperature as the camera reports it (quantised to ``resolution_c``)."""
        with self._lock:
            true = self._true_temperature(self.clock.monotonic())
        return round(true / self.resolution_c) * self.resolution_c

    def power_pct(self) -> float:
        with self._lock:
            now = self.clock.monotonic()
            if not self._on:
                return 0.0
            eq = self.equilibrium_c()
            hold = 100.0 * (self.ambient_c - eq) / self.max_delta_c
            excess = self._true_temperature(now) - eq
            power = hold + 100.0 * excess / self.proportional_c
        return round(min(100.0, max(0.0, power)), 1)

    def _disturbance(self, now: float) -> float:
        return self._disturbance_c * math.exp(-(now - self._disturbance_t0) / self.tau_s)

    def _true_temperature(self, now: float) -> float:
        eq = self.equilibrium_c()
        decay = math.exp(-max(0.0, now - self._t0) / self.tau_s)
        return eq + (self._temp0 - eq) * decay + self._disturbance(now)
