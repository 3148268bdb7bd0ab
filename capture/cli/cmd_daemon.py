"""``calibd daemon --config FILE``: the service (see capture/daemon)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    d = sub.add_parser("daemon", help="run the service: schedules, weather triggers, API")
    d.add_argument("--config", type=Path, required=True, metavar="FILE",
                   help="configuration file (cameras, library, schedules, daemon settings)")
    d.add_argument("--check", action="store_true",
                   help="run every start-up check (configuration, plans, token file, state "
                        "folder, library), connect each device and resolve every scheduled "
                        "plan against its camera, then exit: 0 ok, 2 a problem")
    d.add_argument("--offline", action="store_true",
                   help="with --check: do not connect to the devices")
    d.set_defaults(handler=run_daemon)


def run_daemon(args: argparse.Namespace) -> int:
    from calibd.capture.daemon.service import Daemon
    from calibd.capture.daemon.service import check_config
    from calibd.capture.daemon.service import check_devices

    if args.check:
        config, located = check_config(args.config)
        if not args.offline:
            check_devices(config, located)
        print(f"{args.config}: ok ({len(config.cameras)} camera(s), "
              f"{len(config.schedules)} schedule(s)"
              f"{', devices not contacted' if args.offline else ', devices answered'})")
        return 0
    return Daemon(args.config).run()
