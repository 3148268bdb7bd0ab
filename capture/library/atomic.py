"""The one way calibd writes a file: complete under its final name, or not there at all.

Every file calibd writes (frames, masters, bad pixel maps, run manifests, small state files) goes
through :class:`AtomicFile`: the bytes go to a temporary file ``.<name>.<random>.partial`` in the
destination's folder, which is flushed, ``fsync``\\ ed, renamed over the destination, and the folder
``fsync``\\ ed. While it is being written the temporary file holds an exclusive ``flock``, so a
clean-up (:func:`remove_leftovers`) can tell a file another process is still writing from one a
crash left behind: the kernel drops the lock when the writer dies.

Errors are :class:`OSError` (disk full, unwritable folder); the temporary file is removed then.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".partial"
#: Temporary names of earlier calibd versions (the master writer's ``.part``, manifests'
#: ``.json.tmp``): removed by the clean-up like our own.
LEGACY_SUFFIXES = (".part", ".json.tmp")


def temp_name(final: Path) -> Path:
    """A fresh temporary name beside ``final`` (hidden, unique, recognised by :func:`is_temp`)."""
    return final.with_name(f".{final.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def is_temp(path: Path) -> bool:
    """True for a temporary file of an atomic write (this version's or an earlier one's)."""
    name = path.name
    if name.endswith(".json.tmp"):
        return True
    return name.startswith(".") and name.endswith((TEMP_SUFFIX, ".part"))


class AtomicFile:
    """Write ``path`` atomically. Use as a context manager; call :meth:`commit` to publish.

    ``fd`` is the open temporary file (for ``os.pwrite``/``os.ftruncate``), :meth:`file` a
    buffered binary file object on it. Leaving the ``with`` block without :meth:`commit` (or with
    an exception) removes the temporary file; the destination is untouched until the rename.
    Raises OSError when the temporary file cannot be created (the folder must exist).
    """

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.tmp: Path | None = temp_name(self.path)
        self._file: IO[bytes] | None = None
        fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        self.fd: int | None = fd
        with contextlib.suppress(OSError):  # a fresh O_EXCL file: nobody else holds it
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "being written": see is_live

    def file(self) -> IO[bytes]:
        """A buffered binary file object writing at the current position (not closing ``fd``)."""
        if self.fd is None:
            raise ValueError("the atomic write is finished")
        if self._file is None:
            self._file = os.fdopen(self.fd, "r+b", closefd=False)
        return self._file

    def commit(self) -> int:
        """Flush, fsync, rename onto :attr:`path`, fsync the folder. Returns the size in bytes.
        Blocks on disk I/O. Raises OSError (the temporary file is then removed)."""
        if self.fd is None or self.tmp is None:
            raise ValueError("the atomic write is finished")
        try:
            if self._file is not None:
                self._file.flush()
                self._file.close()
                self._file = None
            size = os.fstat(self.fd).st_size
            if self.fsync:
                os.fsync(self.fd)
            os.replace(self.tmp, self.path)
            self.tmp = None
            os.close(self.fd)
            self.fd = None
        except BaseException:
            self.abort()
            raise
        if self.fsync:
            fsync_dir(self.path.parent)
        return size

    def abort(self) -> None:
        """Drop the temporary file (the destination is untouched). Idempotent."""
        if self._file is not None:
            with contextlib.suppress(OSError, ValueError):
                self._file.close()
            self._file = None
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> int:
    """Write ``data`` to ``path`` atomically. Returns the size. Raises OSError."""
    with AtomicFile(path, fsync=fsync) as out:
        out.file().write(data)
        return out.commit()


def write_text(path: Path, text: str, *, fsync: bool = True) -> int:
    """Write UTF-8 ``text`` to ``path`` atomically. Returns the size. Raises OSError."""
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


def link_or_copy(source: Path, path: Path, *, fsync: bool = True) -> str:
    """Publish ``source``'s bytes under ``path`` atomically: a hard link made under a temporary
    name and renamed over ``path`` (same file system), else a copy through :class:`AtomicFile`.
    Returns ``"linked"`` or ``"copied"``. Blocks for the copy; raises OSError."""
    tmp = temp_name(path)
    try:
        os.link(source, tmp)
    except OSError:
        with AtomicFile(path, fsync=fsync) as out, open(source, "rb") as src:
            while chunk := src.read(1 << 20):
                out.file().write(chunk)
            out.commit()
        return "copied"
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)
    return "linked"


def fsync_dir(folder: Path) -> None:
    """fsync a folder (so a rename in it is durable). Raises OSError, except where the file
    system cannot fsync folders."""
    fd = os.open(folder if str(folder) else ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def is_live(path: Path) -> bool:
    """True while another process (or thread) is still writing the temporary file ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops our lock
    return False


def remove_leftovers(paths: Iterable[Path]) -> int:
    """Remove temporary files a crash left behind (files being written are kept). Returns how
    many were removed; a file that cannot be removed is logged and kept."""
    removed = 0
    for path in paths:
        if is_live(path):
            continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as err:
            log.warning("cannot remove the leftover temporary file %s: %s", path,
                        err.strerror or err)
    return removed
