"""The capture-plan schema (pydantic v2, strict: unknown keys are errors).

A plan is a list of sets; each set is a matrix (gains x offsets x binnings x read-out modes x
set-points x exposures x filters) with a frame count per cell. Gains are numbers or names
(``unity``, ``min``, ``max`` or a name from the camera's gain list) resolved against the camera
later, in :mod:`capture.plans.resolve`.
"""

from __future__ import annotations

from typing import Annotated
from typing import Literal
from typing import Self

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import StrictBool
from pydantic import field_validator
from pydantic import model_validator

GainSpec = Annotated[int, Field(ge=0)] | Annotated[str, Field(min_length=1, max_length=32)]
Exposure = Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)]
SetPoint = Annotated[float, Field(ge=-100, le=60, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=100000)]
# Cells a set, and a whole plan, may expand to: far more than a full library needs (4 gains x
# 3 set-points x 12 exposures is 144) or `plan from-lights` writes, far less than would stall
# the planner (about 30 us and 2 KB a cell).
MAX_SET_CELLS = 10_000
MAX_PLAN_CELLS = 50_000
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Cooling(Strict):
    """When a set-point counts as reached, and what to do when it cannot be."""

    tolerance_c: float = Field(0.3, gt=0, le=5)  # two-sided: |T - set-point| <= tolerance
    dwell_s: float = Field(60.0, ge=0, le=3600)  # ... continuously for this long
    max_power_pct: float = Field(95.0, gt=0, le=100)  # ... with the cooler below this power
    timeout_s: float = Field(1800.0, gt=0, le=86400)  # per set-point change
    ramp_c_per_min: float = Field(5.0, gt=0, le=60)  # set-point ramp rate
    poll_s: float = Field(2.0, gt=0, le=60)
    unreachable: Literal["skip", "wait", "abort"] = "skip"
    wait_max_s: float = Field(6 * 3600.0, gt=0, le=7 * 86400)  # policy "wait": give up after
    frame_tolerance_c: float = Field(0.5, gt=0, le=10)  # allowed drift during an exposure


class Warmup(Strict):
    """Warm the sensor slowly at the end of a plan (thermal shock and frost on the window)."""

    enabled: StrictBool = True
    rate_c_per_min: float = Field(3.0, gt=0, le=60)
    target_c: float | None = Field(None, ge=-50, le=40)  # default: the ambient (heat sink)
    cooler_off: StrictBool = True

    def target_for(self, ambient_c: float | None, sensor_c: float) -> float:
        """Where the set-point is ramped to: ``target_c``; else the ambient (the camera
        configuration's ``ambient_c``, else the heat sink the camera reports); else 20 °C above
        the sensor. The run and its estimate both use this."""
        if self.target_c is not None:
            return self.target_c
        return ambient_c if ambient_c is not None else sensor_c + 20.0


class Checks(Strict):
    """Per-frame acceptance checks for bias and dark frames."""

    light_leak_adu: float = Field(50.0, gt=0)  # level above the cell's reference = light leak
    max_saturated_fraction: float = Field(0.001, ge=0, le=1)
    max_attempts_per_frame: int = Field(5, ge=1, le=100)


class Defaults(Strict):
    offset: int | None = Field(None, ge=0)
    binning: int = Field(1, ge=1, le=16)
    readout_mode: str | None = None


class _MatrixSet(Strict):
    gains: list[GainSpec] = Field(min_length=1, max_length=64)
    offsets: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=1, max_length=64)
    binnings: list[Annotated[int, Field(ge=1, le=16)]] | None = Field(None, min_length=1,
                                                                      max_length=16)
    readout_modes: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, min_length=1, max_length=16)
    setpoints_c: list[SetPoint] = Field(min_length=1, max_length=64)
    count: Count

    @field_validator("gains", "offsets", "binnings", "readout_modes", "setpoints_c")
    @classmethod
    def _no_repeats(cls, value: list[object] | None) -> list[object] | None:
        if value is not None:
            seen: set[object] = set()
            for v in value:
                if v in seen:
                    raise ValueError(f"{v!r} is listed twice")
                seen.add(v)
        return value

    def cells_per_setting(self) -> int:
        """Cells per gain, offset, binning, read-out mode and set-point (exposures, filters)."""
        return 1

    def cell_count(self) -> int:
        """How many cells the set expands to (for a sensor set, an upper bound)."""
        return (len(self.gains) * len(self.offsets or [0]) * len(self.binnings or [1])
                * len(self.readout_modes or [""]) * len(self.setpoints_c)
                * self.cells_per_setting())

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        n = self.cell_count()
        if n > MAX_SET_CELLS:
            raise ValueError(f"this set expands to {n:,} cells (its lists multiplied); at most "
                             f"{MAX_SET_CELLS:,} per set: split it or shorten its lists")
        return self


class BiasSet(_MatrixSet):
    kind: Literal["bias"]
    exposure_s: Exposure | None = None  # default: the camera's shortest exposure


class DarkSet(_MatrixSet):
    kind: Literal["dark"]
    exposures_s: list[Exposure] = Field(min_length=1, max_length=256)

    def cells_per_setting(self) -> int:
        return len(self.exposures_s)

    @field_validator("exposures_s")
    @classmethod
    def _unique_exposures(cls, value: list[float]) -> list[float]:
        if len(set(value)) != len(value):
            raise ValueError("an exposure is listed twice")
        return value


class PanelOptions(Strict):
    mode: Literal["exposure", "brightness"] = "exposure"
    brightness: int | None = Field(None, ge=0)  # mode "exposure": fixed brightness (default max/2)
    exposure_s: Exposure | None = None  # mode "brightness": fixed exposure for every filter


class SkyPointing(Strict):
    """Where and how a mount points for sky flats (used when the camera has a mount)."""

    alt_deg: float = Field(75.0, ge=30, le=90)  # the flat spot's altitude
    az_from_sun_deg: float = Field(180.0, ge=0, lt=360)  # azimuth = the sun's + this
    stars: Literal["tracking-off", "dither"] = "tracking-off"  # how stars move between frames
    dither_arcmin: float = Field(15.0, ge=10, le=120)  # offset between frames ("dither")
    repoint_s: float = Field(300.0, ge=30, le=3600)  # follow the sun this often (clock s)
    open_timeout_s: float = Field(300.0, gt=0, le=3600)  # unpark + open the dome/roof
    close_timeout_s: float = Field(300.0, gt=0, le=3600)  # stop + close + park


class SkyOptions(Strict):
    twilight: Literal["dusk", "dawn", "next"] = "next"
    # The window in sun altitude, brighter edge first.
    sun_altitude_deg: tuple[float, float] = Field((-2.0, -10.0), strict=False)
    pointing: SkyPointing = SkyPointing()


class DarkFlatOptions(Strict):
    count: Count | None = None
    use_master_bias: StrictBool = False

    @model_validator(mode="after")
    def _one(self) -> DarkFlatOptions:
        if (self.count is None) == (not self.use_master_bias):
            raise ValueError("give either count (take dark flats) or use_master_bias: true")
        return self


class FlatSet(_MatrixSet):
    kind: Literal["flat"]
    source: Literal["panel", "sky"]
    filters: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(min_length=1,
                                                                              max_length=64)
    target_adu: float | None = Field(None, gt=0, le=65535)
    target_fraction: float | None = Field(None, gt=0, lt=1)
    tolerance_pct: float = Field(10.0, gt=0, le=50)
    # Colour sensors: the weakest CFA channel must reach this many ADU above the bias.
    min_channel_adu: float = Field(1000.0, ge=0, le=65535)
    min_exposure_s: Exposure = 0.01
    max_exposure_s: Exposure = 30.0
    panel: PanelOptions = PanelOptions()
    sky: SkyOptions = SkyOptions()
    dark_flats: DarkFlatOptions | None = None

    def cells_per_setting(self) -> int:
        return len(self.filters)

    @model_validator(mode="after")
    def _check(self) -> FlatSet:
        if self.target_adu is not None and self.target_fraction is not None:
            raise ValueError("give target_adu or target_fraction, not both")
        if self.min_exposure_s >= self.max_exposure_s:
            raise ValueError("min_exposure_s must be below max_exposure_s")
        return self


class DarkFlatSet(_MatrixSet):
    kind: Literal["darkflat"]
    exposures_s: list[Exposure] = Field(min_length=1, max_length=256)

    def cells_per_setting(self) -> int:
        return len(self.exposures_s)


class LadderOptions(Strict):
    """The flat ladder of a sensor set: panel flats at ``levels`` signal levels, from
    ``min_signal_adu`` above the bias to ``beyond`` times the signal where the sensor saturates,
    by exposure at one panel brightness (found with the flat search at half the saturation).
    Without ``beyond`` the plan resolves it against the camera
    (:func:`capture.plans.resolve.ladder_beyond`: 1.3 mono, 4 colour)."""

    levels: int = Field(20, ge=12, le=64)
    min_signal_adu: float = Field(300.0, gt=0, le=60000)
    beyond: float | None = Field(None, gt=1.1, le=4)
    filter: str | None = Field(None, min_length=1, max_length=32)
    brightness: int | None = Field(None, ge=0)  # default: half the panel's maximum
    min_exposure_s: Exposure = 0.0001  # a panel dimmed by PWM may need more: lower brightness
    max_exposure_s: Exposure = 120.0

    @model_validator(mode="after")
    def _check(self) -> LadderOptions:
        if self.min_exposure_s >= self.max_exposure_s:
            raise ValueError("min_exposure_s must be below max_exposure_s")
        return self


class SensorSet(_MatrixSet):
    """Frames for the photon-transfer analysis (``calibd sensor analyze``), per gain, offset,
    binning and read-out mode: ``count`` frames (pairs) of bias, of a flat ladder on the panel
    (with dark flats at its exposures) and of darks at several exposures. The ladder and the
    offset sweep are taken at the first set-point; bias and darks at every set-point (the
    dark-current model fits the doubling temperature across them)."""

    kind: Literal["sensor"]
    count: Count = Field(2, ge=2, le=100)
    flats: LadderOptions = LadderOptions()
    dark_exposures_s: list[Exposure] = Field(default_factory=lambda: [60.0, 300.0, 900.0],
                                             min_length=2, max_length=16)
    offset_sweep: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=2,
                                                                   max_length=64)

    def cells_per_setting(self) -> int:
        return 1 + self.flats.levels + len(self.dark_exposures_s) + len(self.offset_sweep or [])

    @field_validator("dark_exposures_s", "offset_sweep")
    @classmethod
    def _unique_values(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a value is listed twice")
        return value


AnySet = Annotated[BiasSet | DarkSet | FlatSet | DarkFlatSet | SensorSet,
                   Field(discriminator="kind")]


class Plan(Strict):
    """A whole plan file."""

    version: Literal[1] = 1
    name: Name | None = None  # default: the file name without .yaml
    description: str = ""
    camera: str | None = None  # camera name in the configuration; default: the only camera
    folder: str | None = Field(None, min_length=1, max_length=200)  # sub-folder of the library
    defaults: Defaults = Defaults()
    cooling: Cooling = Cooling()
    warmup: Warmup = Warmup()
    checks: Checks = Checks()
    sets: list[AnySet] = Field(min_length=1, max_length=1000)

    @field_validator("sets")
    @classmethod
    def _bounded(cls, sets: list[AnySet]) -> list[AnySet]:
        n = sum(s.cell_count() for s in sets)
        if n > MAX_PLAN_CELLS:
            raise ValueError(f"the plan expands to {n:,} cells; at most {MAX_PLAN_CELLS:,}: "
                             "split it into several plans")
        return sets


SET_MODELS: dict[str, type[Strict]] = {
    "bias": BiasSet,
    "dark": DarkSet,
    "flat": FlatSet,
    "darkflat": DarkFlatSet,
    "sensor": SensorSet,
}
