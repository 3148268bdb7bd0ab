"""Compile the ASI SDK double (``asi_double.c``) into a ``libASICamera2.so`` with gcc.

The result is cached by content: ``<out_dir>/<hash>/libASICamera2.so`` where the hash covers the C
source, the header, the compiler command and the compiler's version, so an edit rebuilds and an
unchanged tree reuses the library (a build takes about half a second). Concurrent builders (pytest
-x workers) are safe: each compiles to a private temporary name and renames it into place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SOURCES = (HERE / "asi_double.c", HERE / "asi_double.h")
LIBRARY_NAME = "libASICamera2.so"
CFLAGS = ("-shared", "-fPIC", "-O2", "-std=c11", "-Wall", "-Wextra")
LIBS = ("-lm", "-lpthread")


class DoubleBuildError(RuntimeError):
    """The double could not be built: no C compiler, or the compiler failed (message has its
    output)."""


def find_compiler(cc: str | None = None) -> str | None:
    """Path of the C compiler to use (``cc``, else ``$CC``, else ``gcc``), or None if missing."""
    return shutil.which(cc or os.environ.get("CC") or "gcc")


def _compiler_version(compiler: str) -> str:
    try:
        done = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise DoubleBuildError(f"cannot run {compiler} --version: {err}") from err
    return done.stdout.splitlines()[0] if done.stdout else ""


def source_digest(compiler: str) -> str:
    """Hash of everything that determines the built library."""
    h = hashlib.sha256()
    for src in SOURCES:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    h.update(" ".join((*CFLAGS, *LIBS)).encode())
    h.update(_compiler_version(compiler).encode())
    return h.hexdigest()[:16]


def build_double(out_dir: Path, *, cc: str | None = None, force: bool = False) -> Path:
    """Build (or reuse) the double under ``out_dir`` and return the library's absolute path.

    Blocks for the compile (about 0.5 s; at most 120 s). Raises :class:`DoubleBuildError` when no
    compiler is found or compilation fails (with the compiler's messages).
    """
    compiler = find_compiler(cc)
    if compiler is None:
        raise DoubleBuildError(
            f"no C compiler found ({cc or os.environ.get('CC') or 'gcc'}); "
            "install gcc to build the ASI SDK double"
        )
    target_dir = Path(out_dir).resolve() / source_digest(compiler)
    target = target_dir / LIBRARY_NAME
    if target.exists() and not force:
        log.debug("ASI double up to date: %s", target)
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target_dir)
    os.close(fd)
    cmd = [compiler, *CFLAGS, "-o", tmp_name, str(SOURCES[0]), *LIBS]
    log.info("building ASI SDK double: %s", " ".join(cmd))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as err:
        Path(tmp_name).unlink(missing_ok=True)
        raise DoubleBuildError(f"cannot run {compiler}: {err}") from err
    if done.returncode != 0:
        Path(tmp_name).unlink(missing_ok=True)
        raise DoubleBuildError(
            f"{compiler} failed with exit code {done.returncode}:\n{done.stderr.strip()}"
        )
    if done.stderr.strip():
        log.warning("compiler warnings building the ASI double:\n%s", done.stderr.strip())
    os.replace(tmp_name, target)
    return target
