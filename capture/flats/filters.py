"""Typical relative throughput of common filters, used only to order sky flats (the filters that
need the most light go first at dusk, last at dawn). Unknown names count as broadband colour."""

from __future__ import annotations

THROUGHPUT: dict[str, float] = {
    "l": 1.0, "lum": 1.0, "luminance": 1.0, "clear": 1.0, "uv/ir": 1.0,
    "r": 0.33, "g": 0.33, "b": 0.33, "red": 0.33, "green": 0.33, "blue": 0.33,
    "ha": 0.03, "h-alpha": 0.03, "halpha": 0.03, "oiii": 0.03, "o3": 0.03,
    "sii": 0.025, "s2": 0.025, "hb": 0.03, "nii": 0.025,
}
DEFAULT = 0.33


def relative_throughput(name: str | None) -> float:
    if name is None:
        return 1.0
    return THROUGHPUT.get(name.strip().lower(), DEFAULT)
