"""Bring the sensor to a set-point and prove it is there; warm it up gently at the end.

Settled means: |T - set-point| <= tolerance (two-sided) **and** that held continuously for the
dwell time **and** the cooler power stayed at or below its ceiling (a cooler at 100 % is not
holding the set-point, it is losing it). The set-point is ramped at a limited rate. A set-point the
cooler cannot reach is recognised early (power saturated and no progress) or at the timeout, and
the caller applies the plan's policy (skip / wait / abort).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from calibd.capture.plans.model import Cooling
from calibd.capture.plans.model import Warmup
from calibd.drivers.clock import Clock
from calibd.drivers.contracts import Camera
from calibd.drivers.contracts import CoolerState
from calibd.drivers.errors import NotSupported

log = logging.getLogger(__name__)

CoolerReport = Callable[[CoolerState, str], None]
STALL_WINDOW_S = 300.0  # no progress for this long at full power = unreachable
STALL_PROGRESS_C = 0.2


@dataclass(frozen=True)
class SettleResult:
    ok: bool
    reason: str  # why it failed ("" when ok)
    waited_s: float
    last: CoolerState | None
    unreachable: bool = False  # the cooler gave all it had and the set-point stayed out of reach
    stopped: bool = False


class CoolerController:
    """Drives one camera's cooler on the given clock. Blocking; interruptible via ``stop``."""

    def __init__(
        self,
        camera: Camera,
        clock: Clock,
        policy: Cooling,
        stop: threading.Event,
        report: CoolerReport | None = None,
    ) -> None:
        self.camera = camera
        self.clock = clock
        self.policy = policy
        self.stop = stop
        self.report = report or (lambda state, message: None)
        self.target_c: float | None = None  # the set-point last commanded (ramped value)

    def read(self) -> CoolerState:
        return self.camera.cooler_state()

    def settle(self, setpoint_c: float, *, timeout_s: float | None = None,
               dwell_s: float | None = None) -> SettleResult:
        """Ramp to ``setpoint_c`` and wait until settled. Never longer than the ramp time plus
        ``timeout_s`` (default: the policy's) clock seconds. Raises DeviceError from the camera."""
        p = self.policy
        timeout = p.timeout_s if timeout_s is None else timeout_s
        dwell = p.dwell_s if dwell_s is None else dwell_s
        start = self.clock.monotonic()
        state = self.read()
        origin = state.temperature_c if self.target_c is None else self.target_c
        ramp_s = abs(origin - setpoint_c) / p.ramp_c_per_min * 60.0
        deadline = start + ramp_s + timeout
        in_band_since: float | None = None
        best = abs(state.temperature_c - setpoint_c)
        best_at = start
        while True:
            now = self.clock.monotonic()
            elapsed = now - start
            target = _ramp(origin, setpoint_c, p.ramp_c_per_min / 60.0 * elapsed)
            if target != self.target_c or not state.on:
                self.camera.set_cooler(True, target)
                self.target_c = target
            state = self.read()
            error = abs(state.temperature_c - setpoint_c)
            power_ok = state.power_pct is None or state.power_pct <= p.max_power_pct
            ramped = target == setpoint_c
            phase = "settling" if ramped else "ramping"
            self.report(state, f"{phase} to {setpoint_c:g} °C")
            if ramped and error <= p.tolerance_c and power_ok:
                in_band_since = now if in_band_since is None else in_band_since
                if now - in_band_since >= dwell:
                    return SettleResult(True, "", now - start, state)
            else:
                in_band_since = None
            if error < best - STALL_PROGRESS_C:
                best, best_at = error, now
            saturated = state.power_pct is not None and state.power_pct >= 99.0
            if ramped and saturated and error > p.tolerance_c and now - best_at > STALL_WINDOW_S:
                return SettleResult(
                    False,
                    f"set-point {setpoint_c:g} °C unreachable: the cooler is at "
                    f"{state.power_pct:.0f} % and the sensor stays at "
                    f"{state.temperature_c:.1f} °C",
                    now - start, state, unreachable=True)
            if now >= deadline:
                why = (f"cooler did not settle at {setpoint_c:g} °C within {timeout:.0f} s "
                       f"(sensor {state.temperature_c:.1f} °C")
                why += f", power {state.power_pct:.0f} %)" if state.power_pct is not None else ")"
                return SettleResult(False, why, now - start, state,
                                    unreachable=saturated or not power_ok)
            if self.clock.wait(self.stop, p.poll_s):
                return SettleResult(False, "stop requested", now - start, state, stopped=True)

    def warm_up(self, warmup: Warmup, ambient_c: float | None) -> None:
        """Ramp the set-point up to the ambient (or ``warmup.target_c``) at the warm-up rate,
        then switch the cooler off if configured. Returns early when ``stop`` is set."""
        try:
            state = self.read()
        except NotSupported:
            return
        target = warmup.target_for(ambient_c, state.temperature_c)
        origin = self.target_c if self.target_c is not None else state.temperature_c
        if target > origin:
            start = self.clock.monotonic()
            while True:
                elapsed = self.clock.monotonic() - start
                step = _ramp(origin, target, warmup.rate_c_per_min / 60.0 * elapsed)
                self.camera.set_cooler(True, step)
                self.target_c = step
                self.report(self.read(), f"warming up to {target:g} °C")
                if step == target or self.clock.wait(self.stop, self.policy.poll_s):
                    break
        if warmup.cooler_off:
            self.camera.set_cooler(False, None)
            self.target_c = None
            log.info("cooler off")


def _ramp(origin: float, target: float, max_step: float) -> float:
    """``origin`` moved toward ``target`` by at most ``max_step`` (rounded to 0.1 °C)."""
    if abs(target - origin) <= max_step:
        return target
    moved = origin + max_step if target > origin else origin - max_step
    return round(moved, 1)
