"""The configuration file (``--config FILE``): cameras, clock and library settings.

Strict like plans: unknown keys are errors, and every error names file, line and key. Without a
configuration file calibd uses :func:`default_config`: the built-in simulator with a fast
simulated clock, so a first run needs no hardware.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from capture.errors import ConfigError
from capture.yamlsrc import Located, load_located, problems_from_validation

# Simulated seconds per real second when no configuration is given: a 300 s dark takes 0.3 s.
DEFAULT_SIM_SCALE = 1000.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SimFaultsConfig(_Strict):
    fail_every: int = Field(0, ge=0)
    timeout_every: int = Field(0, ge=0)
    disconnect_every: int = Field(0, ge=0)
    thermal_glitch_every: int = Field(0, ge=0)
    thermal_glitch_c: float = Field(2.0, gt=0, le=20)
    light_leak_every: int = Field(0, ge=0)
    light_leak_e_per_s: float = Field(50.0, gt=0)


class _CameraCommon(_Strict):
    unity_gain: int | None = Field(None, ge=0)  # overrides what the camera/model table says
    offset: int | None = Field(None, ge=0)  # default offset for plans that give none
    ambient_c: float | None = Field(None, ge=-50, le=60)  # for the set-point reachability check


class SimulatorCamera(_CameraCommon):
    driver: Literal["simulator"]
    profile: Literal["small", "asi294mm", "asi2600mm"] = "small"
    seed: int | None = None  # per-frame noise seed (the sensor's fixed pattern has its own)
    sim_ambient_c: float = Field(10.0, ge=-30, le=45)  # the simulated observatory's temperature
    readout_s: float | None = Field(None, ge=0, le=60)  # override the profile's read-out time
    faults: SimFaultsConfig = SimFaultsConfig()


class IndiCamera(_CameraCommon):
    driver: Literal["indi"]
    host: str = "localhost"
    port: int = Field(7624, ge=1, le=65535)
    socket_path: str | None = None
    device: str = Field(min_length=1)


class AlpacaCamera(_CameraCommon):
    driver: Literal["alpaca"]
    host: str = "127.0.0.1"
    port: int = Field(11111, ge=1, le=65535)
    device_number: int = Field(0, ge=0)
    timeout_s: float = Field(5.0, gt=0, le=120)


class ZwoCamera(_CameraCommon):
    driver: Literal["zwo"]
    camera_id: str | None = None  # serial number or ASI id; None = the only camera
    model: str | None = None
    sdk_path: str | None = None
    usb_bandwidth: int | None = Field(None, ge=40, le=100)
    high_speed: StrictBool | None = None


CameraConfig = Annotated[
    SimulatorCamera | IndiCamera | AlpacaCamera | ZwoCamera, Field(discriminator="driver")
]


class ClockConfig(_Strict):
    kind: Literal["real", "simulated"] = "real"
    scale: float = Field(DEFAULT_SIM_SCALE, gt=0, le=1e7)  # simulated seconds per real second
    start: datetime | None = Field(None, strict=False)  # simulated start (UTC); default: now


class LibraryConfig(_Strict):
    root: Path | None = Field(None, strict=False)
    fsync: StrictBool = True  # fsync every file and its folder before counting it
    min_free_mb: float = Field(512.0, ge=0)  # stop cleanly before the disk is this full
    write_queue: int = Field(3, ge=1, le=64)  # frames waiting for the writer (memory bound)


class Config(_Strict):
    """A whole configuration file."""

    library: LibraryConfig = LibraryConfig()
    clock: ClockConfig = ClockConfig()
    cameras: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")], CameraConfig
    ] = Field(min_length=1)

    @model_validator(mode="after")
    def _simulated_clock_needs_simulators(self) -> Config:
        if self.clock.kind == "simulated":
            real = [n for n, c in self.cameras.items() if c.driver != "simulator"]
            if real:
                raise ValueError(
                    f"a simulated clock only works with simulated cameras ({', '.join(real)} "
                    "are real devices)"
                )
        return self


def default_config() -> Config:
    """The built-in simulator ('simulator', small profile) on a fast simulated clock."""
    return Config.model_validate(
        {
            "clock": {"kind": "simulated", "scale": DEFAULT_SIM_SCALE},
            "cameras": {"simulator": {"driver": "simulator", "profile": "small", "offset": 50}},
        }
    )


def load_config(path: Path | str | None) -> tuple[Config, Located | None]:
    """Load and validate ``path``; None gives :func:`default_config`. Raises ConfigError."""
    if path is None:
        return default_config(), None
    located = load_located(path, error=ConfigError)
    if not isinstance(located.data, dict):
        raise ConfigError([located.problem((), "the configuration must be a mapping")])
    try:
        return Config.model_validate(located.data), located
    except ValidationError as err:
        raise ConfigError(problems_from_validation(err, located)) from None


def pick_camera(config: Config, wanted: str | None, located: Located | None) -> str:
    """The camera a plan runs on: ``wanted`` or the only one configured. Raises ConfigError."""
    if wanted is not None:
        if wanted not in config.cameras:
            where = located if located is not None else Located(None, None)
            raise ConfigError([where.problem(("cameras",),
                                             f"no camera named {wanted!r} (configured: "
                                             f"{', '.join(config.cameras)})")])
        return wanted
    if len(config.cameras) == 1:
        return next(iter(config.cameras))
    raise ConfigError([(located or Located(None, None)).problem(
        ("cameras",), "several cameras are configured: name one with --camera or the "
        "plan's 'camera' key")])
