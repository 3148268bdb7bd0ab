"""The simulator as a driver: the one module of :mod:`simulators` that the core imports.

``capture.devices`` chooses it from its closed driver registry (``driver: simulator``) exactly
like ``drivers.indi``, ``drivers.alpaca`` and ``drivers.zwo``, and hands it the validated
configuration as plain keyword arguments (the field names of the ``simulator`` sections); nothing
here imports the core. Everything else in this package (sensor physics, optics, sky, clocks, the
Alpaca server) stays behind these functions.

Nothing is connected or started here: the devices are returned disconnected, and
:func:`serve_alpaca` is the only function that blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any
from typing import Unpack

from calibd.drivers.clock import Clock
from calibd.drivers.contracts import Camera
from calibd.drivers.contracts import DeviceListing
from calibd.drivers.pointing import Place
from calibd.simulators.accessories import DEFAULT_FILTERS
from calibd.simulators.accessories import SimulatedFilterWheel
from calibd.simulators.accessories import SimulatedFlatPanel
from calibd.simulators.accessories import SimulatedSafetyMonitor
from calibd.simulators.camera import SimFaults
from calibd.simulators.clock import ScaledClock
from calibd.simulators.mount import SimulatedDome
from calibd.simulators.mount import SimulatedMount
from calibd.simulators.observatory import build_observatory
from calibd.simulators.profiles import PROFILES
from calibd.simulators.profiles import get_profile
from calibd.simulators.sky import SimulatedSky
from calibd.simulators.sky import StarField

if TYPE_CHECKING:
    from calibd.simulators.alpaca_server.server import ServerOptions

__all__ = [
    "DEFAULT_FILTERS",
    "PROFILE_NAMES",
    "list_devices",
    "open_camera",
    "open_clock",
    "open_dome",
    "open_mount",
    "open_panel",
    "open_safety_monitor",
    "open_wheel",
    "serve_alpaca",
]

PROFILE_NAMES: tuple[str, ...] = tuple(sorted(PROFILES))


def open_clock(*, scale: float, start: datetime | None = None,
               real_start: datetime | None = None) -> Clock:
    """A simulated clock running ``scale`` simulated seconds per real second from ``start``
    (UTC; default now) at the real time ``real_start`` (default now), shared by the simulated
    devices, the sequencer and the scheduler (and, given the same three, our Alpaca server).
    Raises ValueError for a scale <= 0."""
    return ScaledClock(scale=scale, start=start, real_start=real_start)


def open_wheel(clock: Clock, *, filters: Sequence[str], seconds_per_slot: float,
               name: str = "wheel") -> SimulatedFilterWheel:
    """A filter wheel with ``filters`` in slot order; a move takes ``seconds_per_slot`` clock
    seconds per slot. Raises ValueError for duplicate or no names."""
    return SimulatedFilterWheel(clock, tuple(filters), seconds_per_slot=seconds_per_slot,
                                name=name)


def open_panel(clock: Clock, *, max_brightness: int, cover: bool, flux_e_per_s_max: float,
               drift_pct_per_min: float, name: str = "panel") -> SimulatedFlatPanel:
    """A flat panel (a flip-flat when ``cover``): ``flux_e_per_s_max`` e⁻/s per pixel at
    ``max_brightness``, fading ``drift_pct_per_min`` percent per clock minute while lit."""
    return SimulatedFlatPanel(clock, max_brightness=max_brightness, has_cover=cover,
                              flux_e_per_s_max=flux_e_per_s_max,
                              drift_pct_per_min=drift_pct_per_min, name=name)


def open_safety_monitor(clock: Clock, *, cloudy: Sequence[tuple[datetime, datetime]] = (),
                        name: str = "weather") -> SimulatedSafetyMonitor:
    """Weather by schedule: unsafe inside the ``cloudy`` (start, end) periods of clock time
    (naive times are local time), safe otherwise."""
    periods = [(start.astimezone(UTC), end.astimezone(UTC)) for start, end in cloudy]
    return SimulatedSafetyMonitor(clock, cloudy_periods=periods, name=name)


def open_mount(clock: Clock, *, latitude_deg: float, longitude_deg: float,
               elevation_m: float = 0.0, slew_deg_per_s: float = 4.0,
               name: str = "mount") -> SimulatedMount:
    """A mount at the given site (degrees, east positive; metres), slewing ``slew_deg_per_s``
    in clock time; parked at alt 0°, az 0° until unparked."""
    return SimulatedMount(clock, Place(latitude_deg, longitude_deg, elevation_m),
                          slew_deg_per_s=slew_deg_per_s, name=name)


def open_dome(clock: Clock, *, roof: bool = False, shutter_move_s: float = 20.0,
              name: str = "dome") -> SimulatedDome:
    """A dome (or with ``roof`` a roll-off roof) whose shutter takes ``shutter_move_s`` clock
    seconds to open or close."""
    return SimulatedDome(clock, shutter_move_s=shutter_move_s, rotates=not roof, name=name)


def open_camera(*, name: str, clock: Clock, profile: str, seed: int | None = None,
                sim_ambient_c: float = 10.0, readout_s: float | None = None,
                faults: Mapping[str, Any] | None = None,
                wheel: SimulatedFilterWheel | None = None,
                panel: SimulatedFlatPanel | None = None,
                sun_altitude_deg: Callable[[datetime], float] | None = None,
                mount: SimulatedMount | None = None, dome: SimulatedDome | None = None,
                stars: bool = True) -> Camera:
    """A simulated camera of sensor ``profile`` (see :data:`PROFILE_NAMES`), wired through one
    optical path to this simulator's ``wheel`` and ``panel`` and, when ``sun_altitude_deg`` (clock
    time -> degrees) is given, to a twilight sky seen with the panel's cover open (or, with a
    ``mount`` and no panel, through the ``dome`` when it is open), with stars where the mount
    points when ``stars`` (trailing while it does not track). ``faults``:
    the fields of :class:`simulators.camera.SimFaults`. Raises KeyError for an unknown
    profile."""
    sensor = get_profile(profile)
    if readout_s is not None:
        sensor = sensor.with_overrides(readout_s=readout_s)
    sim_faults = SimFaults(**dict(faults or {}))
    sky = SimulatedSky(clock, sun_altitude_deg) if sun_altitude_deg is not None else None
    obs = build_observatory(sensor, clock, camera_name=name, ambient_c=sim_ambient_c,
                            noise_seed=seed, faults=sim_faults, wheel=wheel, panel=panel,
                            sky=sky, mount=mount, dome=dome,
                            stars=StarField() if stars and mount is not None else None)
    return obs.camera


def list_devices() -> list[DeviceListing]:
    """The cameras this simulator can be: one line per sensor profile."""
    return [DeviceListing("camera", f"profile {p.name}", p.model) for p in PROFILES.values()]


def serve_alpaca(host: str, port: int, **options: Unpack[ServerOptions]) -> None:
    """Serve the simulated camera, panel, wheel and weather over ASCOM Alpaca until SIGTERM or
    SIGINT (``calibd sim serve --alpaca``); ``options`` as for the Alpaca server's
    ``SimAlpacaServer``. Blocks; raises ValueError (bad options) and OSError (address in use)
    before serving."""
    from calibd.simulators.alpaca_server import serve

    serve(host, port, **options)
