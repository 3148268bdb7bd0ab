"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from calibd.capture.textsafe import shown

if TYPE_CHECKING:  # imported when used: `masters combine` needs no configuration
    from calibd.capture.config import Config
    from calibd.capture.lights.conventions import LightFrame
    from calibd.capture.yamlsrc import Located

DEFAULT_LIBRARY = Path("library")


def command_group(sub: Any, name: str, help: str) -> Any:
    """Add the command ``name`` that only groups sub-commands (``calibd NAME COMMAND``) to the
    sub-command parser ``sub``; returns the sub-command parser to add its commands to (the
    chosen one lands in ``args.<name>_command``)."""
    group = sub.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def add_config_args(parser: argparse.ArgumentParser, *, library: bool = True,
                    camera: bool = True) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="configuration file (cameras, clock, library); default: the "
                             "built-in simulator on a fast simulated clock")
    if library:
        parser.add_argument("--library", type=Path, metavar="DIR",
                            help="library folder (default: the configuration's library.root, "
                                 "else ./library)")
    if camera:
        parser.add_argument("--camera", metavar="NAME",
                            help="camera name from the configuration (default: the plan's "
                                 "'camera' or the only one)")


def config_from_args(args: argparse.Namespace) -> tuple[Config, Located | None]:
    from calibd.capture.config import load_config

    return load_config(getattr(args, "config", None))


def library_root(args: argparse.Namespace, config: Config) -> Path:
    chosen = getattr(args, "library", None)
    if chosen is not None:
        return Path(chosen)
    return config.library.root or DEFAULT_LIBRARY


def library_from_args(args: argparse.Namespace) -> tuple[Config, Path]:
    """The configuration and the library folder (absolute, ``~`` expanded) of a command that
    has :func:`add_config_args`' options. Raises InputError for a bad configuration."""
    config, _ = config_from_args(args)
    return config, library_root(args, config).expanduser().resolve()


def read_light_frame(path: Path) -> LightFrame:
    """The light frame a command was given (``library match LIGHT``, ``masters export
    --light``), read like ``plan from-lights`` reads lights (bounded, validated; what it could
    not read is in the frame's ``problems``). Raises InputError (no such file, a header that
    cannot be read, not a light)."""
    from calibd.capture.errors import InputError
    from calibd.capture.errors import Problem
    from calibd.capture.lights.conventions import read_light_file
    from calibd.capture.lights.headers import HeaderError

    try:
        frame = read_light_file(path)
    except HeaderError as err:
        raise InputError([Problem(path, None, "", f"header not read: {err}")]) from None
    if frame.skipped is not None:
        raise InputError([Problem(path, None, "", frame.skipped)])
    return frame


def light_lines(frame: LightFrame) -> list[str]:
    """What was read of a light given to a command, for the user: its settings, then what
    could not be read or had to be derived (already made safe to print)."""
    out = [f"Light {shown(frame.path.name)}: {frame.light().describe()}"]
    out += [f"  problem: {line}" for line in frame.problems]
    out += [f"  note: {line}" for line in frame.notes]
    return out


def free_bytes(path: Path) -> int:
    """Free space on the file system that holds ``path`` (or its nearest existing parent)."""
    try:
        probe = path.expanduser().resolve()
    except (OSError, RuntimeError):  # a symbolic-link loop: the nearest parent that exists
        probe = path.expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def table(rows: list[list[str]], header: list[str], right: set[int] | None = None) -> str:
    """Plain-text table; columns in ``right`` are right-aligned."""
    right = right or set()
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)
