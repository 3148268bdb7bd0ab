"""Where frames and masters live inside a library, and what their files are called.

``<library>/[<plan folder>/]<camera>/<Kind>/<g100_o50_bin1_-10C>/[<300s>/]<file>.fits``, flats per
date and filter, masters under ``<camera>/Masters/`` with "Master" in the file name. Names sort by
time and never collide: each carries the run id and the frame's sequence number in its cell.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from calibd.capture.plans.cells import Cell
from calibd.capture.plans.cells import fmt_number

KIND_FOLDERS: dict[str, str] = {
    "bias": "Bias",
    "dark": "Darks",
    "flat": "Flats",
    "darkflat": "DarkFlats",
}
KIND_FILE_PREFIX: dict[str, str] = {
    "bias": "Bias",
    "dark": "Dark",
    "flat": "Flat",
    "darkflat": "DarkFlat",
}
INDEX_NAME = "calibd.sqlite"
# The index's files in the order to move or delete them: the write-ahead log first, the index
# last. A log left beside a missing or new index would be replayed into it.
INDEX_SUFFIXES = ("-wal", "-shm", "")


def safe_part(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``+-_.`` kept)."""
    cleaned = re.sub(r"[^A-Za-z0-9+._-]+", "-", text.strip()).strip("-.")
    return cleaned or "x"


def settings_folder(cell: Cell, default_mode: str) -> str:
    label = cell.settings_label
    if cell.readout_mode != default_mode:
        label = label.replace(f"_bin{cell.binning}_",
                              f"_bin{cell.binning}_{safe_part(cell.readout_mode)}_")
    return label


def camera_root(root: Path, camera: str, folder: str | None) -> Path:
    base = root / folder if folder else root
    return base / safe_part(camera)


def frame_dir(
    root: Path,
    camera: str,
    cell: Cell,
    *,
    default_mode: str,
    folder: str | None = None,
    session_date: datetime | None = None,
) -> Path:
    """Folder for a cell's frames (created by the writer, not here)."""
    base = camera_root(root, camera, folder) / KIND_FOLDERS[cell.kind]
    settings = settings_folder(cell, default_mode)
    if cell.kind == "bias":
        return base / settings
    if cell.kind == "flat":
        day = (session_date or datetime.now()).strftime("%Y-%m-%d")
        return base / day / safe_part(cell.filter or "none") / settings
    return base / settings / f"{fmt_number(cell.exposure_s)}s"


def frame_name(cell: Cell, *, start: datetime, run_id: int, seq: int, exposure_s: float,
               default_mode: str) -> str:
    """e.g. ``Dark_300s_g100_o50_bin1_-10C_20261125T031522Z_r3-0007.fits``."""
    parts = [KIND_FILE_PREFIX[cell.kind]]
    if cell.kind == "flat" and cell.filter:
        parts.append(safe_part(cell.filter))
    if cell.kind != "bias":
        parts.append(f"{fmt_number(exposure_s)}s")
    parts.append(settings_folder(cell, default_mode))
    parts.append(start.strftime("%Y%m%dT%H%M%SZ"))
    parts.append(f"r{run_id}-{seq:04d}")
    return "_".join(parts) + ".fits"
