"""Assembling and running the Alpaca server: one simulated observatory (camera, filter wheel, flat
panel with cover, weather, mount, dome and the twilight sky with its stars) on one scaled clock,
its devices, the HTTP server and discovery.

The camera sees what the in-process simulator's does: with the panel's cover open and the dome's
shutter open, the twilight sky of the server's site at the clock's time, and the stars where the
telescope points (trailed while it does not track, moved by an offset)."""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from types import FrameType
from typing import Any
from typing import TypedDict
from typing import Unpack

from calibd.drivers.pointing import Place
from calibd.simulators.accessories import DEFAULT_FILTERS
from calibd.simulators.accessories import SimulatedFilterWheel
from calibd.simulators.accessories import SimulatedFlatPanel
from calibd.simulators.accessories import SimulatedSafetyMonitor
from calibd.simulators.alpaca_server.accessories import CoverCalibratorDevice
from calibd.simulators.alpaca_server.accessories import FilterWheelDevice
from calibd.simulators.alpaca_server.camera import CameraDevice
from calibd.simulators.alpaca_server.device import AlpacaDevice
from calibd.simulators.alpaca_server.device import driver_version
from calibd.simulators.alpaca_server.discovery import DISCOVERY_PORT
from calibd.simulators.alpaca_server.discovery import DiscoveryResponder
from calibd.simulators.alpaca_server.dome import DomeDevice
from calibd.simulators.alpaca_server.routing import AlpacaHTTPServer
from calibd.simulators.alpaca_server.routing import DeviceKey
from calibd.simulators.alpaca_server.telescope import TelescopeDevice
from calibd.simulators.alpaca_server.weather import ObservingConditionsDevice
from calibd.simulators.alpaca_server.weather import SafetyMonitorDevice
from calibd.simulators.clock import ScaledClock
from calibd.simulators.mount import SimulatedDome
from calibd.simulators.mount import SimulatedMount
from calibd.simulators.observatory import SimulatedObservatory
from calibd.simulators.observatory import build_observatory
from calibd.simulators.profiles import PROFILES
from calibd.simulators.profiles import SensorProfile
from calibd.simulators.sky import SimulatedSky
from calibd.simulators.sky import StarField
from calibd.simulators.sky import sun_altitude_deg

log = logging.getLogger(__name__)

DEFAULT_PORT = 11111
#: Sensor chips of the profiles that imitate real cameras (SensorName).
SENSOR_NAMES = {"asi2600mm": "IMX571", "asi294mm": "IMX492", "asi2600mc": "IMX571",
                "asi533mc": "IMX533"}
#: The server's default site, the built-in simulator's (its mount, sky and sun): calibd's default
#: ``site:`` too.
DEFAULT_SITE = Place(45.0, 7.0, 400.0)


class ServerOptions(TypedDict, total=False):
    """The keyword options of :class:`SimAlpacaServer` (see there), for the functions that pass
    them on (:func:`serve`, the simulator registry's ``serve_alpaca``)."""

    profile: str
    scale: float
    discovery_port: int | None
    ambient_c: float
    seed: int | None
    filters: Sequence[str]
    start: datetime | None
    real_start: datetime | None
    site: Place


def _unique_id(profile: SensorProfile, device_type: str, number: int) -> str:
    """A UniqueID that stays the same across restarts for the same simulated hardware."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL,
                          f"calibd-sim:{profile.name}:{profile.seed}:{device_type}:{number}"))


class SimAlpacaServer:
    """The simulated devices behind an Alpaca HTTP server (and UDP discovery), in this process.

    ``port=0`` binds an ephemeral port (read :attr:`port` after :meth:`start`); the same for
    ``discovery_port=0``; ``discovery_port=None`` disables discovery. ``scale`` is simulated
    seconds per real second; the clock reads ``start`` (default: now) at the real time
    ``real_start`` (default: now), so a client given the same three runs the same simulated time.
    ``site`` is where the mount stands and whose sun lights the sky (Telescope ``SiteLatitude``
    and the rest report it; give calibd's ``site:`` the same for its flat spot).
    :attr:`observatory`, :attr:`safety`, :attr:`mount` and :attr:`dome` are the simulators
    themselves (for tests and tools in the same process).

    Raises ValueError (unknown profile, scale <= 0, bad filter names).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        profile: str = "small",
        scale: float = 1.0,
        discovery_port: int | None = None,
        ambient_c: float = 10.0,
        seed: int | None = None,
        filters: Sequence[str] = DEFAULT_FILTERS,
        start: datetime | None = None,
        real_start: datetime | None = None,
        site: Place = DEFAULT_SITE,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(
                f"unknown simulator profile {profile!r} (known: {', '.join(sorted(PROFILES))})"
            )
        self.host = host
        self._requested_port = port
        self.clock = ScaledClock(scale, start, real_start=real_start)
        sensor = PROFILES[profile]
        wheel = SimulatedFilterWheel(self.clock, tuple(filters), name="wheel")
        panel = SimulatedFlatPanel(self.clock, has_cover=True, name="panel")
        self.safety = SimulatedSafetyMonitor(self.clock, name="weather")
        self.dome = SimulatedDome(self.clock, name="dome")
        self.mount = SimulatedMount(self.clock, site, slew_deg_per_s=1.0, name="mount")
        self.observatory: SimulatedObservatory = build_observatory(
            sensor, self.clock, camera_name="camera", ambient_c=ambient_c, noise_seed=seed,
            wheel=wheel, panel=panel, sky=SimulatedSky(self.clock, partial(sun_altitude_deg, site)),
            mount=self.mount, dome=self.dome, stars=StarField(),
        )
        devices: list[AlpacaDevice] = [
            CameraDevice(self.observatory.camera, self.clock,
                         unique_id=_unique_id(sensor, "camera", 0),
                         sensor_name=SENSOR_NAMES.get(sensor.name, "CMOS")),
            FilterWheelDevice(wheel, self.clock, unique_id=_unique_id(sensor, "filterwheel", 0)),
            CoverCalibratorDevice(panel, self.clock,
                                  unique_id=_unique_id(sensor, "covercalibrator", 0)),
            SafetyMonitorDevice(self.safety, self.clock,
                                unique_id=_unique_id(sensor, "safetymonitor", 0)),
            ObservingConditionsDevice(self.safety, self.clock,
                                      unique_id=_unique_id(sensor, "observingconditions", 0)),
            DomeDevice(self.dome, self.clock, unique_id=_unique_id(sensor, "dome", 0)),
            TelescopeDevice(self.mount, self.clock,
                            unique_id=_unique_id(sensor, "telescope", 0)),
        ]
        self.devices: dict[DeviceKey, AlpacaDevice] = {
            (d.device_type, d.number): d for d in devices
        }
        self._discovery_port = discovery_port
        self._http: AlpacaHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._discovery: DiscoveryResponder | None = None

    @property
    def port(self) -> int:
        """The bound HTTP port (the requested one before :meth:`start`)."""
        if self._http is None:
            return self._requested_port
        return int(self._http.server_address[1])

    @property
    def discovery_port(self) -> int | None:
        """The bound UDP discovery port, None when disabled."""
        if self._discovery is not None:
            return self._discovery.port
        return self._discovery_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve in background threads; returns at once. Raises OSError when the
        address is in use or not available."""
        description = {
            "ServerName": "calibd simulator",
            "Manufacturer": "calibd",
            "ManufacturerVersion": driver_version(),
            "Location": "simulated observatory",
        }
        # The first coordinate conversion loads astropy's frames and tables (seconds of real
        # time, minutes on a fast clock): done before serving, so no request waits for it.
        self.mount.radec()
        if self.observatory.sky is not None:
            self.observatory.sky.flux()
        self._http = AlpacaHTTPServer((self.host, self._requested_port), self.devices, description)
        self._thread = threading.Thread(
            target=self._http.serve_forever, args=(0.1,), name="alpaca-http", daemon=True
        )
        self._thread.start()
        if self._discovery_port is not None:
            self._discovery = DiscoveryResponder(self.host, self._discovery_port, self.port)
            try:
                self._discovery.start()
            except OSError:
                self.stop()
                raise
        camera = self.observatory.camera
        log.info(
            "Alpaca server on %s: %s, filter wheel, flat panel, weather, mount, dome "
            "(clock x%g, at %s)", self.url, camera.profile.model, self.clock.scale,
            f"{self.clock.now():%Y-%m-%dT%H:%M:%SZ}",
        )

    def stop(self) -> None:
        """Stop serving: end exposures, stop discovery, close the listening socket and every
        open connection. Blocks up to a few seconds; never raises."""
        if self._discovery is not None:
            self._discovery.stop()
            self._discovery = None
        http_server, self._http = self._http, None
        if http_server is not None:
            http_server.shutdown()
            http_server.server_close()
            http_server.close_connections()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        for device in self.devices.values():
            device.shutdown()
        log.info("Alpaca server stopped")

    def __enter__(self) -> SimAlpacaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    stop: threading.Event | None = None,
    **options: Unpack[ServerOptions],
) -> None:
    """Serve the simulated devices over Alpaca until ``stop`` is set or, when called from the
    main thread, SIGTERM/SIGINT arrives (the handlers only set a flag; the previous handlers are
    restored on return).

    ``options`` as for :class:`SimAlpacaServer`, except that discovery is on by default
    (``discovery_port`` :data:`DISCOVERY_PORT`; None disables it). Blocks; raises ValueError (bad
    options) and OSError (address in use) before serving.
    """
    stop = stop or threading.Event()
    options.setdefault("discovery_port", DISCOVERY_PORT)
    server = SimAlpacaServer(host, port, **options)
    previous: dict[signal.Signals, Any] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        server.start()
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
