"""The configuration file (``--config FILE``): cameras, clock and library settings.

Strict like plans: unknown keys are errors, and every error names file, line and key. Without a
configuration file calibd uses :func:`default_config`: the built-in simulator with a fast
simulated clock, so a first run needs no hardware.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from typing import Literal

from pydantic import AfterValidator
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import StrictBool
from pydantic import ValidationError
from pydantic import ValidationInfo
from pydantic import field_validator
from pydantic import model_validator

from calibd.capture.errors import ConfigError
from calibd.capture.library.policy import LibraryPolicy
from calibd.capture.net import is_loopback_literal
from calibd.capture.yamlsrc import Located
from calibd.capture.yamlsrc import load_located
from calibd.capture.yamlsrc import problems_from_validation

# Simulated seconds per real second when no configuration is given: a 300 s dark takes 0.3 s.
DEFAULT_SIM_SCALE = 1000.0
SIM_CLOCK_ROOM_REAL_S = 30 * 86400.0  # real seconds a simulated clock must be able to run


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
    ignore_gain_offset: bool = False  # accepts gain/offset requests without applying them
    bug_every: int = Field(0, ge=0)  # every Nth exposure raises an unexpected error


class _IndiEndpoint(_Strict):
    """An INDI device: the indiserver (TCP host and port, or its local socket) and the name."""

    driver: Literal["indi"]
    host: str = "localhost"
    port: int = Field(7624, ge=1, le=65535)
    socket_path: str | None = None
    device: str = Field(min_length=1)


class _AlpacaEndpoint(_Strict):
    """An Alpaca device: the server and the device number; ``timeout_s`` real seconds a call."""

    driver: Literal["alpaca"]
    host: str = "127.0.0.1"
    port: int = Field(11111, ge=1, le=65535)
    device_number: int = Field(0, ge=0)
    timeout_s: float = Field(5.0, gt=0, le=120)


class _CameraCommon(_Strict):
    unity_gain: int | None = Field(None, ge=0)  # overrides what the camera/model table says
    offset: int | None = Field(None, ge=0)  # default offset for plans that give none
    ambient_c: float | None = Field(None, ge=-50, le=60)  # for the set-point reachability check
    filter_wheel: str | None = None  # name under filter_wheels
    flat_panel: str | None = None  # name under flat_panels
    mount: str | None = None  # name under mounts (sky flats point it at the flat spot)
    dome: str | None = None  # name under domes (opened for sky flats, closed after)


class SimulatorCamera(_CameraCommon):
    driver: Literal["simulator"]
    profile: Literal["small", "asi294mm", "asi2600mm", "small-colour", "asi2600mc",
                     "asi533mc"] = "small"
    seed: int | None = None  # per-frame noise seed (the sensor's fixed pattern has its own)
    sim_ambient_c: float = Field(10.0, ge=-30, le=45)  # the simulated observatory's temperature
    readout_s: float | None = Field(None, ge=0, le=60)  # override the profile's read-out time
    faults: SimFaultsConfig = SimFaultsConfig()


class IndiCamera(_IndiEndpoint, _CameraCommon):
    connect_timeout_s: float = Field(10.0, gt=0, le=300)
    polling_ms: int | None = Field(None, ge=10, le=60000)


class AlpacaCamera(_AlpacaEndpoint, _CameraCommon):
    download_timeout_s: float | None = Field(None, gt=0, le=3600)  # real s; None: from read-out


class ZwoCamera(_CameraCommon):
    driver: Literal["zwo"]
    camera_id: str | None = None  # serial number or ASI id; None = the only camera
    model: str | None = None
    sdk_path: str | None = None
    usb_bandwidth: int | None = Field(None, ge=40, le=100)
    high_speed: StrictBool | None = None
    call_timeout_s: float = Field(10.0, gt=0, le=300)  # real seconds per SDK call


class SimulatorWheel(_Strict):
    driver: Literal["simulator"]
    filters: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        default_factory=lambda: ["L", "R", "G", "B", "Ha", "OIII", "SII"], min_length=1)
    seconds_per_slot: float = Field(1.0, ge=0, le=60)


class IndiWheel(_IndiEndpoint):
    pass


class AlpacaWheel(_AlpacaEndpoint):
    pass


class SimulatorPanel(_Strict):
    driver: Literal["simulator"]
    max_brightness: int = Field(1023, ge=1, le=65535)
    cover: StrictBool = True  # a flip-flat: closed = panel in the beam, open = sky
    flux_e_per_s_max: float = Field(100_000.0, gt=0)  # per pixel at full brightness, clear filter
    drift_pct_per_min: float = Field(0.0, ge=0, le=100)  # output fading while lit (fault model)


class IndiPanel(_IndiEndpoint):
    dust_cap_device: str | None = None  # when the cover is a separate INDI device


class AlpacaPanel(_AlpacaEndpoint):
    pass


class SimulatorMount(_Strict):
    driver: Literal["simulator"]
    slew_deg_per_s: float = Field(4.0, gt=0, le=90)


class IndiMount(_IndiEndpoint):
    pass


class AlpacaMount(_AlpacaEndpoint):
    pass


class SimulatorDome(_Strict):
    driver: Literal["simulator"]
    roof: StrictBool = False  # a roll-off roof instead of a dome
    shutter_move_s: float = Field(20.0, ge=0, le=600)
    fail_close: StrictBool = False  # fault model: the shutter sticks when closing
    fail_open: StrictBool = False  # ... when opening


class IndiDome(_IndiEndpoint):
    pass


class AlpacaDome(_AlpacaEndpoint):
    pass


MountConfig = Annotated[SimulatorMount | IndiMount | AlpacaMount, Field(discriminator="driver")]
DomeConfig = Annotated[SimulatorDome | IndiDome | AlpacaDome, Field(discriminator="driver")]
WheelConfig = Annotated[SimulatorWheel | IndiWheel | AlpacaWheel, Field(discriminator="driver")]
PanelConfig = Annotated[SimulatorPanel | IndiPanel | AlpacaPanel, Field(discriminator="driver")]


class SiteConfig(_Strict):
    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=180)  # east positive
    elevation_m: float = Field(0.0, ge=-500, le=9000)


DEFAULT_SITE = {"latitude_deg": 45.0, "longitude_deg": 7.0, "elevation_m": 400.0}
DeviceName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]

CameraConfig = Annotated[
    SimulatorCamera | IndiCamera | AlpacaCamera | ZwoCamera, Field(discriminator="driver")
]


def _sane_path(path: Path) -> Path:
    """A path as a configuration may name it: no control character, at most 4096 bytes, no
    name over 255 bytes (what Linux file systems take). Raises ValueError."""
    text = str(path)
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise ValueError("the path has a control character")
    if len(text.encode("utf-8", "surrogateescape")) > 4096:
        raise ValueError("the path is longer than 4096 bytes")
    if any(len(part.encode("utf-8", "surrogateescape")) > 255 for part in path.parts):
        raise ValueError("a name in the path is longer than 255 bytes")
    return path


#: A file or folder named in the configuration (checked by :func:`_sane_path`).
SanePath = Annotated[Path, AfterValidator(_sane_path)]


class ClockConfig(_Strict):
    kind: Literal["real", "simulated"] = "real"
    scale: float = Field(DEFAULT_SIM_SCALE, gt=0, le=1e7)  # simulated seconds per real second
    start: datetime | None = Field(None, strict=False)  # simulated start (UTC); default: now
    # The real (wall-clock) time at which the simulated clock reads ``start``; default: when
    # calibd starts. Give our Alpaca server the same three and both run one simulated time.
    real_start: datetime | None = Field(None, strict=False)

    @field_validator("start")
    @classmethod
    def _room_to_run(cls, start: datetime | None, info: ValidationInfo) -> datetime | None:
        """A simulated clock must be able to run for 30 days of real time at its scale before
        the calendar ends (9999-12-31): later starts overflow every date computed from it."""
        scale = info.data.get("scale", DEFAULT_SIM_SCALE)
        if start is None:
            return start
        aware = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
        if aware < datetime(1970, 1, 1, tzinfo=UTC):
            raise ValueError("start before 1970 (dates before the Unix epoch are not kept)")
        room_s = (datetime.max.replace(tzinfo=UTC) - aware).total_seconds()
        if room_s < scale * SIM_CLOCK_ROOM_REAL_S:
            latest = datetime.max.replace(tzinfo=UTC) - timedelta(
                seconds=scale * SIM_CLOCK_ROOM_REAL_S)
            raise ValueError(f"too close to the end of the calendar for a clock running "
                             f"{scale:g}x: start before {latest:%Y-%m-%d}")
        return start


class LibraryConfig(_Strict):
    root: SanePath | None = Field(None, strict=False)
    fsync: StrictBool = True  # fsync every file and its folder before counting it
    min_free_mb: float = Field(512.0, ge=0)  # stop cleanly before the disk is this full
    write_queue: int = Field(3, ge=1, le=64)  # frames waiting for the writer (memory bound)
    write_queue_mb: float = Field(64.0, ge=1, le=65536)  # ... and their bytes (one always fits)
    policy: LibraryPolicy = LibraryPolicy()  # ages, invalidations, matching tolerances


class RejectionConfig(_Strict):
    """Outlier rejection for masters (see capture.combine.rejection for the definitions)."""

    method: Literal["sigma", "winsorized", "minmax", "percentile", "none"] = "sigma"
    sigma_low: float = Field(3.0, gt=0, le=20)
    sigma_high: float = Field(3.0, gt=0, le=20)
    center: Literal["median", "mean"] = "median"
    spread: Literal["std", "mad"] = "std"
    stddev: Literal["population", "sample"] = "population"  # ccdproc / Siril (N - 1)
    iterations: int = Field(1, ge=0, le=20)  # 0 = until nothing changes
    n_low: int = Field(1, ge=0, le=100)
    n_high: int = Field(1, ge=0, le=100)
    percentile_low: float = Field(10.0, ge=0, le=100)
    percentile_high: float = Field(90.0, ge=0, le=100)


class MastersConfig(_Strict):
    auto: StrictBool = True  # build a cell's master as soon as the run completes the cell
    method: Literal["mean", "median"] = "mean"
    rejection: RejectionConfig = RejectionConfig()
    # Sky flats (FLATSRC = 'sky') carry stars that moved between frames (tracking off, or an
    # offset): the median and a robust spread (MAD) are not moved by a star present in up to a
    # third of the frames at a pixel, so one pass removes it, where one pass of a standard
    # deviation, inflated by the star itself, keeps it; 2.5 sigma above also takes most of the
    # faint wings of the trails. One pass only: clipping again around the shrunken median and
    # MAD of what is left cuts into the noise's own upper tail wherever the MAD came out low,
    # biasing single pixels low by up to 1 sigma of a frame (6-7 sigma of a 40-frame master).
    sky_flat_rejection: RejectionConfig = RejectionConfig(
        spread="mad", sigma_low=4.0, sigma_high=2.5, iterations=1)
    # Master darks keep the bias ("with-bias": lights are calibrated with the dark and the flat,
    # Siril's and WBPP's common CMOS workflow) or have the matching master bias subtracted
    # ("bias-subtracted": for scaling darks by exposure; lights need the master bias too). One
    # convention for every master dark of the library, written in its header (DARKCONV).
    dark_convention: Literal["with-bias", "bias-subtracted"] = "with-bias"
    bias_setpoint_tolerance_c: float = Field(1.0, ge=0, le=20)
    memory_budget_mb: float = Field(128.0, ge=16, le=16384)
    hot_sigma: float = Field(5.0, gt=0)  # BPM: hot = excess above the local level > this x noise
    hot_factor: float = Field(10.0, gt=1)  # ... and above this x the local dark signal
    cold_fraction: float = Field(0.75, gt=0, lt=1)  # BPM: cold/dead = below this x local flat
    bpm_block_px: int = Field(32, ge=4, le=1024)  # size of the local-level blocks


class ApiConfig(_Strict):
    enabled: StrictBool = True
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    token: str | None = Field(None, min_length=16)  # required for commands and non-loopback
    token_file: SanePath | None = Field(None, strict=False)  # a file holding the token

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ApiConfig:
        if self.enabled and not is_loopback_literal(self.host) and \
                not (self.token or self.token_file):
            raise ValueError(f"refusing to serve the API on {self.host} without a token: set "
                             "api.token or api.token_file (or keep host 127.0.0.1)")
        return self


AlertKind = Literal["run_finished", "run_failed", "run_paused", "cell_skipped",
                    "cooler_unsettled", "disk_low", "unsafe", "observatory_alarm",
                    "library_lacks", "daemon_stopping"]


class NotifyTarget(_Strict):
    """One notification target: an Apprise URL (``mailto://``, ``json://``, ``ntfy://``…),
    inline or in a file (it usually holds a password or token); the alert kinds it takes."""

    url: str | None = Field(None, min_length=6, max_length=2000)
    url_file: SanePath | None = Field(None, strict=False)
    events: list[AlertKind] | None = None  # None: every kind

    @model_validator(mode="after")
    def _one_url(self) -> NotifyTarget:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give either url or url_file")
        return self


class MqttConfig(_Strict):
    """An MQTT broker for state (retained, Home Assistant discovery) and events."""

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = Field(None, max_length=255)
    password_file: SanePath | None = Field(None, strict=False)
    topic_prefix: str = Field("calibd", pattern=r"^[A-Za-z0-9_/-]{1,64}$")
    discovery_prefix: str | None = Field("homeassistant", pattern=r"^[A-Za-z0-9_/-]{1,64}$")
    client_id: str = Field("calibd", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    keepalive_s: int = Field(30, ge=5, le=3600)
    events: list[AlertKind] | None = None  # None: every kind on <prefix>/event


class NotificationsConfig(_Strict):
    targets: list[NotifyTarget] = Field(default_factory=list, max_length=32)
    mqtt: MqttConfig | None = None
    timeout_s: float = Field(10.0, gt=0, le=120)  # real seconds per send
    dedup_s: float = Field(600.0, ge=0, le=7 * 86400)  # clock seconds: the same alert once
    rate_count: int = Field(3, ge=1, le=1000)  # alerts of one kind per window, then a digest
    rate_window_s: float = Field(3600.0, gt=0, le=7 * 86400)  # clock seconds
    disk_low_mb: float = Field(4096.0, ge=0)  # alert when the library's disk has less free


class DaemonConfig(_Strict):
    state_dir: SanePath = Field(Path("/var/lib/calibd"), strict=False)  # job store, run queue state
    timezone: str | None = None  # for cron schedules; default: the system's local time zone
    stop_policy: Literal["abort", "finish"] = "abort"  # SIGTERM: abort or finish the exposure
    # Clock seconds between two questions to the safety monitor (safety:), 10 s ... 1 h.
    weather_poll_s: float = Field(120.0, ge=10, le=3600)
    # The only folder from which the API starts plans by name (besides schedules); relative to
    # the configuration file. None: the API starts schedules only.
    plans_dir: SanePath | None = Field(None, strict=False)
    stop_timeout_s: float = Field(60.0, gt=0, le=3600)  # real seconds to wind down on SIGTERM
    api: ApiConfig = ApiConfig()
    notifications: NotificationsConfig = NotificationsConfig()


class _Schedule(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    camera: str | None = None  # default: the only camera
    plan: SanePath = Field(strict=False)  # relative paths are relative to the configuration file
    enabled: StrictBool = True
    # A library goal: capture only the plan's cells the library lacks under library.policy
    # (missing, unfinished, expired or invalidated), those the lights in ``lights`` need first.
    upkeep: StrictBool = False
    lights: list[Annotated[Path, Field(strict=False)]] = Field(default_factory=list,
                                                               max_length=16)


class _Timed(_Schedule):
    misfire: Literal["run_once", "skip"] = "run_once"  # fires missed while the machine was off
    misfire_grace_s: float = Field(6 * 3600.0, gt=0, le=7 * 86400)  # run_once: only this late


class CronSchedule(_Timed):
    trigger: Literal["cron"]
    cron: str = Field(min_length=9, max_length=200)  # crontab: minute hour day month weekday

    @model_validator(mode="after")
    def _parse(self) -> CronSchedule:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(self.cron, timezone="UTC")
        except ValueError as err:
            raise ValueError(f"cron {self.cron!r}: {err}") from None
        return self


class TwilightSchedule(_Timed):
    trigger: Literal["dusk", "dawn"]
    sun_altitude_deg: float = Field(-2.0, ge=-18, le=10)  # fire when the sun crosses this


class UnsafeSchedule(_Schedule):
    trigger: Literal["unsafe"]  # runs while the safety monitor says unsafe (cloudy)
    when_safe: Literal["yield", "finish"] = "yield"  # when it clears: stop (resumable) or finish


class OnDemandSchedule(_Schedule):
    trigger: Literal["on_demand"]  # only when asked through the API


ScheduleConfig = Annotated[CronSchedule | TwilightSchedule | UnsafeSchedule | OnDemandSchedule,
                           Field(discriminator="trigger")]


class CloudyPeriod(_Strict):
    start: datetime = Field(strict=False)
    end: datetime = Field(strict=False)


class SimulatorSafety(_Strict):
    driver: Literal["simulator"]
    cloudy: list[CloudyPeriod] = Field(default_factory=list)  # in clock time; safe otherwise


class IndiSafety(_IndiEndpoint):
    pass


class AlpacaSafety(_AlpacaEndpoint):
    conditions_device_number: int | None = Field(None, ge=0)  # ObservingConditions, cloud cover


SafetyConfig = Annotated[SimulatorSafety | IndiSafety | AlpacaSafety,
                         Field(discriminator="driver")]


class Config(_Strict):
    """A whole configuration file."""

    library: LibraryConfig = LibraryConfig()
    masters: MastersConfig = MastersConfig()
    clock: ClockConfig = ClockConfig()
    site: SiteConfig | None = None
    cameras: dict[DeviceName, CameraConfig] = Field(min_length=1)
    filter_wheels: dict[DeviceName, WheelConfig] = Field(default_factory=dict)
    flat_panels: dict[DeviceName, PanelConfig] = Field(default_factory=dict)
    mounts: dict[DeviceName, MountConfig] = Field(default_factory=dict)
    domes: dict[DeviceName, DomeConfig] = Field(default_factory=dict)
    safety: SafetyConfig | None = None
    daemon: DaemonConfig = DaemonConfig()
    schedules: list[ScheduleConfig] = Field(default_factory=list)

    def cross_check(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Problems between sections, as (key path, message): references that do not exist."""
        out: list[tuple[tuple[str | int, ...], str]] = []
        for name, cam in self.cameras.items():
            for field_name, ref, pool, what in (
                    ("filter_wheel", cam.filter_wheel, self.filter_wheels, "filter_wheels"),
                    ("flat_panel", cam.flat_panel, self.flat_panels, "flat_panels"),
                    ("mount", cam.mount, self.mounts, "mounts"),
                    ("dome", cam.dome, self.domes, "domes")):
                if ref is None:
                    continue
                if ref not in pool:
                    out.append((("cameras", name, field_name),
                                f"{ref!r} is not defined under {what}"))
                elif (pool[ref].driver == "simulator") != (cam.driver == "simulator"):
                    out.append((("cameras", name, field_name),
                                f"camera {name!r} and {what}.{ref} must both be simulated or "
                                "both real (a simulated panel or wheel lights only the "
                                "simulated sensor)"))
            if (cam.mount is not None or cam.dome is not None) and self.site is None:
                out.append((("cameras", name, "mount" if cam.mount else "dome"),
                            "a mount or dome needs the site (add site:)"))
        seen: set[str] = set()
        for i, s in enumerate(self.schedules):
            if s.name in seen:
                out.append((("schedules", i, "name"), f"schedule name {s.name!r} is used twice"))
            seen.add(s.name)
            if s.camera is not None and s.camera not in self.cameras:
                out.append((("schedules", i, "camera"), f"no camera named {s.camera!r} "
                            f"(configured: {', '.join(self.cameras)})"))
            if s.camera is None and len(self.cameras) > 1:
                out.append((("schedules", i), "several cameras are configured: name this "
                            "schedule's camera"))
            if isinstance(s, UnsafeSchedule) and self.safety is None:
                out.append((("schedules", i, "trigger"), "runs while unsafe, but no safety "
                            "monitor is configured (add safety:)"))
            if isinstance(s, TwilightSchedule) and self.site is None:
                out.append((("schedules", i, "trigger"), "follows the sun, but no site is "
                            "configured (add site:)"))
        return out


    @model_validator(mode="after")
    def _simulated_clock_needs_simulators(self) -> Config:
        """A simulated clock drives simulated cameras, or Alpaca ones: our Alpaca server
        (``calibd sim serve --alpaca``) runs the same simulated time when given the same
        ``--scale``, ``--start`` and ``--real-start``; or, with ``real_start`` given, INDI ones:
        our INDI doubles (``simulators/indi_doubles``) take the same three."""
        if self.clock.kind == "simulated":
            shared = ("simulator", "alpaca", *(("indi",) if self.clock.real_start else ()))
            real = [n for n, c in self.cameras.items() if c.driver not in shared]
            if real:
                raise ValueError(
                    f"a simulated clock only works with simulated cameras or those of the "
                    f"simulator's Alpaca server, or INDI doubles given its real_start "
                    f"({', '.join(real)} are real devices)"
                )
        return self


BUILTIN_CAMERA = "simulator"  # the built-in configuration's camera when a plan names none


def default_config() -> Config:
    """The built-in simulator ('simulator', small profile, a seven-filter wheel and a flip-flat
    panel, at 45° N 7° E) on a fast simulated clock; a plan naming ``camera:
    simulator-colour`` gets its colour twin (``small-colour``, RGGB) with the same wheel and
    panel."""
    accessories = {"offset": 50, "filter_wheel": "wheel", "flat_panel": "panel"}
    return Config.model_validate(
        {
            "clock": {"kind": "simulated", "scale": DEFAULT_SIM_SCALE},
            "site": DEFAULT_SITE,
            "cameras": {
                BUILTIN_CAMERA: {"driver": "simulator", "profile": "small", **accessories},
                "simulator-colour": {"driver": "simulator", "profile": "small-colour",
                                     **accessories}},
            "filter_wheels": {"wheel": {"driver": "simulator"}},
            "flat_panels": {"panel": {"driver": "simulator"}},
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
        config = Config.model_validate(located.data)
    except ValidationError as err:
        raise ConfigError(problems_from_validation(err, located)) from None
    problems = [located.problem(path, message) for path, message in config.cross_check()]
    if problems:
        raise ConfigError(problems)
    return config, located


def pick_camera(config: Config, wanted: str | None, located: Located | None) -> str:
    """The camera a plan runs on: ``wanted``, or the only one configured (without a
    configuration file: the built-in mono simulator). Raises ConfigError."""
    if wanted is not None:
        if wanted not in config.cameras:
            where = located if located is not None else Located(None, None)
            raise ConfigError([where.problem(("cameras",),
                                             f"no camera named {wanted!r} (configured: "
                                             f"{', '.join(config.cameras)})")])
        return wanted
    if len(config.cameras) == 1:
        return next(iter(config.cameras))
    if located is None and BUILTIN_CAMERA in config.cameras:  # no file: the built-in config
        return BUILTIN_CAMERA
    raise ConfigError([(located or Located(None, None)).problem(
        ("cameras",), "several cameras are configured: name one with --camera or the "
        "plan's 'camera' key")])
