"""Where masters live and how the index knows them.

Files: ``<library>/[<folder>/]<camera>/Masters/<Kind>/Master_<Kind>_<settings>_r<run>.fits``,
bad pixel maps ``.../Masters/BPM/Master_BPM_g<gain>_bin<b>.fits``. The ``masters`` table holds one
row per master with the keys light frames are matched on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capture.library.index import Index, utc_now_text
from capture.library.layout import safe_part
from capture.plans.cells import fmt_number

MASTER_IMAGETYP: dict[str, str] = {
    "bias": "Master Bias",
    "dark": "Master Dark",
    "darkflat": "Master Dark",
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


@dataclass(frozen=True)
class MasterRow:
    id: int
    path: str  # relative to the library root
    kind: str
    camera: str | None
    camera_id: str | None
    run_id: int | None
    cell_key: str | None
    gain: int | None
    offset: int | None
    binning: int | None
    readout_mode: str | None
    bit_depth: int | None
    setpoint_c: float | None
    exposure_s: float | None
    filter: str | None
    ncombine: int | None
    inputs_digest: str | None
    calibration: str | None
    date_obs: str | None
    created_utc: str | None
    instrument: str | None = None
    width: int | None = None
    height: int | None = None

    def describe(self) -> str:
        parts = [self.kind, f"gain {self.gain}", f"offset {self.offset}", f"bin {self.binning}"]
        if self.setpoint_c is not None:
            parts.append(f"{fmt_number(self.setpoint_c)} °C")
        if self.kind in ("dark", "darkflat") and self.exposure_s is not None:
            parts.append(f"{fmt_number(self.exposure_s)} s")
        if self.filter:
            parts.append(f"filter {self.filter}")
        return " ".join(parts)


def row_of(r: Any) -> MasterRow:
    return MasterRow(**{k: r[k] for k in MasterRow.__dataclass_fields__})


def inputs_digest(paths: list[str]) -> str:
    """Identity of a master's input set (which frames, not their bytes)."""
    return hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()[:16]


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


def upsert_master(index: Index, row: dict[str, Any]) -> None:
    row = {**row, "created_utc": utc_now_text()}
    cols = ", ".join(f'"{k}"' for k in row)
    marks = ", ".join("?" for _ in row)
    with index.tx() as db:
        db.execute("DELETE FROM masters WHERE kind=? AND run_id IS ? AND cell_key IS ?",
                   (row["kind"], row.get("run_id"), row.get("cell_key")))
        db.execute("DELETE FROM masters WHERE path=?", (row["path"],))
        db.execute(f"INSERT INTO masters({cols}) VALUES({marks})", tuple(row.values()))


def all_masters(index: Index, kind: str | None = None) -> list[MasterRow]:
    if kind is None:
        rows = index.query("SELECT * FROM masters ORDER BY kind, camera, gain, exposure_s")
    else:
        rows = index.query("SELECT * FROM masters WHERE kind=? ORDER BY camera, gain, "
                           "exposure_s", (kind,))
    return [row_of(r) for r in rows]


def find_master(index: Index, kind: str, run_id: int | None, cell_key: str | None
                ) -> MasterRow | None:
    rows = index.query("SELECT * FROM masters WHERE kind=? AND run_id IS ? AND cell_key IS ?",
                       (kind, run_id, cell_key))
    return row_of(rows[0]) if rows else None
