"""``calibd sim serve --alpaca``: serve the simulated observatory (camera, flat panel, filter
wheel, weather, mount and dome under one twilight sky) over ASCOM Alpaca (HTTP API, management
API, UDP discovery) until SIGTERM or Ctrl-C.

Hook into the parser with :func:`register`; :func:`run_serve` is the handler and can be called
with a parsed namespace directly.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC
from datetime import datetime
from typing import Any

from calibd.capture.cli.common import command_group
from calibd.capture.devices import driver_module
from calibd.capture.net import is_loopback_literal as is_loopback
from calibd.drivers.pointing import Place

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11111
DEFAULT_DISCOVERY_PORT = 32227
#: The latest --start / --real-start: a fast clock must not run past the calendar's end.
LAST_START = datetime(9000, 1, 1, tzinfo=UTC)


def register(sub: Any) -> None:
    """Add ``sim serve`` to the ``calibd`` sub-command parser ``sub``."""
    simulator = driver_module("simulator")
    sim_sub = command_group(sub, "sim", "run the simulated devices for other programs")
    serve = sim_sub.add_parser(
        "serve",
        help="serve the simulated camera, flat panel, filter wheel, weather, mount and dome "
             "over a device protocol until stopped (SIGTERM / Ctrl-C)",
    )
    serve.add_argument("--alpaca", action="store_true", required=True,
                       help="serve ASCOM Alpaca: HTTP device and management API, UDP discovery")
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help="address to listen on (default %(default)s; the server has no "
                            "authentication, so anything else exposes the devices)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help="HTTP port (default %(default)s; 0 = any free port)")
    serve.add_argument("--discovery-port", type=int, default=DEFAULT_DISCOVERY_PORT,
                       help="UDP discovery port (default %(default)s; 0 disables discovery)")
    serve.add_argument("--profile", choices=simulator.PROFILE_NAMES, default="small",
                       help="simulated sensor (default %(default)s)")
    serve.add_argument("--scale", type=float, default=1.0,
                       help="simulated seconds per real second (default %(default)s)")
    serve.add_argument("--start", metavar="ISO-TIME",
                       help="simulated time the clock reads at --real-start (UTC unless the "
                            "time has an offset; default: now)")
    serve.add_argument("--real-start", metavar="ISO-TIME",
                       help="real time at which the clock reads --start (default: now); give "
                            "calibd's clock the same scale, start and real_start to share time")
    serve.add_argument("--site", metavar="LAT,LON[,ELEVATION]",
                       help="where the simulated mount stands and whose sun lights the sky: "
                            "latitude and longitude (east positive, -180..180) in degrees, "
                            "elevation in m (default 45,7,400, calibd's default site:; give "
                            "calibd's site: the same; south or west: --site=-31.3,149.1)")
    serve.add_argument("--ambient", type=float, default=10.0, metavar="CELSIUS",
                       help="ambient temperature in °C (default %(default)s)")
    serve.add_argument("--seed", type=int, default=None, help="noise seed (reproducible frames)")
    serve.add_argument("--filters", default=",".join(simulator.DEFAULT_FILTERS),
                       help="filter names in slot order, comma-separated (default %(default)s)")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT. Returns 0 after a clean stop, 2 for bad options, 1 when the
    server cannot start (address in use, ...)."""
    problems = []
    if not 0 <= args.port <= 65535:
        problems.append(f"--port {args.port} is not a TCP port (0..65535)")
    if not 0 <= args.discovery_port <= 65535:
        problems.append(f"--discovery-port {args.discovery_port} is not a UDP port (0..65535)")
    if not args.scale > 0:
        problems.append(f"--scale must be > 0, got {args.scale}")
    times: dict[str, datetime | None] = {}
    for option in ("start", "real_start"):
        text = getattr(args, option, None)
        times[option] = None
        if text is None:
            continue
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            problems.append(f"--{option.replace('_', '-')} needs an ISO 8601 time, got "
                            f"{text[:40]!r}")
            continue
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        if not LAST_START.replace(year=1900) <= when <= LAST_START:
            problems.append(f"--{option.replace('_', '-')} must lie in 1900..{LAST_START.year}")
            continue
        times[option] = when
    site = _site(args.site, problems) if args.site is not None else None
    filters = [name.strip() for name in args.filters.split(",") if name.strip()]
    if not filters or len(set(filters)) != len(filters):
        problems.append(f"--filters needs unique, non-empty names, got {args.filters!r}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return EXIT_BAD_INPUT
    if not is_loopback(args.host):
        print(
            f"warning: serving on {args.host}: the Alpaca server has no authentication; anyone "
            "who can reach this address can operate the simulated devices",
            file=sys.stderr,
        )
    try:
        driver_module("simulator").serve_alpaca(
            args.host,
            args.port,
            profile=args.profile,
            scale=args.scale,
            discovery_port=args.discovery_port or None,
            ambient_c=args.ambient,
            seed=args.seed,
            filters=filters,
            start=times["start"],
            real_start=times["real_start"],
            **({"site": site} if site is not None else {}),
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        print(f"error: cannot serve on {args.host}:{args.port}: {err}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _site(text: str, problems: list[str]) -> Place | None:
    """``LAT,LON[,ELEVATION]`` as a :class:`Place`, or None with the reason added to
    ``problems`` (the text is shown shortened and escaped)."""
    parts = text.split(",")
    values: list[float] = []
    for part in parts[:3]:
        try:
            values.append(float(part))
        except ValueError:
            break
    limits = ((-90.0, 90.0), (-180.0, 180.0), (-500.0, 9000.0))
    if (len(parts) not in (2, 3) or len(values) != len(parts)
            or not all(lo <= v <= hi for v, (lo, hi) in zip(values, limits, strict=False))):
        problems.append("--site needs LAT,LON[,ELEVATION]: latitude -90..90, longitude "
                        f"-180..180 degrees, elevation -500..9000 m, got {text[:40]!r}")
        return None
    return Place(*values)
