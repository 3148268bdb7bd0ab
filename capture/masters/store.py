"""Where masters live and how the index knows them.

Files: ``<library>/[<folder>/]<camera>/Masters/<Kind>/Master_<Kind>_<settings>_r<run>.fits``,
bad pixel maps ``.../Masters/BPM/Master_BPM_g<gain>_bin<b>.fits``. The ``masters`` table holds one
row per master with the keys light frames are matched on (:mod:`capture.library.masters_table`).
"""

from __future__ import annotations

from pathlib import Path

from calibd.capture.library.layout import safe_part
from calibd.capture.plans.cells import fmt_number

MASTER_IMAGETYP: dict[str, str] = {
    "bias": "Master Bias",
    "dark": "Master Dark",
    "darkflat": "Master Dark Flat",
    "flat": "Master Flat",
    "bpm": "Bad Pixel Map",
}
KIND_FOLDER: dict[str, str] = {
    "bias": "Bias",
    "dark": "Darks",
    "darkflat": "DarkFlats",
    "flat": "Flats",
    "bpm": "BPM",
}


KIND_NAME: dict[str, str] = {
    "bias": "Bias",
    "dark": "Dark",
    "darkflat": "DarkFlat",
    "flat": "Flat",
    "bpm": "BPM",
}


def master_path(camera_dir: Path, kind: str, settings: str, *,
                exposure_s: float | None = None, filter_name: str | None = None,
                run_id: int | None = None) -> Path:
    """e.g. ``<camera>/Masters/Darks/Master_Dark_300s_g100_o50_bin1_normal_-10C_r3.fits``."""
    name = ["Master", KIND_NAME[kind]]
    if filter_name:
        name.append(safe_part(filter_name))
    if exposure_s is not None and kind in ("dark", "darkflat"):
        name.append(f"{fmt_number(exposure_s)}s")
    name.append(settings)
    if run_id is not None:
        name.append(f"r{run_id}")
    return camera_dir / "Masters" / KIND_FOLDER[kind] / ("_".join(name) + ".fits")
