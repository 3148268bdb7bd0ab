"""Build devices and clocks from the configuration: a closed registry, vendor modules imported
lazily (``simulator | indi | alpaca | zwo``), never an arbitrary import path."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import UTC
from functools import partial
from typing import Any

from capture.config import (
    AlpacaCamera,
    CameraConfig,
    ClockConfig,
    Config,
    SafetyConfig,
    SimulatorCamera,
    SimulatorPanel,
    SimulatorSafety,
    SimulatorWheel,
)
from capture.site import Site, sun_altitude_deg
from drivers.clock import Clock, RealClock
from drivers.contracts import Camera, FilterWheel, FlatPanel, SafetyMonitor
from drivers.errors import DeviceUnavailable

DRIVER_MODULES: dict[str, str] = {
    "indi": "drivers.indi",
    "alpaca": "drivers.alpaca",
    "zwo": "drivers.zwo",
}


@dataclass
class Setup:
    """One camera and the accessories it uses."""

    name: str
    camera: Camera
    wheel: FilterWheel | None
    panel: FlatPanel | None
    site: Site | None

    def connect(self) -> None:
        """Connect every device. Raises DeviceUnavailable."""
        self.camera.connect()
        if self.wheel is not None:
            self.wheel.connect()
        if self.panel is not None:
            self.panel.connect()

    def disconnect(self) -> None:
        for dev in (self.panel, self.wheel, self.camera):
            if dev is not None:
                dev.disconnect()


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
        raise DeviceUnavailable(
            f"the {driver} driver needs extra packages: pip install 'calibd[{driver}]' ({err})"
        ) from err


def site_of(config: Config) -> Site | None:
    s = config.site
    return None if s is None else Site(s.latitude_deg, s.longitude_deg, s.elevation_m)


def make_setup(name: str, config: Config, clock: Clock) -> Setup:
    """Create (not connect) camera ``name`` with its filter wheel and flat panel."""
    cfg = config.cameras[name]
    site = site_of(config)
    wheel_cfg = config.filter_wheels.get(cfg.filter_wheel) if cfg.filter_wheel else None
    panel_cfg = config.flat_panels.get(cfg.flat_panel) if cfg.flat_panel else None
    if isinstance(cfg, SimulatorCamera):
        return _simulated(name, cfg, wheel_cfg, panel_cfg, site, clock)
    camera = make_camera(name, cfg, clock)
    wheel = make_wheel(wheel_cfg, clock) if wheel_cfg is not None else None
    panel = make_panel(panel_cfg, clock) if panel_cfg is not None else None
    return Setup(name, camera, wheel, panel, site)


def make_camera(name: str, cfg: CameraConfig, clock: Clock) -> Camera:
    """A real camera driver (simulated cameras come from :func:`make_setup`)."""
    module = driver_module(cfg.driver)
    if isinstance(cfg, AlpacaCamera):
        camera: Camera = module.AlpacaCamera(host=cfg.host, port=cfg.port,
                                             device_number=cfg.device_number,
                                             timeout_s=cfg.timeout_s,
                                             download_timeout_s=cfg.download_timeout_s,
                                             clock=clock)
        return camera
    options = cfg.model_dump(exclude={"driver", "unity_gain", "offset", "ambient_c",
                                      "filter_wheel", "flat_panel"})
    camera = module.open_camera(name=name, clock=clock, **options)
    return camera


ACCESSORY_CLASSES: dict[tuple[str, str], str] = {
    ("indi", "wheel"): "IndiFilterWheel",
    ("alpaca", "wheel"): "AlpacaFilterWheel",
    ("indi", "panel"): "IndiFlatPanel",
    ("alpaca", "panel"): "AlpacaFlatPanel",
    ("indi", "safety"): "IndiSafetyMonitor",
    ("alpaca", "safety"): "AlpacaSafetyMonitor",
}


def _real_accessory(cfg: Any, role: str) -> Any:
    """An INDI or Alpaca wheel, panel or safety monitor built from its endpoint config (every
    field but ``driver`` is a keyword argument of the driver class)."""
    module = driver_module(cfg.driver)
    cls = getattr(module, ACCESSORY_CLASSES[(cfg.driver, role)])
    return cls(**cfg.model_dump(exclude={"driver"}))


def make_safety(cfg: SafetyConfig, clock: Clock) -> SafetyMonitor:
    """The configured safety monitor / weather source (not connected)."""
    if isinstance(cfg, SimulatorSafety):
        from simulators.accessories import SimulatedSafetyMonitor

        periods = [(p.start.astimezone(UTC), p.end.astimezone(UTC)) for p in cfg.cloudy]
        return SimulatedSafetyMonitor(clock, cloudy_periods=periods)
    monitor: SafetyMonitor = _real_accessory(cfg, "safety")
    return monitor


def make_wheel(cfg: Any, clock: Clock) -> FilterWheel:
    wheel: FilterWheel = _real_accessory(cfg, "wheel")
    return wheel


def make_panel(cfg: Any, clock: Clock) -> FlatPanel:
    panel: FlatPanel = _real_accessory(cfg, "panel")
    return panel


def _simulated(name: str, cfg: SimulatorCamera, wheel_cfg: Any, panel_cfg: Any,
               site: Site | None, clock: Clock) -> Setup:
    from simulators.accessories import SimulatedFilterWheel, SimulatedFlatPanel
    from simulators.camera import SimFaults
    from simulators.observatory import build_observatory
    from simulators.profiles import get_profile
    from simulators.sky import SimulatedSky

    profile = get_profile(cfg.profile)
    if cfg.readout_s is not None:
        profile = profile.with_overrides(readout_s=cfg.readout_s)
    wheel = None
    if isinstance(wheel_cfg, SimulatorWheel):
        wheel = SimulatedFilterWheel(clock, tuple(wheel_cfg.filters),
                                     seconds_per_slot=wheel_cfg.seconds_per_slot)
    panel = None
    if isinstance(panel_cfg, SimulatorPanel):
        panel = SimulatedFlatPanel(clock, max_brightness=panel_cfg.max_brightness,
                                   has_cover=panel_cfg.cover,
                                   flux_e_per_s_max=panel_cfg.flux_e_per_s_max,
                                   drift_pct_per_min=panel_cfg.drift_pct_per_min)
    sky = SimulatedSky(clock, partial(sun_altitude_deg, site)) if site is not None else None
    obs = build_observatory(profile, clock, camera_name=name, ambient_c=cfg.sim_ambient_c,
                            noise_seed=cfg.seed, faults=SimFaults(**cfg.faults.model_dump()),
                            wheel=wheel, panel=panel, sky=sky)
    return Setup(name, obs.camera, wheel, panel, site)
