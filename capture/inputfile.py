"""Reading an input file (configuration, plan, token) without trusting it.

One bounded read for everything calibd parses: only regular files (a FIFO, a device such as
``/dev/zero``, a folder or a socket is refused without blocking), at most ``max_bytes`` read
whatever the file claims its size is (``/proc`` files say 0), UTF-8 text. The light-frame
header reader opens and reads its files through the same :func:`open_regular` and
:func:`read_up_to`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_INPUT_BYTES = 1024 * 1024  # plans and configurations are a few kB


class InputFileError(OSError):
    """The file cannot be used as input; the message says why without quoting its content."""


def open_regular(path: Path | str) -> int:
    """A read-only descriptor of the regular file ``path``, opened without blocking (a FIFO, a
    device, a folder or a socket is refused). The caller closes it. Raises InputFileError."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputFileError("no such file") from None
    except IsADirectoryError:
        raise InputFileError("is a folder, not a file") from None
    except OSError as err:
        raise InputFileError(f"cannot open it: {err.strerror or err}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise InputFileError("is a folder, not a file")
        if not stat.S_ISREG(mode):
            raise InputFileError("is not a regular file (a FIFO, device or socket)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_up_to(fd: int, size: int) -> bytes:
    """At most ``size`` bytes from ``fd`` (fewer only at the end of the file), read in chunks of
    64 KiB. Blocks on file I/O only. Raises InputFileError."""
    chunks: list[bytes] = []
    left = size
    while left > 0:
        try:
            chunk = os.read(fd, min(left, 65536))
        except BlockingIOError:  # a regular file never does this; be safe
            raise InputFileError("cannot be read without waiting") from None
        except OSError as err:
            raise InputFileError(f"cannot read it: {err.strerror or err}") from None
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_input_text(path: Path | str, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The UTF-8 text of the regular file ``path``. Never blocks on a FIFO or device; reads at
    most ``max_bytes + 1`` bytes. Raises InputFileError (missing, unreadable, not a regular
    file, too large, not UTF-8)."""
    fd = open_regular(path)
    try:
        if os.fstat(fd).st_size > max_bytes:
            raise InputFileError(f"is larger than {max_bytes} bytes")
        data = read_up_to(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise InputFileError(f"is larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputFileError(f"is not UTF-8 text (byte {err.start})") from None
