"""``calibd plan from-lights DIR... [-o PLAN]``: what the lights need, what the library has for
them, and a plan for what is missing."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from calibd.capture.cli.common import library_from_args
from calibd.capture.cli.common import print_json
from calibd.capture.cli.common import table
from calibd.capture.errors import InputError
from calibd.capture.errors import Problem
from calibd.capture.library.atomic import write_text
from calibd.capture.library.masters_table import MasterRow
from calibd.capture.lights.plan import CameraPlan
from calibd.capture.lights.plan import build_plans
from calibd.capture.lights.plan import output_paths
from calibd.capture.lights.survey import KINDS
from calibd.capture.lights.survey import Survey
from calibd.capture.lights.survey import survey
from calibd.capture.plans.cells import fmt_number
from calibd.capture.plans.estimate import human_bytes
from calibd.capture.plans.estimate import human_duration
from calibd.capture.textsafe import shown

if TYPE_CHECKING:
    from calibd.capture.config import Config


def register(plan_sub: Any) -> None:
    p = plan_sub.add_parser(
        "from-lights", help="read light frames (FITS/XISF), say what the library can calibrate "
                            "them with, and write a plan for what is missing")
    p.add_argument("folders", type=Path, nargs="+", metavar="DIR", help="folders of lights")
    p.add_argument("-o", "--output", type=Path, metavar="PLAN",
                   help="write the plan here (one file per camera when there are several)")
    p.add_argument("--config", type=Path, metavar="FILE", help="configuration file")
    p.add_argument("--library", type=Path, metavar="DIR", help="library folder")
    p.add_argument("--tolerance", type=float, default=None, metavar="DEGC",
                   help="set-point tolerance for matching (default: the library policy's)")
    p.add_argument("--flat-source", choices=("panel", "sky"), default="panel",
                   help="how the planned flats are taken (default panel)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run_from_lights)


def _masters(root: Path, config: Config) -> tuple[list[MasterRow], dict[str, str], bool]:
    """The library's masters, those the policy no longer accepts (path -> why), and whether
    there is a library."""
    from calibd.capture.library.layout import INDEX_NAME
    from calibd.capture.library.policy import Item
    from calibd.capture.library.rescan import open_existing
    from calibd.capture.library.status import Judge

    if not (root / INDEX_NAME).is_file():
        return [], {}, False
    index = open_existing(root)
    try:
        masters = index.masters()
        judge = Judge(index, config.library.policy, None,
                      config.site.longitude_deg if config.site else None)
        invalid = {}
        for m in masters:
            v = judge(Item(kind=m.kind, camera=m.camera, camera_id=m.camera_id, gain=m.gain,
                           offset=m.offset, binning=m.binning, filter=m.filter,
                           date_obs=m.date_obs, run_id=m.run_id))
            if v.valid is False:
                invalid[m.path] = v.reason or "invalid"
        return masters, invalid, True
    finally:
        index.close()


def report(s: Survey, plans: list[CameraPlan], written: list[Path], root: Path,
           has_library: bool) -> dict[str, Any]:
    files: list[Path | None] = [*written] if written else [None] * len(plans)
    return {
        "library": str(root), "library_found": has_library, "truncated": s.truncated,
        "files": len(s.frames), "lights": len(s.usable),
        "problems": [{"file": str(f.path), "problems": f.problems}
                     for f in s.frames if f.problems],
        "skipped": [{"file": str(f.path), "reason": f.skipped} for f in s.frames if f.skipped],
        "notes": [{"file": str(f.path), "notes": f.notes} for f in s.frames if f.notes],
        "groups": [g.to_dict() for g in s.groups],
        "plans": [{"camera": p.camera, "name": p.name, "file": str(w) if w else None,
                   "cells": [{"key": c.key, "kind": c.kind, "count": c.count}
                             for c in p.resolved.cells],
                   "frames": p.resolved.frames, "wall_s": p.estimate.wall_s,
                   "exposure_s": p.estimate.exposure_s, "disk_bytes": p.estimate.disk_bytes,
                   "notes": p.notes}
                  for p, w in zip(plans, files, strict=True)],
    }


def run_from_lights(args: argparse.Namespace) -> int:
    missing = [Problem(d, None, "", "no such folder") for d in args.folders if not d.is_dir()]
    if missing:
        raise InputError(missing)
    if args.tolerance is not None and not 0 <= args.tolerance <= 20:
        raise InputError([Problem(None, None, "--tolerance", "must be 0..20 °C")])
    config, root = library_from_args(args)
    masters, invalid, has_library = _masters(root, config)
    policy = config.library.policy
    tolerance = args.tolerance if args.tolerance is not None else policy.setpoint_tolerance_c
    flat_age = policy.max_age_days.flat
    s = survey(list(args.folders), masters, tolerance_c=tolerance,
               flat_max_age_days=flat_age if isinstance(flat_age, float) else 1.0,
               invalid=invalid, dark_convention=config.masters.dark_convention)
    plans = build_plans(s, flat_source=args.flat_source)
    written: list[Path] = []
    if args.output is not None and plans:
        written = output_paths(args.output, plans)
        for p, path in zip(plans, written, strict=True):
            write_text(path, p.text)
    data = report(s, plans, written, root, has_library)
    if args.json:
        print_json(data)
    else:
        print_text(s, data)
    return 0


def print_text(s: Survey, d: dict[str, Any]) -> None:
    print(f"{d['files']} file(s), {d['lights']} usable light(s)"
          + (" (stopped at the file limit)" if d["truncated"] else "")
          + ("" if d["library_found"] else f"; no library at {d['library']}: nothing to match"))
    for f in s.frames:
        for p in f.problems:
            print(f"problem: {shown(f.path, 120)}: {p}")
        for n in f.notes:
            print(f"note: {shown(f.path, 120)}: {n}")
    rows = []
    for g in s.groups:
        st = g.settings
        rows.append([shown(st.camera, 24), str(st.gain), str(st.offset), str(st.binning),
                     shown(st.readout_mode or "", 12), f"{fmt_number(st.setpoint_c)} °C",
                     f"{fmt_number(g.exposure_s)} s", shown(g.filter or "", 12),
                     str(len(g.frames)), *[g.coverage(k) for k in KINDS]])
    if rows:
        print()
        print(table(rows, ["camera", "gain", "offset", "bin", "mode", "set-point", "exposure",
                           "filter", "lights", *KINDS], right={1, 2, 3, 8}))
    for p in d["plans"]:
        print()
        print(f"Plan {p['name']} ({len(p['cells'])} cells, {p['frames']:,} frames): about "
              f"{human_duration(p['wall_s'])}, {human_bytes(p['disk_bytes'])}"
              + (f" -> {p['file']}" if p["file"] else " (not written: give -o PLAN)"))
        for n in p["notes"]:
            print(f"  {n}")
    if not d["plans"] and s.groups:
        print("\nnothing missing: the library can calibrate every group")
