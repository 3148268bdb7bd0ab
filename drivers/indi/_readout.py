"""Read-out modes of an INDI camera, from its family's :class:`~drivers.indi.families.ReadoutModes`.

Mode names are what the device calls them: switch element names (``GAIN_HIGH``, ``MODE_1``),
the index of a number (``"0"``, ``"1"``) or the two names of a 0/1 flag. ``"default"`` means "leave
the device's current mode" everywhere in calibd.
"""

from __future__ import annotations

from calibd.drivers.indi._state import PropSnapshot
from calibd.drivers.indi.families import ReadoutModes


def available(spec: ReadoutModes | None, snap: PropSnapshot | None) -> tuple[str, ...]:
    """The mode names the device offers now; ``("default",)`` when it has none."""
    if spec is None or snap is None:
        return ("default",)
    if spec.kind == "switch" and snap.kind == "switch":
        names = tuple(n for n in snap.values if n)
        return names or ("default",)
    if spec.kind in ("number", "flag") and spec.element in snap.limits:
        lo, hi, _ = snap.limits[spec.element]
        if spec.kind == "flag":
            return spec.names
        count = int(hi) - int(lo) + 1
        return tuple(str(i) for i in range(int(lo), int(lo) + max(1, min(count, 64))))
    return ("default",)


def current(spec: ReadoutModes | None, snap: PropSnapshot | None) -> str:
    """The mode the device reports now (``"default"`` when it has no modes)."""
    if spec is None or snap is None:
        return "default"
    if spec.kind == "switch":
        return next((n for n, on in snap.values.items() if on is True and n), "default")
    if spec.element not in snap.values:
        return "default"
    index = round(snap.number(spec.element))
    if spec.kind == "flag":
        return spec.names[1] if index else spec.names[0]
    return str(index)


def number_value(spec: ReadoutModes, mode: str) -> float:
    """The number to send for ``mode`` (kinds ``number`` and ``flag``). Raises ValueError."""
    if spec.kind == "flag":
        return float(spec.names.index(mode))
    return float(int(mode))
