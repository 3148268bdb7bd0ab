"""``python -m calibd.simulators.indi_doubles FAMILY``: run one camera double as an INDI driver
(indiserver starts it; it speaks INDI XML on standard input/output and logs to standard error).

With ``--observatory LAT,LON,ELEV`` the same process also serves a telescope, a dome and a filter
wheel (``observatory.py``) and the camera sees their simulated sky instead of a light panel.
``--start`` and ``--real-start`` (ISO times, UTC) set the simulated clock: it reads START at
the real time REAL_START and runs ``--scale`` times faster, so calibd given the same three
(``clock: {kind: simulated, scale, start, real_start}``) shares it.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC
from datetime import datetime
from typing import Any

from calibd.drivers.pointing import Place
from calibd.simulators.indi_doubles import observatory
from calibd.simulators.indi_doubles.camera import CameraDouble
from calibd.simulators.indi_doubles.camera import DoubleOptions
from calibd.simulators.indi_doubles.families import FAMILIES
from calibd.simulators.indi_doubles.protocol import Incoming
from calibd.simulators.indi_doubles.protocol import Writer
from calibd.simulators.indi_doubles.protocol import dispatch_forever


def _when(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _place(text: str) -> Place:
    lat, lon, elev = (float(v) for v in text.split(","))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180 and -500 <= elev <= 9000):
        raise ValueError("latitude -90..90, longitude -180..180, elevation -500..9000")
    return Place(lat, lon, elev)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="indi-double", description=__doc__)
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("--scale", type=float, default=1.0,
                        help="simulated seconds per real second (exposures, cooling)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--ambient", type=float, default=10.0, help="ambient temperature, °C")
    parser.add_argument("--panel", default="Light Panel Simulator",
                        help="INDI light panel whose light reaches the sensor ('' for none)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--start", type=_when, default=None, help="simulated start time (UTC)")
    parser.add_argument("--real-start", type=_when, default=None,
                        help="real UTC time at which the clock reads --start")
    parser.add_argument("--observatory", type=_place, default=None, metavar="LAT,LON,ELEV",
                        help="also serve a telescope, dome and filter wheel at this site")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 10_000 or not 8 <= args.width <= 8192 or not 8 <= args.height <= 8192:
        parser.error("scale must be in (0, 10000], width and height in [8, 8192]")
    writer = Writer()
    double = CameraDouble(
        FAMILIES[args.family],
        DoubleOptions(scale=args.scale, width=args.width, height=args.height,
                      ambient_c=args.ambient,
                      panel_device=None if args.observatory else args.panel or None,
                      seed=args.seed, start=args.start, real_start=args.real_start),
        writer,
    )
    extra: dict[str, observatory.DeviceDouble[Any]] = {}
    if args.observatory is not None:
        served = observatory.build(double.profile, double.clock, args.observatory, writer)
        double.light = served.observatory.illumination
        extra = {d.name: d for d in served.devices}

    def route(msg: Incoming) -> None:
        device = msg.attrs.get("device")
        target = extra.get(device or "")
        if target is not None:
            target.handle(msg)
            return
        if msg.tag == "getProperties" and device is None:
            for each in extra.values():
                each.handle(msg)
        double.handle(msg)

    double.start()
    for each in extra.values():
        each.start()
    try:
        dispatch_forever(route)
    except (ValueError, OSError) as err:
        print(f"indi-double: {err}", file=sys.stderr)
        return 1
    finally:
        double.stop()
        for each in extra.values():
            each.stop()
    return 0


if __name__ == "__main__":
    sys.stdout = os.fdopen(sys.stdout.fileno(), "w", buffering=1 << 16, closefd=False)
    sys.exit(main())
