"""``calibd library invalidate``: record that calibration frames and masters taken until now
are no longer valid (a filter cleaned or replaced, a camera's firmware updated...)."""

from __future__ import annotations

import argparse
import re
from typing import Any

from calibd.capture.cli.common import add_config_args
from calibd.capture.cli.common import library_from_args
from calibd.capture.errors import InputError
from calibd.capture.errors import Problem
from calibd.capture.library.rescan import open_existing
from calibd.capture.textsafe import shown

KIND_NAMES = {"bias": "bias", "biases": "bias", "dark": "dark", "darks": "dark",
              "flat": "flat", "flats": "flat", "darkflat": "darkflat", "darkflats": "darkflat",
              "bpm": "bpm", "all": None}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,63}$")


def register(lib_sub: Any) -> None:
    p = lib_sub.add_parser("invalidate", help="mark frames and masters taken until now invalid "
                                              "(of a kind, camera, filter or gain)")
    p.add_argument("--kind", required=True, choices=sorted(KIND_NAMES), help="what to invalidate")
    p.add_argument("--filter", metavar="NAME", help="only this filter")
    p.add_argument("--camera", metavar="NAME", help="only this camera (its name in the library)")
    p.add_argument("--gain", type=int, metavar="N", help="only this gain")
    p.add_argument("--reason", default="invalidated by the user", metavar="TEXT",
                   help="why (shown by library status)")
    add_config_args(p, camera=False)
    p.set_defaults(handler=run_invalidate)


def run_invalidate(args: argparse.Namespace) -> int:
    problems = []
    for key, value in (("--filter", args.filter), ("--camera", args.camera)):
        if value is not None and not NAME.match(value):
            problems.append(Problem(None, None, key, f"{shown(value, 40)} is not a valid name"))
    if not args.reason.isprintable() or not 0 < len(args.reason) <= 200:
        problems.append(Problem(None, None, "--reason", "give 1..200 printable characters"))
    if args.gain is not None and not 0 <= args.gain <= 100000:
        problems.append(Problem(None, None, "--gain", "must be 0..100000"))
    if problems:
        raise InputError(problems)
    _, root = library_from_args(args)
    index = open_existing(root)
    try:
        index.add_invalidation(args.reason, kind=KIND_NAMES[args.kind], camera=args.camera,
                               filt=args.filter, gain=args.gain)
    finally:
        index.close()
    what = " ".join(x for x in (args.kind, args.camera and f"camera {args.camera}",
                                args.filter and f"filter {args.filter}",
                                args.gain is not None and f"gain {args.gain}") if x)
    print(f"invalidated {what} taken until now in {root}")
    return 0
