"""``calibd``: the command line.

Exit codes: 0 ok, 2 bad input (plan, configuration, arguments), 1 failure (device, disk,
interrupted or incomplete run).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import os
import sys
from collections.abc import Callable
from collections.abc import Sequence
from typing import ClassVar
from typing import NoReturn

from calibd.capture import __version__
from calibd.capture.errors import CoolingTimeout
from calibd.capture.errors import DaemonError
from calibd.capture.errors import InputError
from calibd.capture.errors import LibraryError
from calibd.capture.errors import RunPaused
from calibd.capture.memory import fix_mmap_threshold
from calibd.capture.textsafe import shown
from calibd.drivers.errors import DeviceError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

log = logging.getLogger("calibd")

Handler = Callable[[argparse.Namespace], int]


def setup_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr; under systemd (JOURNAL_STREAM set) without timestamps and with syslog
    priority prefixes so journald records the levels."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s",
                                               datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # astropy installs its own logger class for "astropy" when imported: import it before
    # that logger is looked up (commands import their modules lazily, after this).
    import astropy  # noqa: F401

    for noisy in ("astropy", "apscheduler", "urllib3", "numba"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class _JournalFormatter(logging.Formatter):
    PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", " | ")
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{record.name}: {text}"


#: The top-level commands and the module that registers each, in the order ``--help`` lists them.
COMMANDS = (
    ("plan", "cmd_plan"),
    ("run", "cmd_run"),
    ("library", "cmd_library"),
    ("masters", "cmd_masters"),
    ("sensor", "cmd_sensor"),
    ("report", "cmd_report"),
    ("devices", "cmd_devices"),
    ("sim", "cmd_sim"),
    ("daemon", "cmd_daemon"),
    ("status", "cmd_status"),
    ("control", "cmd_status"),
)


def _command_word(argv: Sequence[str] | None) -> str | None:
    """The command a command line names: its first word that is not an option (the global
    options take no value)."""
    words = sys.argv[1:] if argv is None else argv
    return next((w for w in words if not w.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command-line parser. Only the module of the command ``argv`` names is imported (each
    pulls in what its commands need: start-up time of e.g. ``masters combine``); all of them
    when it names none or an unknown one (``--help``, errors)."""
    command = _command_word(argv)
    chosen = [m for c, m in COMMANDS if c == command] or [m for _, m in COMMANDS]
    parser = argparse.ArgumentParser(
        prog="calibd",
        description="Unattended calibration frames (bias, darks, flats) for cooled CMOS cameras.",
    )
    parser.add_argument("--version", action="version", version=f"calibd {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in dict.fromkeys(chosen):
        importlib.import_module(f"calibd.capture.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    collecting = gc.isenabled()
    try:
        return _main(argv)[0]
    finally:
        if collecting:  # a fast-exit command turned it off (see _main)
            gc.enable()


def _main(argv: Sequence[str] | None, *, program: bool = False) -> tuple[int, bool]:
    """The exit code, and whether the process may end without the interpreter's shutdown
    (the command's ``fast_exit``, on success only). ``program``: this is the ``calibd``
    process itself (:func:`entry`), not a caller of :func:`main`."""
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    fast = bool(getattr(args, "fast_exit", False))
    if fast:
        # A short command that ends with os._exit: no cyclic garbage collection at all (its
        # objects go by reference counting, the rest with the process). Otherwise start-up
        # spends ~0.1 s in collections walking the objects numba and astropy are creating.
        gc.disable()
        if program:
            _skip_numba_blas_probe()
    setup_logging(args.verbose, args.quiet)
    fix_mmap_threshold()  # freed frames and bands go back to the system (capture.memory)
    handler: Handler = args.handler
    try:
        code = handler(args)
        return code, fast
    except InputError as err:
        for problem in err.problems:
            print(f"error: {_lines(problem)}", file=sys.stderr)
        return EXIT_BAD_INPUT, False
    except (RunPaused, CoolingTimeout) as err:
        print(f"stopped: {_lines(err)}", file=sys.stderr)
        print("run the same command again to resume", file=sys.stderr)
        return EXIT_FAILURE, False
    except (LibraryError, DeviceError, DaemonError) as err:
        print(f"error: {_lines(err)}", file=sys.stderr)
        return EXIT_FAILURE, False
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILURE, False
    except BrokenPipeError:
        # The reader went away (`calibd status | head`): not a failure. Point stdout at
        # /dev/null so that flushing it at exit does not raise again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK, False


def _lines(what: object) -> str:
    """An error's text for the terminal: each line through :func:`shown` (an escape sequence
    or other control character that came from outside, a file, a server, a device, is shown
    escaped, never sent to the terminal), the lines kept."""
    return "\n".join(shown(line, 4000) for line in str(what).splitlines())


def entry() -> None:
    """The ``calibd`` program: run the command line, exit with its code."""
    code, fast = _main(None, program=True)
    if fast:
        _exit_now(code)
    sys.exit(code)


def _skip_numba_blas_probe() -> None:
    """Keep SciPy out of a fast-exit command's process. numba imports SciPy when it loads its
    first kernel, only to learn whether ``np.dot``/``np.linalg`` can be compiled (the BLAS check
    in ``numba.np.arraymath``); calibd's kernels use neither, and SciPy is not a calibd
    dependency (other packages may have installed it). Where it is installed, that import was
    0.1-0.25 s of a one-second ``masters combine``. A ``None`` entry in ``sys.modules`` makes
    ``import scipy`` raise ImportError, which numba takes as "no BLAS", as on a plain install.
    Only for the ``calibd`` process of such a command, never for an in-process caller."""
    sys.modules.setdefault("scipy", None)  # type: ignore[arg-type]


def _exit_now(code: int) -> NoReturn:
    """End the process without the interpreter's shutdown: no cyclic garbage collection over
    every object numba, astropy and numpy made, no teardown of their modules (tens of ms of a
    one-second ``masters combine``). Log handlers and the standard streams are flushed first.
    Only for commands that hold nothing whose finaliser or ``atexit`` hook matters (a SQLite
    connection left to the exit would not be closed, its WAL not checkpointed into the index
    file), and only from :func:`entry`, never from an in-process :func:`main`."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)
