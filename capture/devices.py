"""Build devices and clocks from the configuration: a closed registry of driver modules
(``simulator | indi | alpaca | zwo``), imported lazily, never an arbitrary import path. The
simulator is a driver like the others: its one entry point is ``simulators.registry``, which
receives the validated configuration as plain keyword arguments."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from dataclasses import field
from functools import partial
from typing import Any

from calibd.capture.config import AlpacaCamera
from calibd.capture.config import CameraConfig
from calibd.capture.config import ClockConfig
from calibd.capture.config import Config
from calibd.capture.config import SafetyConfig
from calibd.capture.config import SimulatorCamera
from calibd.capture.config import SimulatorDome
from calibd.capture.config import SimulatorMount
from calibd.capture.config import SimulatorPanel
from calibd.capture.config import SimulatorSafety
from calibd.capture.config import SimulatorWheel
from calibd.capture.site import Site
from calibd.capture.site import sun_altitude_deg
from calibd.drivers.clock import Clock
from calibd.drivers.clock import RealClock
from calibd.drivers.contracts import Camera
from calibd.drivers.contracts import Dome
from calibd.drivers.contracts import FilterWheel
from calibd.drivers.contracts import FlatPanel
from calibd.drivers.contracts import Mount
from calibd.drivers.contracts import SafetyMonitor
from calibd.drivers.errors import DeviceUnavailable

DRIVER_MODULES: dict[str, str] = {
    "simulator": "calibd.simulators.registry",
    "indi": "calibd.drivers.indi",
    "alpaca": "calibd.drivers.alpaca",
    "zwo": "calibd.drivers.zwo",
}
# Keys of a camera section that are the core's, not the driver's.
_CORE_CAMERA_KEYS = {"driver", "unity_gain", "offset", "ambient_c", "filter_wheel", "flat_panel",
                     "mount", "dome"}


@dataclass
class Setup:
    """One camera and the accessories it uses."""

    name: str
    camera: Camera
    wheel: FilterWheel | None
    panel: FlatPanel | None
    site: Site | None
    mount: Mount | None = None
    dome: Dome | None = None
    safety: SafetyMonitor | None = None  # consulted by sky flats with a mount or dome
    _disconnected: bool = field(default=False, init=False, repr=False)

    def connect(self) -> None:
        """Connect every device. Raises DeviceUnavailable."""
        self._disconnected = False
        self.camera.connect()
        for dev in (self.wheel, self.panel, self.mount, self.dome, self.safety):
            if dev is not None:
                dev.connect()

    def disconnect(self) -> None:
        """Disconnect every device (again: nothing happens)."""
        if self._disconnected:
            return
        self._disconnected = True
        for dev in (self.safety, self.dome, self.mount, self.panel, self.wheel, self.camera):
            if dev is not None:
                dev.disconnect()


def make_clock(cfg: ClockConfig) -> Clock:
    """The configured clock: the real one, or the simulator's scaled clock."""
    if cfg.kind == "real":
        return RealClock()
    clock: Clock = driver_module("simulator").open_clock(
        scale=cfg.scale, start=cfg.start, real_start=cfg.real_start)
    return clock


def driver_module(driver: str) -> Any:
    """Import the driver module of ``driver`` (a key of :data:`DRIVER_MODULES`). Raises
    DeviceUnavailable when its vendor library is missing."""
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
    mount_cfg = config.mounts.get(cfg.mount) if cfg.mount else None
    dome_cfg = config.domes.get(cfg.dome) if cfg.dome else None
    safety = None
    if config.safety is not None and (mount_cfg is not None or dome_cfg is not None):
        safety = make_safety(config.safety, clock)
    if isinstance(cfg, SimulatorCamera):
        return _simulated(name, cfg, wheel_cfg, panel_cfg, site, clock, mount_cfg, dome_cfg,
                          safety)
    camera = make_camera(name, cfg, clock)
    wheel = make_wheel(wheel_cfg, clock) if wheel_cfg is not None else None
    panel = make_panel(panel_cfg, clock) if panel_cfg is not None else None
    mount = _real_mount(mount_cfg, site, clock) if mount_cfg is not None else None
    dome = make_dome(dome_cfg, clock) if dome_cfg is not None else None
    return Setup(name, camera, wheel, panel, site, mount, dome, safety)


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
    options = cfg.model_dump(exclude=_CORE_CAMERA_KEYS)
    camera = module.open_camera(name=name, clock=clock, **options)
    return camera


def _real_mount(cfg: Any, site: Site | None, clock: Clock) -> Mount:
    """An INDI mount (given the site: it converts alt/az) or an Alpaca telescope."""
    module = driver_module(cfg.driver)
    options = cfg.model_dump(exclude={"driver"})
    if cfg.driver == "indi":
        if site is None:
            raise ValueError("an INDI mount needs the site")
        options.update(latitude_deg=site.latitude_deg, longitude_deg=site.longitude_deg,
                       elevation_m=site.elevation_m)
        mount: Mount = module.IndiMount(clock=clock, **options)
        return mount
    mount = module.AlpacaMount(clock=clock, **options)
    return mount


ACCESSORY_CLASSES: dict[tuple[str, str], str] = {
    ("indi", "wheel"): "IndiFilterWheel",
    ("alpaca", "wheel"): "AlpacaFilterWheel",
    ("indi", "panel"): "IndiFlatPanel",
    ("alpaca", "panel"): "AlpacaFlatPanel",
    ("indi", "safety"): "IndiSafetyMonitor",
    ("alpaca", "safety"): "AlpacaSafetyMonitor",
    ("indi", "dome"): "IndiDome",
    ("alpaca", "dome"): "AlpacaDome",
}


def _real_accessory(cfg: Any, role: str, clock: Clock) -> Any:
    """An INDI or Alpaca wheel, panel, dome or safety monitor built from its endpoint config
    (every field but ``driver`` is a keyword argument of the driver class); an Alpaca one waits
    on ``clock`` like the Alpaca camera and mount."""
    module = driver_module(cfg.driver)
    cls = getattr(module, ACCESSORY_CLASSES[(cfg.driver, role)])
    options = cfg.model_dump(exclude={"driver"})
    if cfg.driver == "alpaca":
        options["clock"] = clock
    return cls(**options)


def make_safety(cfg: SafetyConfig, clock: Clock) -> SafetyMonitor:
    """The configured safety monitor / weather source (not connected)."""
    if isinstance(cfg, SimulatorSafety):
        simulated: SafetyMonitor = driver_module("simulator").open_safety_monitor(
            clock, cloudy=[(p.start, p.end) for p in cfg.cloudy])
        return simulated
    monitor: SafetyMonitor = _real_accessory(cfg, "safety", clock)
    return monitor


def make_wheel(cfg: Any, clock: Clock) -> FilterWheel:
    wheel: FilterWheel = _real_accessory(cfg, "wheel", clock)
    return wheel


def make_panel(cfg: Any, clock: Clock) -> FlatPanel:
    panel: FlatPanel = _real_accessory(cfg, "panel", clock)
    return panel


def make_dome(cfg: Any, clock: Clock) -> Dome:
    dome: Dome = _real_accessory(cfg, "dome", clock)
    return dome


def _simulated(name: str, cfg: SimulatorCamera, wheel_cfg: Any, panel_cfg: Any,
               site: Site | None, clock: Clock, mount_cfg: Any, dome_cfg: Any,
               safety: SafetyMonitor | None) -> Setup:
    """The simulated camera wired to its simulated wheel, panel, mount and dome and, with a
    site, to a twilight sky that follows this module's sun."""
    sim = driver_module("simulator")
    wheel = panel = mount = dome = None
    if isinstance(mount_cfg, SimulatorMount) and site is not None:
        mount = sim.open_mount(clock, latitude_deg=site.latitude_deg,
                               longitude_deg=site.longitude_deg, elevation_m=site.elevation_m,
                               slew_deg_per_s=mount_cfg.slew_deg_per_s)
    if isinstance(dome_cfg, SimulatorDome):
        dome = sim.open_dome(clock, roof=dome_cfg.roof, shutter_move_s=dome_cfg.shutter_move_s)
        dome.fail_close, dome.fail_open = dome_cfg.fail_close, dome_cfg.fail_open
    if isinstance(wheel_cfg, SimulatorWheel):
        wheel = sim.open_wheel(clock, **wheel_cfg.model_dump(exclude={"driver"}))
    if isinstance(panel_cfg, SimulatorPanel):
        panel = sim.open_panel(clock, **panel_cfg.model_dump(exclude={"driver"}))
    sun = partial(sun_altitude_deg, site) if site is not None else None
    camera: Camera = sim.open_camera(name=name, clock=clock, wheel=wheel, panel=panel,
                                     sun_altitude_deg=sun, mount=mount, dome=dome,
                                     **cfg.model_dump(exclude=_CORE_CAMERA_KEYS))
    return Setup(name, camera, wheel, panel, site, mount, dome, safety)
