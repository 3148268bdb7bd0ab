"""Expand a validated plan into cells for one concrete camera, checking what only the camera knows.

Named gains resolve here (configured value, else the camera's own value, else a built-in table of
common models, else an error), and every value is checked against the camera's ranges. Every
problem is reported with file, line and key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from pathlib import Path
from pathlib import PurePosixPath

from calibd.capture import cfa
from calibd.capture.errors import PlanError
from calibd.capture.errors import Problem
from calibd.capture.plans.cells import Cell
from calibd.capture.plans.cells import Ladder
from calibd.capture.plans.cells import fmt_number
from calibd.capture.plans.cells import run_order
from calibd.capture.plans.model import BiasSet
from calibd.capture.plans.model import Checks
from calibd.capture.plans.model import Cooling
from calibd.capture.plans.model import DarkFlatOptions
from calibd.capture.plans.model import DarkFlatSet
from calibd.capture.plans.model import DarkSet
from calibd.capture.plans.model import FlatSet
from calibd.capture.plans.model import LadderOptions
from calibd.capture.plans.model import PanelOptions
from calibd.capture.plans.model import Plan
from calibd.capture.plans.model import SensorSet
from calibd.capture.plans.model import Warmup
from calibd.capture.yamlsrc import KeyPath
from calibd.capture.yamlsrc import Located
from calibd.drivers.contracts import CameraInfo

# Unity gain (1 e-/ADU) of common ZWO models, by the model number.
UNITY_GAINS: dict[str, int] = {
    "2600": 100,
    "294": 120,
    "1600": 139,
    "183": 111,
    "533": 100,
    "071": 90,
    "6200": 100,
    "224": 135,
    "290": 110,
}

# How far beyond saturation a sensor set's flat ladder goes when the plan does not say: on a
# colour sensor the ladder follows the brightest CFA channel, and red and blue saturate later.
LADDER_BEYOND_MONO = 1.3
LADDER_BEYOND_COLOUR = 4.0


@dataclass(frozen=True)
class CameraContext:
    """What the configuration and the connected camera tell the resolver."""

    info: CameraInfo
    unity_gain: int | None = None  # configured override
    default_offset: int | None = None  # configured default
    ambient_c: float | None = None  # for the reachability check; None = unknown
    measured_unity_gain: int | None = None  # where the sensor analysis measured 1 e-/ADU


@dataclass(frozen=True)
class RunPolicy:
    """The plan-wide rules every cell of a run is captured under, resolved once."""

    cooling: Cooling
    checks: Checks
    warmup: Warmup
    folder: str | None  # sub-folder of the library


@dataclass
class ResolvedPlan:
    plan: Plan
    name: str
    source: Path | None
    cells: list[Cell]  # in run order
    warnings: list[str] = field(default_factory=list)
    policy: RunPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.policy = RunPolicy(self.plan.cooling, self.plan.checks, self.plan.warmup,
                                self.plan.folder)

    @property
    def frames(self) -> int:
        return sum(c.count for c in self.cells)

    @property
    def total_exposure_s(self) -> float:
        return sum(c.total_exposure_s for c in self.cells)


def unity_gain_for(ctx: CameraContext) -> int | None:
    """The unity gain: configured, else measured (``calibd sensor analyze``), else what the
    camera reports, else the table of common models."""
    if ctx.unity_gain is not None:
        return ctx.unity_gain
    if ctx.measured_unity_gain is not None:
        return ctx.measured_unity_gain
    if ctx.info.unity_gain is not None:
        return ctx.info.unity_gain
    match = re.search(r"ASI\s*(\d{3,4})", ctx.info.model.upper())
    return UNITY_GAINS.get(match.group(1)) if match else None


def resolve_gain(spec: int | str, ctx: CameraContext) -> tuple[int, str]:
    """Return (gain value, label). Raises ValueError with a readable reason."""
    info = ctx.info
    if isinstance(spec, int):
        value, label = spec, str(spec)
    else:
        name = spec.strip()
        lowered = name.lower()
        if name in info.gain_names:  # a device's own list may hold numbers as names
            value, label = info.gain_names.index(name), name
        elif re.fullmatch(r"\d+", name):
            value, label = int(name), name
        elif lowered == "unity":
            unity = unity_gain_for(ctx)
            if unity is None:
                raise ValueError(
                    f"the unity gain of {info.model!r} is unknown: set unity_gain for this "
                    "camera in the configuration, or give the gain as a number"
                )
            value, label = unity, "unity"
        elif lowered in ("min", "lowest"):
            value, label = info.gain_min, lowered
        elif lowered in ("max", "highest"):
            value, label = info.gain_max, lowered
        else:
            known = ["unity", "min", "max", *info.gain_names]
            raise ValueError(f"unknown named gain {name!r} (known: {', '.join(known)})")
    if not info.gain_min <= value <= info.gain_max:
        raise ValueError(
            f"gain {label} = {value} is outside the camera's range "
            f"{info.gain_min}..{info.gain_max}"
        )
    return value, label


def check_folder(folder: str) -> str | None:
    """Why ``folder`` may not be used as a library sub-folder, or None when it is fine."""
    p = PurePosixPath(folder.replace("\\", "/"))
    if p.is_absolute() or re.match(r"^[A-Za-z]:", folder):
        return "must be a relative path inside the library"
    if any(part == ".." for part in p.parts):
        return "must stay inside the library (no '..')"
    if any(part.startswith(".") for part in p.parts):
        return "parts may not start with '.'"
    return None


def resolve(plan: Plan, located: Located, ctx: CameraContext) -> ResolvedPlan:
    """Expand ``plan`` into cells for the camera in ``ctx``. Raises PlanError."""
    problems: list[Problem] = []
    info = ctx.info
    cells: list[Cell] = []
    seen: dict[str, KeyPath] = {}

    def bad(path: KeyPath, message: str) -> None:
        problems.append(located.problem(path, message))

    if plan.folder is not None:
        reason = check_folder(plan.folder)
        if reason:
            bad(("folder",), f"{plan.folder!r} {reason}")

    for si, s in enumerate(plan.sets):
        base: KeyPath = ("sets", si)
        gains: list[tuple[int, str]] = []
        for gi, spec in enumerate(s.gains):
            try:
                gains.append(resolve_gain(spec, ctx))
            except ValueError as err:
                bad((*base, "gains", gi), str(err))
        offsets = s.offsets or [
            o for o in (plan.defaults.offset, ctx.default_offset) if o is not None
        ][:1]
        if not offsets:
            bad((*base,), "no offset given: add offsets to this set, defaults.offset to the plan, "
                "or an offset for this camera in the configuration")
        for oi, off in enumerate(offsets):
            if not info.offset_min <= off <= info.offset_max:
                key = (*base, "offsets", oi) if s.offsets else ("defaults", "offset")
                bad(key, f"offset {off} is outside the camera's range "
                         f"{info.offset_min}..{info.offset_max}")
        binnings = s.binnings or [plan.defaults.binning]
        for bi, b in enumerate(binnings):
            if b not in info.binnings:
                key = (*base, "binnings", bi) if s.binnings else ("defaults", "binning")
                bad(key, f"binning {b} is not offered (camera bins: {list(info.binnings)})")
        modes = s.readout_modes or [plan.defaults.readout_mode or info.readout_modes[0]]
        for mi, mode in enumerate(modes):
            if mode not in info.readout_modes:
                key = (*base, "readout_modes", mi) if s.readout_modes else \
                    ("defaults", "readout_mode")
                bad(key, f"read-out mode {mode!r} unknown (camera modes: "
                         f"{', '.join(info.readout_modes)})")
        for pi, sp in enumerate(s.setpoints_c):
            reason = _setpoint_problem(sp, ctx)
            if reason:
                bad((*base, "setpoints_c", pi), reason)
        if isinstance(s, SensorSet):
            _check_sensor_set(s, info, base, bad)
        else:
            exposures = _exposures(s, info, base, bad)
            filters: list[str | None] = list(s.filters) if isinstance(s, FlatSet) else [None]
            flat_set = s if isinstance(s, FlatSet) else None
        for (gain, label) in gains:
            for off in offsets:
                for b in binnings:
                    for mode in modes:
                        base_cell = Cell(kind="bias", gain=gain, offset=off, binning=b,
                                         readout_mode=mode, setpoint_c=s.setpoints_c[0],
                                         exposure_s=0.0, count=s.count, gain_label=label,
                                         set_index=si)
                        if isinstance(s, SensorSet):
                            candidates = sensor_cells(s, base_cell, info)
                        else:
                            candidates = [
                                replace(base_cell, kind=s.kind, setpoint_c=sp, exposure_s=exp,
                                        filter=flt, flat_set=flat_set)
                                for sp in s.setpoints_c for exp in exposures for flt in filters]
                        for cell in candidates:
                            if cell.key in seen:
                                other = seen[cell.key]
                                bad(base, f"duplicate cell ({cell.describe()}): it is "
                                          f"already in sets[{other[1]}] (line "
                                          f"{located.line_of(other)})")
                                continue
                            seen[cell.key] = base
                            cells.append(cell)
    if problems:
        raise PlanError(_dedupe(problems))
    name = plan.name or (located.file.stem if located.file else "plan")
    return ResolvedPlan(plan=plan, name=name, source=located.file, cells=run_order(cells))


def _exposures(
    s: BiasSet | DarkSet | FlatSet | DarkFlatSet,
    info: CameraInfo,
    base: KeyPath,
    bad: Callable[[KeyPath, str], None],
) -> list[float]:
    if isinstance(s, BiasSet):
        exp = s.exposure_s if s.exposure_s is not None else info.min_exposure_s
        if s.exposure_s is not None and not info.min_exposure_s <= exp <= info.max_exposure_s:
            bad((*base, "exposure_s"), _range_text(exp, info))
        return [exp]
    if isinstance(s, DarkSet | DarkFlatSet):
        for ei, exp in enumerate(s.exposures_s):
            if exp < info.min_exposure_s:
                bad((*base, "exposures_s", ei),
                    f"{fmt_number(exp)} s is shorter than the camera's minimum exposure "
                    f"{fmt_number(info.min_exposure_s)} s")
            elif exp > info.max_exposure_s:
                bad((*base, "exposures_s", ei), _range_text(exp, info))
        return list(s.exposures_s)
    # Flats find their exposure at run time; the cell records 0 until then.
    if s.max_exposure_s > info.max_exposure_s:
        bad((*base, "max_exposure_s"), _range_text(s.max_exposure_s, info))
    return [0.0]


def ladder_beyond(options: LadderOptions, info: CameraInfo) -> tuple[float, str]:
    """Return (``beyond``, where it came from) for a sensor set's flat ladder on this camera:
    the plan's value, else :data:`LADDER_BEYOND_COLOUR` for a colour camera (a Bayer mosaic the
    analysis splits into channels), else :data:`LADDER_BEYOND_MONO`."""
    if options.beyond is not None:
        return options.beyond, "plan"
    pattern = cfa.normalize(info.bayer_pattern)
    if pattern is not None:
        return LADDER_BEYOND_COLOUR, f"default for a colour camera, {pattern}"
    return LADDER_BEYOND_MONO, "default for a mono camera"


def sensor_cells(s: SensorSet, base: Cell, info: CameraInfo) -> list[Cell]:
    """The ordinary cells a sensor set makes at one gain, offset, binning and read-out mode
    (``base``): at every set-point bias and darks at each of ``dark_exposures_s``; at the
    first, the flat ladder (panel flats with dark flats at their exposures; its ``beyond``
    from :func:`ladder_beyond`) and the offset sweep (bias at the shortest exposure). Every
    one is marked :attr:`Cell.sensor` (its frames feed no master)."""
    first = s.setpoints_c[0]
    base = replace(base, sensor=True)
    ladder = s.flats
    flat_set = FlatSet(kind="flat", source="panel", filters=[ladder.filter or "none"],
                       gains=[base.gain], setpoints_c=[first], count=s.count,
                       min_exposure_s=ladder.min_exposure_s,
                       max_exposure_s=ladder.max_exposure_s,
                       panel=PanelOptions(mode="exposure", brightness=ladder.brightness),
                       dark_flats=DarkFlatOptions(count=s.count))
    bias = replace(base, kind="bias", exposure_s=info.min_exposure_s)
    out: list[Cell] = []
    for sp in s.setpoints_c:
        out.append(replace(bias, setpoint_c=sp))
        out.extend(replace(base, kind="dark", setpoint_c=sp, exposure_s=e)
                   for e in s.dark_exposures_s)
    beyond, beyond_from = ladder_beyond(ladder, info)
    out.extend(replace(base, kind="flat", setpoint_c=first, filter=ladder.filter,
                       flat_set=flat_set, ladder=Ladder(i, ladder, beyond, beyond_from))
               for i in range(ladder.levels))
    out.extend(replace(bias, setpoint_c=first, offset=o)
               for o in s.offset_sweep or [] if o != base.offset)
    return out


def _check_sensor_set(s: SensorSet, info: CameraInfo, base: KeyPath,
                      bad: Callable[[KeyPath, str], None]) -> None:
    for ei, exp in enumerate(s.dark_exposures_s):
        if not info.min_exposure_s <= exp <= info.max_exposure_s:
            bad((*base, "dark_exposures_s", ei), _range_text(exp, info))
    if s.flats.max_exposure_s > info.max_exposure_s:
        bad((*base, "flats", "max_exposure_s"), _range_text(s.flats.max_exposure_s, info))
    for oi, off in enumerate(s.offset_sweep or []):
        if not info.offset_min <= off <= info.offset_max:
            bad((*base, "offset_sweep", oi), f"offset {off} is outside the camera's range "
                                            f"{info.offset_min}..{info.offset_max}")


def _range_text(exp: float, info: CameraInfo) -> str:
    return (f"exposure {fmt_number(exp)} s is outside the camera's range "
            f"{fmt_number(info.min_exposure_s)}..{fmt_number(info.max_exposure_s)} s")


def _setpoint_problem(sp: float, ctx: CameraContext) -> str | None:
    info = ctx.info
    if not info.has_cooler:
        return "this camera has no cooler, so it cannot hold a set-point"
    if info.min_setpoint_c is not None and sp < info.min_setpoint_c:
        return (f"set-point {fmt_number(sp)} °C is below the camera's limit "
                f"{fmt_number(info.min_setpoint_c)} °C")
    if info.max_setpoint_c is not None and sp > info.max_setpoint_c:
        return (f"set-point {fmt_number(sp)} °C is above the camera's limit "
                f"{fmt_number(info.max_setpoint_c)} °C")
    if ctx.ambient_c is not None and info.cooler_max_delta_c is not None:
        coldest = ctx.ambient_c - info.cooler_max_delta_c
        if sp < coldest:
            return (f"set-point {fmt_number(sp)} °C cannot be reached: the cooler pulls at most "
                    f"{fmt_number(info.cooler_max_delta_c)} °C below ambient "
                    f"({fmt_number(ctx.ambient_c)} °C now), so {fmt_number(coldest)} °C "
                    "is the coldest it can hold")
    return None


def _dedupe(problems: list[Problem]) -> list[Problem]:
    out: list[Problem] = []
    for p in problems:
        if p not in out:
            out.append(p)
    return out
