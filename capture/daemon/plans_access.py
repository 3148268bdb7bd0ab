"""Which plan files the API may start: only files inside the configured plans folder.

A name from the network is never a path to open: it must be relative, without ``..``, without
control characters, and resolve (symbolic links followed) to a regular file inside the folder.
Everything else is refused before a byte of the file is read, with the HTTP status the README
documents (400 a bad name, 403 not allowed, 404 not there).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from pathlib import PurePosixPath

from calibd.capture.daemon.control import ControlError
from calibd.capture.textsafe import shown

MAX_NAME_CHARS = 255


def resolve_api_plan(name: str, plans_dir: Path | None) -> Path:
    """The real path of plan ``name`` inside ``plans_dir``. Does not read the file (the plan
    loader does, bounded). Raises ControlError (400, 403 or 404)."""
    if plans_dir is None:
        raise ControlError("the API starts plans only from daemon.plans_dir, which is not "
                           "configured: start a schedule by name instead", 403)
    if len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise ControlError("a plan name must be printable text of at most "
                           f"{MAX_NAME_CHARS} characters", 400)
    pure = PurePosixPath(name)
    if pure.is_absolute() or name.startswith("~") or ".." in pure.parts or "\\" in name:
        raise ControlError(f"{shown(name, 60)!r} is not a plan name: give a file name inside "
                           "the plans folder (no absolute path, no '..')", 400)
    root = Path(os.path.realpath(plans_dir))
    real = Path(os.path.realpath(root / pure))
    if real != root and root not in real.parents:
        raise ControlError(f"plan {shown(name, 60)!r} leads outside the plans folder", 403)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        raise ControlError(f"no plan {shown(name, 60)!r} in the plans folder", 404) from None
    except OSError as err:
        raise ControlError(f"plan {shown(name, 60)!r} cannot be used: {err.strerror}",
                           403) from None
    if not stat.S_ISREG(info.st_mode):
        raise ControlError(f"plan {shown(name, 60)!r} is not a regular file", 403)
    return real
