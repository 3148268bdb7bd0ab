"""Check, before anything runs, that a plan's flat sets have the devices they need."""

from __future__ import annotations

from calibd.capture.devices import Setup
from calibd.capture.errors import PlanError
from calibd.capture.errors import Problem
from calibd.capture.plans.model import FlatSet
from calibd.capture.plans.model import SensorSet
from calibd.capture.plans.resolve import ResolvedPlan
from calibd.capture.yamlsrc import Located


def check_flat_devices(plan: ResolvedPlan, located: Located, setup: Setup) -> None:
    """Raise PlanError (file, line, key) for flat sets the configured devices cannot serve."""
    problems: list[Problem] = []
    for i, s in enumerate(plan.plan.sets):
        base = ("sets", i)
        if isinstance(s, SensorSet):
            problems.extend(_sensor_problems(s, located, setup, i))
            continue
        if not isinstance(s, FlatSet):
            continue
        if s.source == "panel" and setup.panel is None:
            problems.append(located.problem((*base, "source"),
                                            f"panel flats need a flat panel: camera "
                                            f"{setup.name!r} has none in the configuration"))
        if s.source == "sky" and setup.site is None:
            problems.append(located.problem((*base, "source"),
                                            "sky flats need the site (latitude, longitude) in the "
                                            "configuration"))
        if s.source == "sky" and s.dark_flats is not None and s.dark_flats.count and (
                setup.panel is None or not setup.panel.has_cover):
            problems.append(located.problem((*base, "dark_flats"),
                                            "dark flats after sky flats need a cover to close; "
                                            "use use_master_bias: true instead"))
        if s.panel.mode == "brightness" and s.panel.exposure_s is None:
            problems.append(located.problem((*base, "panel"),
                                            "panel mode 'brightness' needs panel.exposure_s "
                                            "(the one exposure every filter uses)"))
        if setup.wheel is None:
            if len(s.filters) > 1:
                problems.append(located.problem((*base, "filters"),
                                                f"{len(s.filters)} filters but camera "
                                                f"{setup.name!r} has no filter wheel"))
            continue
        names = setup.wheel.names
        for fi, name in enumerate(s.filters):
            if name not in names:
                problems.append(located.problem((*base, "filters", fi),
                                                f"no filter named {name!r} in the wheel "
                                                f"({', '.join(names)})"))
    if problems:
        raise PlanError(problems)


def _sensor_problems(s: SensorSet, located: Located, setup: Setup, i: int) -> list[Problem]:
    """A sensor set's flat ladder needs the panel (and its filter, when it names one)."""
    base = ("sets", i)
    out: list[Problem] = []
    if setup.panel is None:
        out.append(located.problem((*base, "kind"), "a sensor set takes flats on a flat panel: "
                                   f"camera {setup.name!r} has none in the configuration"))
    name = s.flats.filter
    if name is not None and (setup.wheel is None or name not in setup.wheel.names):
        out.append(located.problem((*base, "flats", "filter"),
                                   f"no filter named {name!r} in the camera's filter wheel"))
    return out
