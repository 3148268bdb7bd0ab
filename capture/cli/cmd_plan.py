"""``calibd plan check``: what a plan will do, how long it takes and how much disk it needs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from calibd.capture.cli.common import add_config_args
from calibd.capture.cli.common import command_group
from calibd.capture.cli.common import config_from_args
from calibd.capture.cli.common import free_bytes
from calibd.capture.cli.common import library_root
from calibd.capture.cli.common import print_json
from calibd.capture.cli.common import table
from calibd.capture.plans.cells import fmt_number
from calibd.capture.plans.estimate import Estimate
from calibd.capture.plans.estimate import estimate
from calibd.capture.plans.estimate import file_bytes
from calibd.capture.plans.estimate import human_bytes
from calibd.capture.plans.estimate import human_duration
from calibd.capture.runner import Prepared
from calibd.capture.runner import prepare


def register(sub: Any) -> None:
    plan_sub = command_group(sub, "plan", "inspect capture plans")
    check = plan_sub.add_parser(
        "check", help="validate a plan and show its cells, frames, time and disk space")
    check.add_argument("plan", type=Path, help="plan file (YAML)")
    add_config_args(check)
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=run_check)
    from calibd.capture.cli import cmd_from_lights

    cmd_from_lights.register(plan_sub)


def exposure_text(seconds: float) -> str:
    if seconds == 0:
        return "auto"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:g} ms"
    return f"{fmt_number(seconds)} s"


def report(prepared: Prepared, est: Estimate, library: Path, free: int) -> dict[str, Any]:
    plan, info = prepared.plan, prepared.camera.info
    by_kind: dict[str, int] = {}
    for c in plan.cells:
        by_kind[c.kind] = by_kind.get(c.kind, 0) + c.count
    warnings = list(plan.warnings)
    windows = sky_windows(prepared)
    if free < est.disk_bytes:
        warnings.append(f"the library's disk has {human_bytes(free)} free but the plan needs "
                        f"{human_bytes(est.disk_bytes)}")
    return {
        "plan": plan.name,
        "file": str(plan.source) if plan.source else None,
        "camera": {"name": prepared.camera_name, "model": info.model, "id": info.camera_id,
                   "width": info.width, "height": info.height,
                   "min_exposure_s": info.min_exposure_s},
        "cells": [
            {"position": i + 1, "key": c.key, "kind": c.kind, "gain": c.gain,
             "gain_label": c.gain_label, "offset": c.offset, "binning": c.binning,
             "readout_mode": c.readout_mode, "setpoint_c": c.setpoint_c,
             "exposure_s": c.exposure_s, "filter": c.filter, "count": c.count,
             "total_exposure_s": c.total_exposure_s, "bytes": c.count * file_bytes(info, c)}
            for i, c in enumerate(plan.cells)
        ],
        "cell_count": len(plan.cells),
        "frames": plan.frames,
        "frames_by_kind": by_kind,
        "exposure_s": plan.total_exposure_s,
        "exposure_h": round(plan.total_exposure_s / 3600.0, 2),
        "estimate": {
            "wall_s": est.wall_s, "exposure_s": est.exposure_s, "readout_s": est.readout_s,
            "cooling_s": est.cooling_s, "warmup_s": est.warmup_s,
            "warmup_target_c": est.warmup_target_c,
        },
        "disk_bytes": est.disk_bytes,
        "dark_flats_expected": est.dark_flat_frames,
        "sky_windows": windows,
        "ladders": ladders(prepared),
        "library": {"path": str(library), "free_bytes": free, "enough": free >= est.disk_bytes},
        "warnings": warnings,
    }


def ladders(prepared: Prepared) -> list[dict[str, Any]]:
    """The flat ladder of each sensor set: its levels, its ``beyond`` and where that came from
    (the plan or the camera), and its top level as a fraction of the saturation signal."""
    out: dict[int, dict[str, Any]] = {}
    for c in prepared.plan.cells:
        if c.ladder is not None and c.set_index not in out:
            out[c.set_index] = {"set": c.set_index, "levels": c.ladder.options.levels,
                                "beyond": c.ladder.beyond, "beyond_from": c.ladder.beyond_from,
                                "top_fraction": c.ladder.top_fraction}
    return [out[i] for i in sorted(out)]


def sky_windows(prepared: Prepared) -> list[dict[str, Any]]:
    """The next twilight window of each sky-flat set (from the camera's clock and site)."""
    from calibd.capture.plans.model import FlatSet
    from calibd.capture.site import next_window

    site = prepared.setup.site
    out: list[dict[str, Any]] = []
    for i, s in enumerate(prepared.plan.plan.sets):
        if not isinstance(s, FlatSet) or s.source != "sky" or site is None:
            continue
        bright, dark = s.sky.sun_altitude_deg
        w = next_window(site, prepared.clock.now(), s.sky.twilight, bright, dark)
        out.append({"set": i, "kind": w.kind if w else None,
                    "opens_utc": w.opens.isoformat() if w else None,
                    "closes_utc": w.closes.isoformat() if w else None})
    return out


def run_check(args: argparse.Namespace) -> int:
    config, located = config_from_args(args)
    prepared = prepare(args.plan, config, located, args.camera,
                       library=library_root(args, config))
    try:
        est = estimate(prepared.plan, prepared.camera.info, prepared.sensor_c,
                       prepared.ambient_c)
        library = library_root(args, config)
        data = report(prepared, est, library, free_bytes(library))
    finally:
        prepared.camera.disconnect()
    if args.json:
        print_json(data)
        return 0
    print_text(data)
    return 0


def print_text(d: dict[str, Any]) -> None:
    cam = d["camera"]
    print(f"Plan {d['plan']} ({d['file']}) on camera {cam['name']!r}: {cam['model']}, "
          f"{cam['width']}x{cam['height']}")
    rows = []
    for c in d["cells"]:
        gain = str(c["gain"]) if c["gain_label"] in ("", str(c["gain"])) \
            else f"{c['gain_label']} ({c['gain']})"
        rows.append([str(c["position"]), c["kind"] + (f" {c['filter']}" if c["filter"] else ""),
                     gain, str(c["offset"]), str(c["binning"]), c["readout_mode"],
                     f"{fmt_number(c['setpoint_c'])} °C", exposure_text(c["exposure_s"]),
                     str(c["count"]), human_duration(c["total_exposure_s"])])
    print(table(rows, ["#", "kind", "gain", "offset", "bin", "mode", "set-point", "exposure",
                       "count", "exposure total"], right={0, 3, 4, 8, 9}))
    kinds = ", ".join(f"{n:,} {k}" for k, n in d["frames_by_kind"].items())
    e = d["estimate"]
    print()
    print(f"Cells:     {d['cell_count']}")
    print(f"Frames:    {d['frames']:,} ({kinds})")
    print(f"Exposure:  {d['exposure_h']:.1f} h ({d['exposure_s']:,.0f} s)"
          + (" plus the flats' (found at run time)" if "flat" in d["frames_by_kind"] else ""))
    if d["dark_flats_expected"]:
        print(f"Dark flats: about {d['dark_flats_expected']:,} frames at the flats' exposures")
    for lad in d["ladders"]:
        print(f"Flat ladder (set {lad['set']}): {lad['levels']} levels up to "
              f"{lad['top_fraction']:.3g}x saturation (beyond {fmt_number(lad['beyond'])}: "
              f"{lad['beyond_from']})")
    for w in d["sky_windows"]:
        if w["kind"] is None:
            print(f"Sky flats (set {w['set']}): no twilight window in the next 36 h")
        else:
            print(f"Sky flats (set {w['set']}): next {w['kind']} window "
                  f"{w['opens_utc'][:16].replace('T', ' ')} to "
                  f"{w['closes_utc'][11:16]} UTC")
    print(f"Wall time: about {human_duration(e['wall_s'])} (exposure "
          f"{human_duration(e['exposure_s'])}, read-out and download "
          f"{human_duration(e['readout_s'])}, cooling {human_duration(e['cooling_s'])}, "
          f"warm-up {human_duration(e['warmup_s'])}"
          + (f" to {e['warmup_target_c']:g} °C" if e.get("warmup_target_c") is not None
             else "") + ")")
    lib = d["library"]
    print(f"Disk:      {human_bytes(d['disk_bytes'])} (library {lib['path']}: "
          f"{human_bytes(lib['free_bytes'])} free)")
    for w in d["warnings"]:
        print(f"warning: {w}")
