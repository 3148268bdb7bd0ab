"""Device contracts: what the core may ask of a camera, filter wheel, flat panel, safety monitor,
mount or dome.

The core (``capture``) sees only these Protocols and frozen dataclasses; vendor libraries stay in
their own modules in ``drivers/``. Units are part of every name (``exposure_s``, ``temperature_c``,
``power_pct``). Images are 2-D ``uint16`` arrays indexed [row, column], row 0 at the top.

Blocking and errors, for every method below unless it says otherwise: it blocks until the device
has done (or refused) the thing, never longer than the deadline given or documented, and raises
only :mod:`drivers.errors` classes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Protocol
from typing import runtime_checkable

import numpy as np
import numpy.typing as npt

ImageArray = npt.NDArray[np.uint16]


@dataclass(frozen=True)
class CameraInfo:
    """What a connected camera is and can do. Ranges are inclusive; sizes are unbinned pixels."""

    model: str
    camera_id: str  # stable identity (serial number or vendor id), never a USB index
    width: int
    height: int
    bit_depth: int  # native ADC bits; images are always delivered scaled to 16 bits
    pixel_size_um: float
    gain_min: int
    gain_max: int
    offset_min: int
    offset_max: int
    min_exposure_s: float
    max_exposure_s: float
    has_cooler: bool
    has_shutter: bool = False
    readout_modes: tuple[str, ...] = ("default",)
    binnings: tuple[int, ...] = (1,)
    bayer_pattern: str | None = None
    unity_gain: int | None = None  # gain where 1 e- = 1 ADU (native), where the driver knows it
    gain_names: tuple[str, ...] = ()  # non-empty when the device takes gain as an index into names
    readout_s: float = 1.0  # typical full-frame read-out plus download time, for planning
    full_well_e: float | None = None  # pixel capacity in electrons, where known
    cooler_max_delta_c: float | None = None  # how far below ambient the cooler can pull
    min_setpoint_c: float | None = None  # absolute lower limit of the set-point
    max_setpoint_c: float | None = None

    @property
    def frame_bytes(self) -> int:
        """Bytes of one unbinned 16-bit image (the pixel payload of a FITS file)."""
        return self.width * self.height * 2


@dataclass(frozen=True)
class CaptureSettings:
    """Settings that define a calibration cell on the camera side.

    ``readout_mode="default"`` asks for the camera's default mode; :meth:`Camera.configure`
    returns the name of the mode actually in use.
    """

    gain: int
    offset: int
    binning: int = 1
    readout_mode: str = "default"


@dataclass(frozen=True)
class CoolerState:
    """A snapshot of the cooler. ``power_pct`` and ``setpoint_c`` are None where the device does
    not report them; ``heatsink_c`` is the hot-side (roughly ambient) temperature where known."""

    temperature_c: float
    on: bool
    setpoint_c: float | None = None
    power_pct: float | None = None
    heatsink_c: float | None = None


@dataclass(frozen=True, eq=False)
class Frame:
    """One image and what it was actually taken with (read back from the device, not requested)."""

    data: ImageArray
    exposure_s: float
    dark: bool
    settings: CaptureSettings
    start_utc: datetime
    temp_start_c: float | None
    temp_end_c: float | None
    setpoint_c: float | None
    readout_s: float = 0.0  # seconds from the end of the exposure until the image was in memory
    electrons_per_adu: float | None = None  # in the delivered 16-bit ADU
    # Colour sensors: the FITS BAYERPAT of *this* image (the 2x2 colours at data[0:2, 0:2], row 0
    # at the top), with subframe origin and binning already folded in; None for a monochrome
    # image (a mono sensor, or a colour sensor's mono-binned / debayered output).
    bayer_pattern: str | None = None
    extra_header: Mapping[str, str | int | float | bool] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.data.shape[0]), int(self.data.shape[1]))


@runtime_checkable
class Device(Protocol):
    """What every device driver offers: open and close (the contracts below add the rest)."""

    def connect(self) -> None:
        """Open the device (idempotent). Raises DeviceUnavailable."""
        ...

    def disconnect(self) -> None:
        """Close the device; never raises."""
        ...


@runtime_checkable
class Camera(Device, Protocol):
    """A cooled astronomy camera.

    ``info`` is valid after :meth:`connect`. :meth:`expose` may be aborted from another thread with
    :meth:`abort`; every other method is called from one thread at a time.
    """

    @property
    def info(self) -> CameraInfo:
        """Capabilities; raises DeviceUnavailable before connect()."""
        ...

    @property
    def connected(self) -> bool:
        """True while the device answers (cheap, never blocks on I/O)."""
        ...

    def configure(self, settings: CaptureSettings) -> CaptureSettings:
        """Apply gain, offset, binning (full frame at that binning) and read-out mode.

        Returns the values read back from the device. Raises SettingRejected (out of range, unknown
        mode) or DeviceUnavailable.
        """
        ...

    def cooler_state(self) -> CoolerState:
        """Read the cooler. Raises DeviceUnavailable; NotSupported if there is no cooler."""
        ...

    def set_cooler(self, on: bool, setpoint_c: float | None = None) -> None:
        """Switch the cooler and set the target (°C). Does not wait for the temperature.

        Raises SettingRejected (set-point out of range), NotSupported, DeviceUnavailable.
        """
        ...

    def expose(self, exposure_s: float, *, dark: bool, timeout_s: float | None = None) -> Frame:
        """Take one exposure and return it once downloaded.

        ``dark`` closes the shutter / marks the frame dark. Blocks for about exposure + read-out;
        ``timeout_s`` (clock seconds, default: the driver's 2 x exposure + read-out + margin)
        bounds the whole call. Raises ExposureTimeout, ExposureFailed (also when aborted),
        SettingRejected (exposure outside the device's range), DeviceUnavailable.
        """
        ...

    def abort(self) -> None:
        """Abort a running exposure from any thread; a no-op when idle. Never raises."""
        ...


@runtime_checkable
class FilterWheel(Device, Protocol):
    """A filter wheel with named slots."""

    @property
    def names(self) -> tuple[str, ...]:
        """Slot names in slot order (valid after connect)."""
        ...

    def position(self) -> str | None:
        """Name of the filter in the beam, None while moving or unknown."""
        ...

    def select(self, name: str, *, timeout_s: float | None = None) -> None:
        """Move to ``name`` and block until it is in place. Raises SettingRejected (unknown
        name), DeviceUnavailable, ExposureTimeout is never raised here: a move past its deadline
        raises DeviceUnavailable."""
        ...


class CoverState(enum.Enum):
    """ASCOM CoverCalibrator cover states."""

    NOT_PRESENT = 0
    CLOSED = 1
    MOVING = 2
    OPEN = 3
    UNKNOWN = 4
    ERROR = 5


@runtime_checkable
class FlatPanel(Device, Protocol):
    """A flat-field light source with ASCOM CoverCalibrator semantics (brightness 0..max) and an
    optional dust cover."""

    @property
    def max_brightness(self) -> int:
        """Largest accepted brightness (valid after connect)."""
        ...

    @property
    def has_cover(self) -> bool:
        ...

    def light(self, brightness: int, *, timeout_s: float | None = None) -> None:
        """Turn on at ``brightness`` and block until the light is stable. Raises SettingRejected
        (out of range) or DeviceUnavailable."""
        ...

    def off(self, *, timeout_s: float | None = None) -> None:
        """Turn the light off and block until it is off. Raises DeviceUnavailable."""
        ...

    def brightness(self) -> int:
        """Current brightness, 0 when off."""
        ...

    def cover_state(self) -> CoverState:
        ...

    def open_cover(self, *, timeout_s: float | None = None) -> None:
        """Open and block until open. Raises NotSupported without a cover, DeviceUnavailable."""
        ...

    def close_cover(self, *, timeout_s: float | None = None) -> None:
        """Close and block until closed. Raises NotSupported without a cover, DeviceUnavailable."""
        ...


@runtime_checkable
class SafetyMonitor(Device, Protocol):
    """Weather / safety: unsafe (cloudy, raining) is when the dark library runs."""

    def is_safe(self) -> bool:
        """True when the sky is usable. Raises DeviceUnavailable."""
        ...

    def cloud_cover_pct(self) -> float | None:
        """Cloud cover in percent where the device reports it, else None."""
        ...


class MountState(enum.Enum):
    """What a mount is doing, as :meth:`Mount.status` reports it."""

    PARKED = "parked"
    SLEWING = "slewing"
    TRACKING = "tracking"  # unparked, not slewing, following the sky
    STOPPED = "stopped"  # unparked, not slewing, tracking off (the stars drift through the field)


@dataclass(frozen=True)
class MountStatus:
    """Where the mount points and what it does. ``ra_hours``/``dec_deg`` are apparent
    coordinates of date (JNow: true equator and equinox, topocentric); ``alt_deg``/``az_deg``
    are unrefracted, azimuth from North through East."""

    state: MountState
    ra_hours: float
    dec_deg: float
    alt_deg: float
    az_deg: float

    @property
    def parked(self) -> bool:
        return self.state is MountState.PARKED

    @property
    def tracking(self) -> bool:
        return self.state is MountState.TRACKING


@runtime_checkable
class Mount(Device, Protocol):
    """A telescope mount. Every move blocks until it is done, never longer than ``timeout_s``
    (clock seconds; a driver default when None): a move past its deadline is aborted and raises
    DeviceUnavailable. A move while parked raises SettingRejected; coordinates out of range
    raise SettingRejected. :meth:`abort` may be called from another thread."""

    def status(self) -> MountStatus:
        """State and pointing. Raises DeviceUnavailable."""
        ...

    def unpark(self, *, timeout_s: float | None = None) -> None:
        """Leave the park position (a no-op when unparked). Tracking is off afterwards."""
        ...

    def park(self, *, timeout_s: float | None = None) -> None:
        """Go to the park position and block until parked (a no-op when parked); tracking off."""
        ...

    def slew_altaz(self, alt_deg: float, az_deg: float, *, tracking: bool = False,
                   timeout_s: float | None = None) -> None:
        """Point at altitude/azimuth (degrees; azimuth North through East) and block until
        there. Tracking is ``tracking`` afterwards, whatever the device does by itself."""
        ...

    def slew_radec(self, ra_hours: float, dec_deg: float, *, tracking: bool = True,
                   timeout_s: float | None = None) -> None:
        """Point at apparent RA (hours) / Dec (degrees) of date and block until there; tracking
        is ``tracking`` afterwards."""
        ...

    def set_tracking(self, on: bool) -> None:
        """Switch sidereal tracking. Raises SettingRejected while parked."""
        ...

    def abort(self) -> None:
        """Stop any motion now; a no-op when idle. Never raises."""
        ...


class ShutterState(enum.Enum):
    """ASCOM ShutterState values (a roll-off roof is a shutter too)."""

    OPEN = 0
    CLOSED = 1
    OPENING = 2
    CLOSING = 3
    ERROR = 4


@runtime_checkable
class Dome(Device, Protocol):
    """A dome or roll-off roof: its shutter, its park position and its slaving to the mount.
    Moves block until done, never longer than ``timeout_s`` (clock seconds; a driver default
    when None); a move that ends in the wrong state, in an error or past its deadline raises
    DeviceUnavailable."""

    def shutter(self) -> ShutterState:
        """The shutter (roof) as the device reports it. Raises DeviceUnavailable."""
        ...

    def open_shutter(self, *, timeout_s: float | None = None) -> None:
        """Open and block until OPEN (a no-op when open)."""
        ...

    def close_shutter(self, *, timeout_s: float | None = None) -> None:
        """Close and block until CLOSED (a no-op when closed)."""
        ...

    def at_park(self) -> bool:
        """True when the dome is at its park position (a roof: always True)."""
        ...

    def park(self, *, timeout_s: float | None = None) -> None:
        """Rotate to the park position and block until there (a roof: a no-op)."""
        ...

    def unpark(self, *, timeout_s: float | None = None) -> None:
        """Leave the park position so the dome may move (a no-op when unparked)."""
        ...

    def stop_slaving(self) -> None:
        """Stop following the mount (a no-op where the dome cannot follow it)."""
        ...


@dataclass(frozen=True)
class DeviceListing:
    """One device a server or bus offers, as ``calibd devices list`` prints it."""

    kind: str  # "camera", "filterwheel", "flatpanel", "safety", "weather", "mount", "dome", "other"
    name: str  # what to put in the configuration to use it
    details: str = ""  # model, serial, interfaces, ... for humans
