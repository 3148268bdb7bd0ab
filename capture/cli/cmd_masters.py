"""``calibd masters build | list | export | combine``.

The library, configuration and combination modules are imported by the command that needs them,
so ``masters combine`` (one process per master in scripts) starts without the configuration
models and the library index.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from calibd.capture.cli.common import add_config_args
from calibd.capture.cli.common import command_group
from calibd.capture.cli.common import library_from_args
from calibd.capture.cli.common import light_lines
from calibd.capture.cli.common import print_json
from calibd.capture.cli.common import read_light_frame
from calibd.capture.cli.common import table
from calibd.capture.errors import InputError
from calibd.capture.errors import Problem
from calibd.capture.textsafe import shown

if TYPE_CHECKING:
    from calibd.capture.config import MastersConfig
    from calibd.capture.library.index import Index

KINDS = ("bias", "dark", "darkflat", "flat", "bpm")


def register(sub: Any) -> None:
    msub = command_group(sub, "masters", "master frames and bad pixel maps")
    build = msub.add_parser("build", help="build the masters that are missing or stale")
    add_config_args(build, camera=False)
    build.add_argument("--kind", action="append", choices=KINDS,
                       help="only these kinds (repeatable)")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.add_argument("--run", type=int, metavar="ID", help="only the frames of this run")
    build.set_defaults(handler=run_build)
    lst = msub.add_parser("list", help="the masters in the library")
    add_config_args(lst, camera=False)
    lst.add_argument("--kind", choices=KINDS)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=run_list)
    exp = msub.add_parser("export", help="the current masters for Siril, WBPP or a folder")
    add_config_args(exp, camera=False)
    exp.add_argument("dest", type=Path, metavar="DEST")
    exp.add_argument("--to", required=True, choices=("siril", "wbpp", "folder"), dest="target")
    exp.add_argument("--light", type=Path, metavar="LIGHT.fits",
                     help="siril: also write calibrate_lights.ssf for lights like this one")
    exp.add_argument("--tolerance", type=float, default=1.0, metavar="DEGC",
                     help="set-point tolerance when matching masters to --light")
    exp.set_defaults(handler=run_export)
    comb = msub.add_parser("combine", help="combine any FITS frames into a master")
    comb.add_argument("files", nargs="+", type=Path, metavar="FILE")
    comb.add_argument("--output", "-o", type=Path, required=True, metavar="OUT")
    comb.add_argument("--method", choices=("mean", "median"), default="mean")
    comb.add_argument("--rejection", default="sigma",
                      choices=("sigma", "winsorized", "minmax", "percentile", "none"))
    comb.add_argument("--sigma-low", type=float, default=3.0)
    comb.add_argument("--sigma-high", type=float, default=3.0)
    comb.add_argument("--center", choices=("median", "mean"), default="median")
    comb.add_argument("--spread", choices=("std", "mad"), default="std")
    comb.add_argument("--stddev", choices=("population", "sample"), default="population",
                      help="sigma clipping's standard deviation divides by N (population, like "
                           "ccdproc) or N - 1 (sample, like Siril)")
    comb.add_argument("--iterations", type=int, default=1, help="0 = until converged")
    comb.add_argument("--n-low", type=int, default=1)
    comb.add_argument("--n-high", type=int, default=1)
    comb.add_argument("--percentile-low", type=float, default=10.0)
    comb.add_argument("--percentile-high", type=float, default=90.0)
    comb.add_argument("--imagetyp", help="IMAGETYP of the result (default: 'Master ' + the "
                                         "inputs' type)")
    comb.add_argument("--no-check", action="store_true",
                      help="combine frames even when their headers disagree")
    comb.add_argument("--force", action="store_true", help="overwrite OUT")
    comb.set_defaults(handler=run_combine, fast_exit=True)  # no index: see cli.main


def _index(args: argparse.Namespace) -> tuple[Index, MastersConfig]:
    from calibd.capture.library.rescan import open_existing

    config, root = library_from_args(args)
    return open_existing(root), config.masters


def run_build(args: argparse.Namespace) -> int:
    from calibd.capture.library.rescan import remove_temp_files
    from calibd.capture.masters.service import build_missing

    index, cfg = _index(args)
    try:
        remove_temp_files(index.root)  # what killed master writes left behind
        report = build_missing(index, cfg, kinds=args.kind, force=args.force, run_id=args.run)
    finally:
        index.close()
    for path in report.built:
        print(f"built {path}")
    for failure in report.failed:
        print(f"failed: {failure}")
    print(report.summary())
    return 1 if report.failed else 0


def run_list(args: argparse.Namespace) -> int:
    from calibd.capture.plans.cells import fmt_number

    index, _ = _index(args)
    try:
        masters = index.masters(args.kind)
    finally:
        index.close()
    if args.json:
        print_json([{**m.__dict__, "dark_convention": m.dark_convention} for m in masters])
        return 0
    if not masters:
        print("no masters yet (calibd masters build)")
        return 0
    rows = [[m.kind, m.camera or "", str(m.gain if m.gain is not None else ""),
             str(m.offset if m.offset is not None else ""), str(m.binning or ""),
             "" if m.setpoint_c is None else f"{fmt_number(m.setpoint_c)} °C",
             "" if m.exposure_s is None or m.kind in ("bias", "flat", "bpm")
             else f"{fmt_number(m.exposure_s)} s", m.filter or "", str(m.ncombine or ""),
             "current" if m.current else "superseded", m.path] for m in masters]
    print(table(rows, ["kind", "camera", "gain", "offset", "bin", "set-point", "exposure",
                       "filter", "frames", "state", "file"], right={2, 3, 4, 8}))
    return 0


def run_export(args: argparse.Namespace) -> int:
    light = None
    if args.light is not None:
        if args.target != "siril":
            raise InputError([Problem(args.light, None, "--light", "only with --to siril")])
        frame = read_light_frame(args.light)
        print("\n".join(light_lines(frame)))
        light = frame.light()
    from calibd.capture.library.rescan import open_existing
    from calibd.capture.masters.export import SCRIPT
    from calibd.capture.masters.export import ExportError
    from calibd.capture.masters.export import export

    config, root = library_from_args(args)
    index = open_existing(root)
    try:
        done = export(index, args.dest, args.target, light=light, tolerance_c=args.tolerance,
                      dark_convention=config.masters.dark_convention)
    except ExportError as err:
        raise InputError([Problem(args.dest, None, "", str(err))]) from None
    except OSError as err:  # the destination: full, read-only, a file in the way
        raise InputError([Problem(args.dest, None, "", "cannot export there: "
                                  f"{shown(err.strerror or err, 200)}")]) from None
    finally:
        index.close()
    for item in done:
        print(f"{item.how} {item.path}  ({item.master.path})")
    if light is not None:
        print(f"wrote {args.dest / SCRIPT}: put the lights in {args.dest / 'lights'}")
    return 0


def run_combine(args: argparse.Namespace) -> int:
    from astropy.io import fits

    from calibd.capture import __version__
    from calibd.capture.combine import Rejection
    from calibd.capture.combine import combine_to_fits
    from calibd.capture.masters.inputs import check_consistent

    out: Path = args.output
    if out.exists() and not args.force:
        raise InputError([Problem(out, None, "", "the output exists (use --force)")])
    missing = [p for p in args.files if not p.is_file()]
    if missing:
        raise InputError([Problem(p, None, "", "no such file") for p in missing])
    try:
        rejection = Rejection(method=args.rejection, sigma_low=args.sigma_low,
                              sigma_high=args.sigma_high, center=args.center, spread=args.spread,
                              stddev=args.stddev,
                              iterations=args.iterations, n_low=args.n_low, n_high=args.n_high,
                              percentile_low=args.percentile_low,
                              percentile_high=args.percentile_high)
    except ValueError as err:
        raise InputError([Problem(None, None, "--rejection", str(err))]) from None
    headers = [] if args.no_check else check_consistent(args.files)
    header = fits.Header()
    kind = str(headers[0].get("IMAGETYP", "")).strip() if headers else ""
    header["IMAGETYP"] = args.imagetyp or (f"Master {kind.replace(' Frame', '')}".strip()
                                           if kind else "Master")
    if headers:
        for key in ("EXPTIME", "EXPOSURE", "DARKTIME", "GAIN", "OFFSET", "XBINNING", "YBINNING",
                    "READOUTM", "SET-TEMP", "FILTER", "INSTRUME", "CAMERAID", "BAYERPAT",
                    "XBAYROFF", "YBAYROFF", "ROWORDER", "EGAIN"):
            if key in headers[0]:
                try:
                    header[key] = headers[0][key]
                except ValueError:  # a value FITS cannot hold (inf): the master goes without
                    print(f"not copied to the master: {key} = {shown(headers[0][key], 40)}",
                          file=sys.stderr)
        bits = headers[0].get("BITPIX")
        if isinstance(bits, int) and 0 < bits <= 16:  # integer frames: a master in their ADU
            header["DATAMIN"] = (0.0, "[ADU] lowest value")
            header["DATAMAX"] = (float(2**bits - 1), f"[ADU] full scale ({bits}-bit)")
    header["SWCREATE"] = f"calibd {__version__}"
    try:
        stats = combine_to_fits([str(p) for p in args.files], out, header=header,
                                method=args.method, rejection=rejection)
    except ValueError as err:
        raise InputError([Problem(None, None, "", str(err))]) from None
    for path, reason in stats.excluded:
        print(f"excluded {shown(path, 300)}: {shown(reason, 300)}")
    print(f"{out}: {stats.ncombine} frames, {args.method} with {rejection.method} rejection, "
          f"{stats.rejected_fraction:.3%} of samples rejected")
    return 0

