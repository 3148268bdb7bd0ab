"""``calibd sensor analyze`` (photon transfer, offsets and dark current from the library's
frames, stored with the library) and ``calibd sensor show`` (the stored result; ``--nina``: the
table for N.I.N.A.'s exposure calculator)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from calibd.capture.cli.common import add_config_args
from calibd.capture.cli.common import library_from_args
from calibd.capture.cli.common import print_json
from calibd.capture.cli.common import table
from calibd.capture.combine.reader import FrameReadError
from calibd.capture.errors import InputError
from calibd.capture.errors import LibraryError
from calibd.capture.errors import Problem
from calibd.capture.library.rescan import open_existing
from calibd.capture.sensor import store
from calibd.capture.sensor.analyze import analyze
from calibd.capture.textsafe import shown


def register(sub: Any) -> None:
    sensor = sub.add_parser("sensor", help="sensor characterisation: photon transfer, dark "
                                           "current")
    sensor_sub = sensor.add_subparsers(dest="sensor_command", required=True, metavar="COMMAND")
    an = sensor_sub.add_parser("analyze", help="analyse the library's sensor frames (a sensor "
                                               "plan's run, and any darks) and store the result")
    add_config_args(an, camera=False)
    an.add_argument("--camera", metavar="NAME", help="only this camera's frames")
    an.add_argument("--run", type=int, metavar="ID", help="only this run's frames")
    an.add_argument("--roi", type=_roi, default=1.0, metavar="FRACTION",
                    help="central part of each dimension the flat statistics use (default 1: "
                         "the whole frame, as EMVA 1288)")
    an.add_argument("--json", action="store_true", help="machine-readable output")
    an.set_defaults(handler=run_analyze)
    show = sensor_sub.add_parser("show", help="the stored sensor result")
    add_config_args(show, camera=False)
    show.add_argument("--camera", metavar="NAME", help="this camera (default: every one)")
    form = show.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="machine-readable output")
    form.add_argument("--nina", action="store_true",
                      help="CSV for N.I.N.A.'s exposure calculator (gain, read noise, full well)")
    show.set_defaults(handler=run_show)


def _roi(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number between 0.2 and 1") from None
    if not 0.2 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a number between 0.2 and 1")
    return value


def run_analyze(args: argparse.Namespace) -> int:
    _, root = library_from_args(args)
    index = open_existing(root)
    try:
        result = analyze(root, index, camera=args.camera, run_id=args.run, roi=args.roi)
    except FrameReadError as err:
        raise LibraryError(f"sensor analysis: {shown(str(err))}") from None
    finally:
        index.close()
    if not result["transfer"] and not result["dark"] and not result["offsets"]:
        raise InputError([Problem(root, None, "", "no sensor frames in this library (run a plan "
                                                  "with a 'sensor' set first)"
                                  + "".join(f"; {shown(p)}" for p in result["problems"]))])
    try:
        written = store.save(root, result)
    except OSError as err:
        raise LibraryError(f"cannot store the sensor result: {err}") from None
    if args.json:
        print_json(result)
    else:
        _print(result)
        for path in written:
            print(f"stored {path}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    _, root = library_from_args(args)
    names = [args.camera] if args.camera else store.cameras(root)
    found = [(n, r) for n, r in ((n, store.load(root, n)) for n in names) if r is not None]
    if not found:
        raise InputError([Problem(root, None, "", "no stored sensor result: run `calibd sensor "
                                                  "analyze` first")])
    results = [r for _, r in found]
    if args.json:
        print_json(results if len(results) > 1 else results[0])
        return 0
    for name, r in found:
        try:
            text = store.nina_table(r) if args.nina else _render(r)
        except (KeyError, TypeError, ValueError) as err:  # a hand-edited file
            path = store.result_dir(root, name) / "sensor.json"
            raise InputError([Problem(path, None, "", "not a complete sensor result (missing "
                                                      f"or wrong {shown(err)})")]) from None
        sys.stdout.write(text)
    return 0


def _f(x: object, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if isinstance(x, int | float) else "-"


def _print(result: dict[str, Any]) -> None:
    sys.stdout.write(_render(result))


def _render(result: dict[str, Any]) -> str:
    """The result as text (tables, unity gain, offset sweeps, problems)."""
    lines: list[str] = []

    rows = [[shown(r["camera"]), str(r["gain"]), str(r["offset"]), str(r["binning"]),
             shown(r["readout_mode"]), shown(r["channel"]), _f(r["e_per_adu"], 4),
             _f(r["read_noise_e"]),
             _f(r["read_noise_adu"]), f"{r['full_well_e']:.0f}", f"{r['saturation_e']:.0f}",
             _f(r["dynamic_range_stops"]), _f(r["prnu_pct"]), _f(r["dsnu_e"]),
             _f(r["linearity_error_pct"], 2)]
            for r in store.transfer_rows(result)]
    if rows:
        lines.append("Photon transfer (EMVA 1288)")
        lines.append(table(rows, ["camera", "gain", "offset", "bin", "mode", "channel", "e-/ADU",
                           "RN e-", "RN ADU", "full well e-", "sat. e- (EMVA)", "DR stops",
                           "PRNU %", "DSNU e-", "lin. err %"], right=set(range(6, 15))))
    for u in result["unity"]:
        mode = shown(u.get("readout_mode"))
        lines.append(f"unity gain (1 e-/ADU) of {shown(u['camera'])} ({mode}, bin "
                     f"{u.get('binning')}): {_f(u.get('gain'), 4)}")
    drows = [[shown(r["camera"]), str(r["gain"]), _f(r["setpoint_c"]), _f(r["temperature_c"]),
              _f(r["rate_e_per_s"], 4), _f(r["rate_all_e_per_s"], 4), _f(r["hot_fraction"], 3),
              _f(r["glow_e_per_s"], 3), _f(r["doubling_c"])] for r in store.dark_rows(result)]
    if drows:
        lines.append("\nDark current")
        lines.append(table(drows, ["camera", "gain", "set-point °C", "sensor °C", "e-/s (typical)",
                            "e-/s (all)", "hot fraction", "glow e-/s", "doubling °C"],
                    right=set(range(2, 9))))
    for o in result["offsets"]:
        sweep = ", ".join(f"{r['offset']}: {r['clipped_fraction']:.2%}" for r in o["sweep"])
        rec = o["recommended_offset"]
        lines.append(f"\noffset sweep at gain {o['gain']} (clipped pixels) {sweep}; recommended "
              f"minimum offset: {rec if rec is not None else 'none of these'}")
    for p in result["problems"]:
        lines.append(f"problem: {shown(p)}")
    return "".join(f"{line}\n" for line in lines)
