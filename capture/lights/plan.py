"""The capture plan for what a survey of lights found missing, with its time and disk estimate.

One plan per camera. Its sets hold exactly the missing cells: per settings (gain, offset,
binning, read-out mode, set-point) one bias set, one dark set with the missing exposures and
one flat set with the missing filters, so the plan's matrix adds no cell the lights do not
need. Covered by a fallback (a scaled dark, another gain's flat) is not missing and is not
planned; the report says so. The plan text is loaded back through the plan schema and resolved
against a camera description made from the lights, so what is written is a valid plan and the
estimate is :func:`capture.plans.estimate.estimate`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from calibd.capture.lights.survey import Group
from calibd.capture.lights.survey import Settings
from calibd.capture.lights.survey import Survey
from calibd.capture.plans.estimate import Estimate
from calibd.capture.plans.estimate import estimate
from calibd.capture.plans.load import load_plan
from calibd.capture.plans.resolve import CameraContext
from calibd.capture.plans.resolve import ResolvedPlan
from calibd.capture.plans.resolve import resolve
from calibd.capture.textsafe import shown
from calibd.drivers.contracts import CameraInfo

# Frames per cell (the primer: 40-50 bias, 10-30 darks, 20-30 flats).
BIAS_COUNT = 50
DARK_COUNT = 20
FLAT_COUNT = 25
BIAS_EXPOSURE_S = 0.001  # the shortest exposure, about 1 ms, when the camera is not connected
LACKING = ("missing", "stale")  # coverage that the plan captures


@dataclass
class Needs:
    """Missing cells of one camera: bias per settings, dark exposures and flat filters."""

    camera: str
    bias: set[Settings] = field(default_factory=set)
    darks: dict[Settings, set[float]] = field(default_factory=dict)
    flats: dict[Settings, set[str]] = field(default_factory=dict)
    flats_without_filter: set[Settings] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (self.bias or self.darks or self.flats)


@dataclass
class CameraPlan:
    camera: str
    name: str
    text: str  # the plan file's YAML
    resolved: ResolvedPlan
    estimate: Estimate
    size_known: bool
    notes: list[str]


def needs(survey: Survey) -> dict[str, Needs]:
    """Per camera, the cells the groups miss."""
    out: dict[str, Needs] = {}
    for g in survey.groups:
        n = out.setdefault(g.settings.camera, Needs(g.settings.camera))
        if g.coverage("bias") in LACKING:
            n.bias.add(g.settings)
        if g.coverage("dark") in LACKING:
            n.darks.setdefault(g.settings, set()).add(g.exposure_s)
        if g.coverage("flat") in LACKING:
            if g.filter is None:
                n.flats_without_filter.add(g.settings)
            else:
                n.flats.setdefault(g.settings, set()).add(g.filter)
    return out


def slug(camera: str) -> str:
    """A camera name as a plan-name and file-name part (letters, digits, ``.+-_``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", camera).strip("-._+")[:40] or "camera"


def _matrix(s: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {"gains": [s.gain]}
    if s.offset is not None:
        out["offsets"] = [s.offset]
    out["binnings"] = [s.binning]
    if s.readout_mode is not None:
        out["readout_modes"] = [s.readout_mode]
    out["setpoints_c"] = [s.setpoint_c]
    return out


def _order(s: Settings) -> tuple[Any, ...]:
    return (-s.setpoint_c, s.gain, s.offset or 0, s.binning, s.readout_mode or "")


def plan_document(n: Needs, *, flat_source: str = "panel") -> dict[str, Any]:
    """The plan (as data) that captures ``n``'s cells and nothing else."""
    sets: list[dict[str, Any]] = []
    for s in sorted(n.bias, key=_order):
        sets.append({"kind": "bias", **_matrix(s), "count": BIAS_COUNT})
    for s in sorted(n.darks, key=_order):
        sets.append({"kind": "dark", **_matrix(s), "exposures_s": sorted(n.darks[s]),
                     "count": DARK_COUNT})
    for s in sorted(n.flats, key=_order):
        sets.append({"kind": "flat", "source": flat_source, **_matrix(s),
                     "filters": sorted(n.flats[s]), "count": FLAT_COUNT})
    return {"version": 1, "name": f"from-lights-{slug(n.camera)}",
            "description": f"What the lights of {shown(n.camera, 60)} need and the library "
                           "lacks (calibd plan from-lights)",
            "sets": sets}


def camera_info(camera: str, groups: list[Group]) -> tuple[CameraInfo, bool]:
    """A camera description from its lights (unbinned size, binnings, read-out modes) for
    resolving and estimating the plan; second value: whether the image size was known."""
    frames = [f for g in groups for f in g.frames]
    widths = [f.width * f.binning for f in frames if f.width]
    heights = [f.height * f.binning for f in frames if f.height]
    modes = sorted({g.settings.readout_mode for g in groups if g.settings.readout_mode})
    return CameraInfo(
        model=camera, camera_id=camera, width=max(widths, default=0),
        height=max(heights, default=0), bit_depth=16, pixel_size_um=0.0, gain_min=0,
        gain_max=100000, offset_min=0, offset_max=100000, min_exposure_s=BIAS_EXPOSURE_S,
        max_exposure_s=86400.0, has_cooler=True, readout_modes=(*modes, "default"),
        binnings=tuple(sorted({g.settings.binning for g in groups})),
    ), bool(widths and heights)


def build_plans(survey: Survey, *, flat_source: str = "panel") -> list[CameraPlan]:
    """A plan per camera that misses anything; the text is checked by loading it back."""
    plans = []
    for camera, n in sorted(needs(survey).items()):
        if n.empty:
            continue
        doc = plan_document(n, flat_source=flat_source)
        text = ("# Written by `calibd plan from-lights`: the cells the lights need that the "
                "library lacks.\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=False,
                                         default_flow_style=None))
        groups = [g for g in survey.groups if g.settings.camera == camera]
        info, size_known = camera_info(camera, groups)
        plan, located = load_plan(Path(f"{doc['name']}.yaml"), text=text)
        resolved = resolve(plan, located, CameraContext(info=info, default_offset=0))
        notes = []
        if not size_known:
            notes.append("image size unknown (no NAXIS1/NAXIS2): disk estimate is headers only")
        if any(s.offset is None for s in n.bias | set(n.darks) | set(n.flats)):
            notes.append("some lights carry no OFFSET: the camera's configured offset is used")
        for s in sorted(n.flats_without_filter, key=_order):
            notes.append(f"lights without a filter at gain {s.gain}, bin {s.binning} have no "
                         "flat: add a flat set for them by hand")
        plans.append(CameraPlan(camera, doc["name"], text, resolved,
                                estimate(resolved, info, None), size_known, notes))
    return plans


def output_paths(out: Path, plans: list[CameraPlan]) -> list[Path]:
    """``out`` for one plan; ``<stem>-<camera><suffix>`` beside it for several."""
    if len(plans) == 1:
        return [out]
    paths: list[Path] = []
    for p in plans:
        path = out.with_name(f"{out.stem}-{slug(p.camera)}{out.suffix or '.yaml'}")
        n = 2
        while path in paths:  # two camera names with the same slug
            path = out.with_name(f"{out.stem}-{slug(p.camera)}-{n}{out.suffix or '.yaml'}")
            n += 1
        paths.append(path)
    return paths
