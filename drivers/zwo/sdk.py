"""Finding and loading ZWO's ``libASICamera2`` into ``zwoasi`` (once per process).

Search order (:func:`find_sdk`): an explicit ``sdk_path``; ``$ZWO_ASI_LIB`` or ``$CALIBD_ZWO_SDK``;
a system copy (the linker's search, the usual library directories, an unpacked SDK under
``/opt``); the copy bundled in an installed ``pyzwoasi`` wheel, found through
``importlib.metadata`` without importing pyzwoasi. :func:`load_sdk` binds it with ``zwoasi.init``
on a helper thread with a deadline; zwoasi cannot switch libraries later.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import importlib.metadata
import logging
import os
import platform
import struct
import sys
import sysconfig
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.zwo._worker import _CallTimeout
from calibd.drivers.zwo._worker import _SdkWorker

log = logging.getLogger(__name__)

ENV_VARS = ("ZWO_ASI_LIB", "CALIBD_ZWO_SDK")
LIBRARY_GLOB = "libASICamera2.so*"
# pyzwoasi's directory names per machine architecture.
_ARCH_DIRS = {
    "x86_64": ("x64", "x86_64", "amd64"),
    "amd64": ("x64", "x86_64", "amd64"),
    "i386": ("x86",),
    "i686": ("x86",),
    "x86": ("x86",),
    "aarch64": ("armv8", "arm64", "aarch64"),
    "arm64": ("armv8", "arm64", "aarch64"),
    "armv7l": ("armv7",),
    "armv6l": ("armv6",),
}

@dataclass(frozen=True)
class SdkLocation:
    """Where the ASI SDK library comes from: ``path`` and a human-readable ``source``."""

    path: str
    source: str


class _SdkState:
    """The process-wide loaded library (zwoasi holds one; so do we)."""

    lock = threading.Lock()
    location: SdkLocation | None = None


def _arch_dirs() -> tuple[str, ...]:
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64") and struct.calcsize("P") == 4:
        machine = "i686"  # 32-bit Python on a 64-bit kernel
    return _ARCH_DIRS.get(machine, (machine,))


def _system_dirs() -> list[str]:
    dirs = ["/usr/local/lib", "/usr/local/lib64", "/usr/lib", "/usr/lib64", "/lib"]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs[1:1] = [f"/usr/local/lib/{multiarch}", f"/usr/lib/{multiarch}"]
    return dirs


def _system_library() -> SdkLocation | None:
    """A system-wide copy: the linker's search (ldconfig), then common install directories."""
    name = ctypes.util.find_library("ASICamera2")
    if name:
        for d in _system_dirs():
            candidate = Path(d) / name
            if candidate.is_file():
                return SdkLocation(str(candidate), "system library (ldconfig)")
        return SdkLocation(name, "system library (ldconfig)")
    patterns = [os.path.join(d, LIBRARY_GLOB) for d in _system_dirs()]
    patterns += [f"/opt/*/lib/{arch}/{LIBRARY_GLOB}" for arch in _arch_dirs()]
    patterns += [f"/opt/*/lib/{LIBRARY_GLOB}"]
    for pattern in patterns:
        for hit in sorted(glob.glob(pattern)):
            if os.path.isfile(hit):
                return SdkLocation(hit, f"system library ({os.path.dirname(hit)})")
    return None


def _pyzwoasi_library() -> SdkLocation | None:
    """The SDK binary bundled in an installed ``pyzwoasi`` wheel (found without importing it)."""
    try:
        dist = importlib.metadata.distribution("pyzwoasi")
    except importlib.metadata.PackageNotFoundError:
        return None
    if not sys.platform.startswith("linux"):
        return None
    wanted = _arch_dirs()
    for entry in dist.files or ():
        parts = entry.parts
        if (
            len(parts) == 5
            and parts[:3] == ("pyzwoasi", "lib", "Linux")
            and parts[3] in wanted
            and parts[4].startswith("libASICamera2.so")
        ):
            path = Path(str(dist.locate_file(entry))).resolve()
            if path.is_file():
                return SdkLocation(str(path), f"pyzwoasi {dist.version} (bundled ZWO SDK)")
    return None


def find_sdk(sdk_path: str | None = None) -> SdkLocation:
    """Locate ``libASICamera2`` in the documented order (see the module docstring).

    Never loads anything. Raises DeviceUnavailable naming what was tried when nothing is found, or
    when an explicit path or environment variable names a file that does not exist.
    """
    if sdk_path:
        if not os.path.isfile(sdk_path):
            raise DeviceUnavailable(f"ASI SDK library {sdk_path!r} (sdk_path) does not exist")
        return SdkLocation(sdk_path, "configured sdk_path")
    for var in ENV_VARS:
        value = os.environ.get(var)
        if value:
            if not os.path.isfile(value):
                raise DeviceUnavailable(f"ASI SDK library {value!r} (${var}) does not exist")
            return SdkLocation(value, f"${var}")
    found = _system_library() or _pyzwoasi_library()
    if found is None:
        raise DeviceUnavailable(
            "ZWO ASI SDK library (libASICamera2.so) not found: no sdk_path, "
            f"${' or $'.join(ENV_VARS)} unset, none in {', '.join(_system_dirs())} or /opt, "
            "and no pyzwoasi package installed. Install it with "
            "'pip install --no-deps pyzwoasi' (bundles ZWO's SDK) or point $ZWO_ASI_LIB at it."
        )
    return found


def _loaded_asi_libraries() -> list[str]:
    """Paths of mapped libASICamera2 files in this process (Linux /proc), for identity checks."""
    paths: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and "ASICamera2" in fields[5]:
                path = fields[5].strip()
                if path not in paths:
                    paths.append(path)
    return paths


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


class _DropImportWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASI SDK library not found"


def _import_zwoasi() -> Any:
    """Import zwoasi quietly: its import-time ``init()`` logs a warning through the *root* logger
    when no system SDK exists (which also installs a stderr handler via basicConfig)."""
    if "zwoasi" in sys.modules:
        return sys.modules["zwoasi"]
    root = logging.getLogger()
    handlers = list(root.handlers)
    quiet = _DropImportWarning()
    root.addFilter(quiet)
    try:
        import zwoasi
    except ImportError as err:
        raise DeviceUnavailable(
            f"the zwoasi package is not installed ({err}); pip install 'calibd[zwo]'"
        ) from err
    finally:
        root.removeFilter(quiet)
        for handler in root.handlers[:]:
            if handler not in handlers:  # added by zwoasi's logging.warning -> basicConfig
                root.removeHandler(handler)
    return zwoasi


def _load_sdk_now(sdk_path: str | None) -> SdkLocation:
    with _SdkState.lock:
        zw = _import_zwoasi()
        if _SdkState.location is None and zw.zwolib is not None:
            # zwoasi's import found a system library on its own (find_library).
            mapped = _loaded_asi_libraries()
            path = mapped[0] if mapped else str(getattr(zw.zwolib, "_name", "libASICamera2"))
            _SdkState.location = SdkLocation(path, "system library (loaded by zwoasi at import)")
        loaded = _SdkState.location
        if loaded is not None:
            if sdk_path and not _same_file(sdk_path, loaded.path):
                raise DeviceUnavailable(
                    f"the ASI SDK is already loaded from {loaded.path} ({loaded.source}); zwoasi "
                    f"loads one library per process, so {sdk_path} cannot be used without a restart"
                )
            return loaded
        location = find_sdk(sdk_path)
        try:
            zw.init(location.path)
        except (OSError, AttributeError, zw.ZWO_Error) as err:
            zw.zwolib = None  # a half-bound library must not be used by a later attempt
            raise DeviceUnavailable(
                f"cannot load the ASI SDK {location.path} ({location.source}): {err}"
            ) from err
        _SdkState.location = location
        log.info(
            "ASI SDK %s loaded from %s (%s)", sdk_version() or "?", location.path, location.source
        )
        return location


def load_sdk(sdk_path: str | None = None, *, timeout_s: float = 10.0) -> SdkLocation:
    """Load the SDK into zwoasi once per process and return where it came from.

    Blocks at most ``timeout_s`` real seconds (loading runs on a helper thread). Raises
    DeviceUnavailable: nothing found, the library fails to load, a different library is already
    loaded, or loading did not finish in time.
    """
    if _SdkState.location is not None and not sdk_path:
        return _SdkState.location
    worker = _SdkWorker("zwo-load")
    try:
        location: SdkLocation = worker.run(
            "load ASI SDK", _load_sdk_now, sdk_path, timeout_s=timeout_s
        )
        return location
    except _CallTimeout as err:
        raise DeviceUnavailable(f"loading the ASI SDK: {err}") from None
    finally:
        worker.stop()


def sdk_version() -> str | None:
    """The loaded SDK's version string (e.g. "1, 41, 0, 0"), None before loading. Quick, local."""
    zw = sys.modules.get("zwoasi")
    if zw is None or zw.zwolib is None:
        return None
    try:
        fn = ctypes.CFUNCTYPE(ctypes.c_char_p)(("ASIGetSDKVersion", zw.zwolib))
        raw = fn()
    except (AttributeError, OSError):
        return None
    return raw.decode(errors="replace") if raw else None

