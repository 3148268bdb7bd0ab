"""``calibd library status`` (coverage: planned vs done per cell) and ``calibd library rescan``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from calibd.capture.cli.common import add_config_args
from calibd.capture.cli.common import command_group
from calibd.capture.cli.common import library_from_args
from calibd.capture.cli.common import light_lines
from calibd.capture.cli.common import print_json
from calibd.capture.cli.common import read_light_frame
from calibd.capture.cli.common import table
from calibd.capture.errors import LibraryError
from calibd.capture.library.index import Index
from calibd.capture.library.rescan import open_existing
from calibd.capture.library.rescan import rescan
from calibd.capture.library.status import status_data
from calibd.capture.plans.cells import fmt_number
from calibd.capture.plans.estimate import human_bytes
from calibd.capture.textsafe import shown


def register(sub: Any) -> None:
    lib_sub = command_group(sub, "library", "the calibration library")
    status = lib_sub.add_parser("status", help="coverage: planned vs done per cell, per run")
    add_config_args(status, camera=False)
    status.add_argument("--run", type=int, metavar="ID", help="only this run")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=run_status)
    match = lib_sub.add_parser("match", help="the masters that calibrate a light frame, and why")
    match.add_argument("light", type=Path, metavar="LIGHT.fits")
    add_config_args(match, camera=False)
    match.add_argument("--tolerance", type=float, default=1.0, metavar="DEGC",
                       help="set-point tolerance (default 1 °C)")
    match.add_argument("--strict", action="store_true",
                       help="exit 1 when a bias, dark or flat is missing, or the light's "
                            "header is contradictory or lacks what matching needs")
    match.add_argument("--json", action="store_true")
    match.set_defaults(handler=run_match)
    scan = lib_sub.add_parser("rescan", help="rebuild the index from the FITS headers")
    add_config_args(scan, camera=False)
    scan.add_argument("--json", action="store_true")
    scan.set_defaults(handler=run_rescan)
    from calibd.capture.cli import cmd_invalidate

    cmd_invalidate.register(lib_sub)


def _open(args: argparse.Namespace) -> tuple[Path, Index]:
    _, root = library_from_args(args)
    return root, open_existing(root)


def _span(span: tuple[float, float] | None) -> str:
    """Exposure(s) a flat cell was taken at: "1.225 s", "0.38-0.48 s", or "auto" (none yet)."""
    if not span or span[0] is None:
        return "auto"
    lo, hi = span
    if abs(hi - lo) < 1e-9:
        return f"{lo:.4g} s"
    return f"{lo:.3g}-{hi:.3g} s"


def run_status(args: argparse.Namespace) -> int:
    config, root = library_from_args(args)
    index = open_existing(root)
    try:
        data = status_data(root, index, args.run, policy=config.library.policy,
                           longitude_deg=config.site.longitude_deg if config.site else None)
    finally:
        index.close()
    if args.json:
        print_json(data)
        return 0
    print(f"Library {data['library']}: {data['frames']:,} frames, {human_bytes(data['bytes'])}")
    if not data["runs"]:
        print("no runs yet")
    for run in data["runs"]:
        print()
        print(f"Run {run['id']}: plan {run['plan']} on {run['camera']} - {run['state']}, "
              f"{run['done']:,}/{run['planned']:,} frames, {run['complete_cells']}/"
              f"{len(run['cells'])} cells complete (started {run['started_utc']}"
              + (f", finished {run['finished_utc']})" if run["finished_utc"] else ")"))
        if run["reason"]:
            print(f"  {run['reason']}")
        if run["masters_missing"] and run["state"] == "complete":
            print(f"  masters missing for {run['masters_missing']} cell(s): the next `calibd "
                  "run` of this plan (or `calibd masters build`) builds them")
        rows = []
        for c in run["cells"]:
            exp = f"{fmt_number(c['exposure_s'])} s" if c["kind"] in ("dark", "darkflat") \
                else _span(c["flat_exposures_s"]) if c["kind"] == "flat" else ""
            rows.append([c["kind"] + (f" {c['filter']}" if c["filter"] else ""), str(c["gain"]),
                         str(c["offset"]), str(c["binning"]), c["readout_mode"] or "",
                         f"{fmt_number(c['setpoint_c'])} °C", exp, str(c["planned"]),
                         str(c["done"]), c["state"] + (f": {c['reason']}" if c["reason"]
                                                       and c["state"] != "complete" else ""),
                         _age(c), _valid(c)])
        print(table(rows, ["kind", "gain", "offset", "bin", "mode", "set-point", "exposure",
                           "planned", "done", "state", "age", "valid"],
                    right={1, 2, 3, 7, 8, 10}))
        for c in run["cells"]:
            if c["channel_levels_adu"]:
                levels = "  ".join(f"{n} {v:.0f}" for n, v in c["channel_levels_adu"].items())
                print(f"  flat {c['filter'] or ''} channels (mean ADU above bias): {levels}")
    if data["masters"]:
        print()
        print(f"Masters ({len(data['masters'])}):")
        for m in data["masters"]:
            print(f"  {m['path']}: {_age(m)} {_valid(m)}")
    return 0


def _age(d: dict[str, Any]) -> str:
    return "" if d["age_days"] is None else f"{d['age_days']:.1f} d"


def _valid(d: dict[str, Any]) -> str:
    if d["valid"] is None:
        return ""
    return "valid" if d["valid"] else f"INVALID: {shown(d['invalid_reason'], 200)}"


def run_match(args: argparse.Namespace) -> int:
    from calibd.capture.masters.match import match
    from calibd.capture.sensor.store import doubling_temperatures

    frame = read_light_frame(args.light)
    light = frame.light()
    config, root = library_from_args(args)
    index = open_existing(root)
    try:
        choices = match(index, light, tolerance_c=args.tolerance,
                        dark_convention=config.masters.dark_convention,
                        doubling_c=doubling_temperatures(root))
    finally:
        index.close()
    if args.json:
        print_json({"light": str(args.light), "library": str(root),
                    "settings": light.describe(), "notes": frame.notes,
                    "problems": frame.problems, "masters": [c.to_dict() for c in choices]})
    else:
        print("\n".join(light_lines(frame)))
        for c in choices:
            where = str(root / c.master.path) if c.master else "none"
            print(f"  {c.kind:5s} {where}")
            for reason in c.reasons:
                print(f"        {reason}")
    missing = [c for c in choices if c.master is None and c.kind in ("bias", "dark", "flat")]
    return 1 if args.strict and (missing or frame.problems) else 0


def run_rescan(args: argparse.Namespace) -> int:
    _, root = library_from_args(args)
    if not root.is_dir():
        raise LibraryError(f"no library folder at {root}")
    counts = rescan(root)
    if args.json:
        print_json(counts)
    else:
        print(f"rebuilt the index of {root}: {counts['frames']} frames in {counts['runs']} "
              f"run(s); {counts['damaged']} damaged file(s) skipped")
    return 0
