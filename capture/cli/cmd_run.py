"""``calibd run PLAN``: capture a plan into the library, resuming where an earlier run stopped."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from calibd.capture.cli.common import add_config_args
from calibd.capture.cli.common import config_from_args
from calibd.capture.cli.common import library_root
from calibd.capture.cli.progress import LogProgress
from calibd.capture.cli.progress import TerminalProgress
from calibd.capture.runner import Upkeep
from calibd.capture.runner import prepare
from calibd.capture.runner import run_prepared
from calibd.capture.sequencer.sequencer import SequencerOptions

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="capture a plan into the library (resumes automatically)")
    run.add_argument("plan", type=Path, help="plan file (YAML)")
    add_config_args(run)
    run.add_argument("--new", action="store_true",
                     help="start a new run even if this plan was completed before")
    run.add_argument("--upkeep", action="store_true",
                     help="only the cells the library lacks under library.policy (missing, "
                          "unfinished, expired or invalidated); nothing when it holds them all")
    run.add_argument("--finish-exposure", action="store_true",
                     help="on Ctrl-C/SIGTERM finish the running exposure instead of aborting it")
    run.add_argument("--no-progress", action="store_true", help="no live progress line")
    run.set_defaults(handler=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    config, located = config_from_args(args)
    root = library_root(args, config)
    prepared = prepare(args.plan, config, located, args.camera, library=root)
    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    tty = sys.stderr.isatty() and not args.no_progress
    progress = TerminalProgress() if tty else LogProgress()
    root_logger = logging.getLogger()
    handlers = list(root_logger.handlers)
    if isinstance(progress, TerminalProgress):
        root_logger.handlers[:] = [progress.log_handler(h) for h in handlers]
    lib = config.library
    options = SequencerOptions(stop_policy="finish" if args.finish_exposure else "abort",
                               write_queue=lib.write_queue, write_queue_mb=lib.write_queue_mb,
                               fsync=lib.fsync,
                               min_free_mb=lib.min_free_mb)
    try:
        upkeep = Upkeep(lib.policy, config.site.longitude_deg if config.site else None) \
            if args.upkeep else None
        outcome = run_prepared(prepared, root, new=args.new, stop=stop, reporter=progress,
                               options=options, masters=config.masters, upkeep=upkeep)
    finally:
        progress.finish()
        root_logger.handlers[:] = handlers
        prepared.setup.disconnect()
        _restore(previous)
    print(outcome.message)
    if outcome.result is not None and not outcome.result.complete:
        for line in outcome.result.skipped + outcome.result.failed:
            print(f"  not captured: {line}", file=sys.stderr)
        print("run the same command again to capture what is missing", file=sys.stderr)
        return 1
    return 0


def _install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    """SIGINT/SIGTERM set ``stop`` (the run ends cleanly and can resume); a second SIGINT
    interrupts at once."""
    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)
