"""Build devices and clocks from the configuration: a closed registry, vendor modules imported
lazily (``simulator | indi | alpaca | zwo``), never an arbitrary import path."""

from __future__ import annotations

import importlib
from typing import Any

from capture.config import AlpacaCamera, CameraConfig, ClockConfig, SimulatorCamera
from drivers.clock import Clock, RealClock
from drivers.contracts import Camera
from drivers.errors import DeviceUnavailable

DRIVER_MODULES: dict[str, str] = {
    "indi": "drivers.indi",
    "alpaca": "drivers.alpaca",
    "zwo": "drivers.zwo",
}


def make_clock(cfg: ClockConfig) -> Clock:
    if cfg.kind == "real":
        return RealClock()
    from simulators.clock import ScaledClock

    return ScaledClock(scale=cfg.scale, start=cfg.start)


def driver_module(driver: str) -> Any:
    """Import a vendor driver module. Raises DeviceUnavailable when its library is missing."""
    name = DRIVER_MODULES[driver]
    try:
        return importlib.import_module(name)
    except ImportError as err:
        extra = {"indi": "indi", "alpaca": "alpaca", "zwo": "zwo"}[driver]
        raise DeviceUnavailable(
            f"the {driver} driver needs extra packages: pip install 'calibd[{extra}]' ({err})"
        ) from err


def make_camera(name: str, cfg: CameraConfig, clock: Clock) -> Camera:
    """Create (not connect) the camera ``name``. Raises DeviceUnavailable."""
    if isinstance(cfg, SimulatorCamera):
        from simulators.camera import SimFaults, SimulatedCamera
        from simulators.profiles import get_profile

        profile = get_profile(cfg.profile)
        if cfg.readout_s is not None:
            profile = profile.with_overrides(readout_s=cfg.readout_s)
        return SimulatedCamera(profile, clock, ambient_c=cfg.sim_ambient_c,
                               noise_seed=cfg.seed, faults=SimFaults(**cfg.faults.model_dump()),
                               name=name)
    module = driver_module(cfg.driver)
    if isinstance(cfg, AlpacaCamera):
        camera: Camera = module.AlpacaCamera(host=cfg.host, port=cfg.port,
                                             device_number=cfg.device_number,
                                             timeout_s=cfg.timeout_s, clock=clock)
        return camera
    options = cfg.model_dump(exclude={"driver", "unity_gain", "offset", "ambient_c"})
    camera = module.open_camera(name=name, clock=clock, **options)
    return camera
