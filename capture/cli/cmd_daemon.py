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
                   help="validate the configuration and every schedule's plan, then exit")
    d.set_defaults(handler=run_daemon)


def run_daemon(args: argparse.Namespace) -> int:
    from capture.daemon.service import Daemon, check_config

    if args.check:
        config, _ = check_config(args.config)
        print(f"{args.config}: ok ({len(config.cameras)} camera(s), "
              f"{len(config.schedules)} schedule(s))")
        return 0
    return Daemon(args.config).run()
