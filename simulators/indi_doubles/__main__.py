"""``python -m calibd.simulators.indi_doubles FAMILY``: run one camera double as an INDI driver
(indiserver starts it; it speaks INDI XML on standard input/output and logs to standard error)."""

from __future__ import annotations

import argparse
import os
import sys

from calibd.simulators.indi_doubles.camera import CameraDouble, DoubleOptions
from calibd.simulators.indi_doubles.families import FAMILIES
from calibd.simulators.indi_doubles.protocol import Writer, dispatch_forever


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
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 10_000 or not 8 <= args.width <= 8192 or not 8 <= args.height <= 8192:
        parser.error("scale must be in (0, 10000], width and height in [8, 8192]")
    double = CameraDouble(
        FAMILIES[args.family],
        DoubleOptions(scale=args.scale, width=args.width, height=args.height,
                      ambient_c=args.ambient, panel_device=args.panel or None, seed=args.seed),
        Writer(),
    )
    double.start()
    try:
        dispatch_forever(double.handle)
    except (ValueError, OSError) as err:
        print(f"indi-double: {err}", file=sys.stderr)
        return 1
    finally:
        double.stop()
    return 0


if __name__ == "__main__":
    sys.stdout = os.fdopen(sys.stdout.fileno(), "w", buffering=1 << 16, closefd=False)
    sys.exit(main())
