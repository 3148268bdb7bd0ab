"""Python access to the double's own control functions (not part of the real SDK).

``dlopen`` of a path that is already loaded returns the same handle, so an :class:`AsiDouble`
opened on the library zwoasi loaded talks to the very cameras zwoasi sees: configure cameras,
inject faults, read counters. Every method is quick and never blocks on a hang fault (the double
sleeps outside its lock).
"""

from __future__ import annotations

import ctypes
from pathlib import Path


class AsiDoubleError(RuntimeError):
    """The double refused a configuration (unknown key, value out of range)."""


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    text = str(value)
    if ";" in text or "\n" in text:
        raise AsiDoubleError(f"value {text!r} may not contain ';' or a newline")
    return text


class AsiDouble:
    """Handle on a loaded ASI SDK double (``simulators/asi_sdk/asi_double.c``)."""

    def __init__(self, library: str | Path) -> None:
        self.path = Path(library)
        self._lib = ctypes.CDLL(str(self.path))
        if not hasattr(self._lib, "ASIDoubleConfigure"):
            raise AsiDoubleError(f"{self.path} is not the calibd ASI SDK double")
        self._lib.ASIDoubleConfigure.argtypes = [ctypes.c_char_p]
        self._lib.ASIDoubleConfigure.restype = ctypes.c_int
        self._lib.ASIDoubleLastError.argtypes = []
        self._lib.ASIDoubleLastError.restype = ctypes.c_char_p
        self._lib.ASIDoubleStat.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self._lib.ASIDoubleStat.restype = ctypes.c_long
        self._lib.ASIDoubleSizeof.argtypes = [ctypes.c_char_p]
        self._lib.ASIDoubleSizeof.restype = ctypes.c_int

    def configure_text(self, text: str) -> None:
        """Apply ``key=value`` items separated by ';' or newlines. Raises AsiDoubleError."""
        if self._lib.ASIDoubleConfigure(text.encode()) != 0:
            message = (self._lib.ASIDoubleLastError() or b"").decode(errors="replace")
            raise AsiDoubleError(f"ASI double refused {text!r}: {message}")

    def configure(self, **items: object) -> None:
        """``configure(time_scale=100, fail_every=3)``; keys are applied in the given order
        within the double's two passes (camera definition first, then per-camera faults)."""
        self.configure_text(";".join(f"{k}={_format(v)}" for k, v in items.items()))

    def reset(self, **items: object) -> None:
        """Back to the default cameras and settings, then apply ``items``."""
        self.configure_text(";".join(["reset", *(f"{k}={_format(v)}" for k, v in items.items())]))

    def stat(self, name: str, slot: int = 0) -> int:
        """A counter or state value ("exposures", "downloads", "present", "calls", ...);
        -1 for an unknown name or empty slot."""
        return int(self._lib.ASIDoubleStat(name.encode(), slot))

    def sizeof(self, name: str) -> int:
        """Size in bytes of one of the double's ABI structs ("camera_info", "control_caps")."""
        return int(self._lib.ASIDoubleSizeof(name.encode()))
