"""The ``masters`` table: one row per master and bad pixel map, with the keys light frames are
matched on (a mixin of :class:`capture.library.index.Index`). Rows are made from the master's
header by :func:`capture.library.headermap.master_row`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace
from typing import Any

from calibd.capture.library.store import Store
from calibd.capture.library.store import utc_now_text
from calibd.capture.plans.cells import fmt_number


@dataclass(frozen=True, kw_only=True)
class MatchKeys:
    """What a light frame is matched on, which a master carries too (the camera and its
    settings, from the header; None where it does not say): the fields
    :class:`capture.masters.match.Light` and :class:`MasterRow` share."""

    camera_id: str | None
    instrument: str | None = None
    gain: int | None
    offset: int | None
    readout_mode: str | None
    binning: int | None
    bit_depth: int | None
    setpoint_c: float | None
    exposure_s: float | None
    filter: str | None
    date_obs: str | None
    width: int | None = None  # binned pixels
    height: int | None = None


@dataclass(frozen=True, kw_only=True)
class MasterRow(MatchKeys):
    id: int
    path: str  # relative to the library root
    kind: str
    camera: str | None
    run_id: int | None
    cell_key: str | None
    ncombine: int | None
    inputs_digest: str | None
    calibration: str | None
    created_utc: str | None
    #: False when a newer master of the same conditions exists (it supersedes this one; the
    #: file stays). Not a column: :meth:`MastersTable.masters` works it out.
    current: bool = True

    @property
    def bias_subtracted(self) -> bool:
        """A master dark with the master bias subtracted (``BIASSUB``/``BIASMSTR``)."""
        return (self.calibration or "").startswith("bias:")

    @property
    def dark_convention(self) -> str | None:
        """``with-bias`` or ``bias-subtracted`` for a master dark, else None."""
        if self.kind != "dark":
            return None
        return "bias-subtracted" if self.bias_subtracted else "with-bias"

    def conditions(self) -> tuple[Any, ...]:
        """What a light is matched on: masters with equal conditions replace one another."""
        exposure = round(self.exposure_s or 0.0, 6) if self.kind in ("dark", "darkflat") else None
        return (self.kind, self.camera, self.camera_id, self.gain, self.offset, self.binning,
                self.readout_mode, self.bit_depth, self.setpoint_c, exposure,
                self.filter if self.kind == "flat" else None, self.dark_convention,
                self.width, self.height, self.cell_key if self.kind == "bpm" else None)

    def describe(self) -> str:
        parts = [self.kind, f"gain {self.gain}", f"offset {self.offset}", f"bin {self.binning}"]
        if self.setpoint_c is not None:
            parts.append(f"{fmt_number(self.setpoint_c)} °C")
        if self.kind in ("dark", "darkflat") and self.exposure_s is not None:
            parts.append(f"{fmt_number(self.exposure_s)} s")
        if self.filter:
            parts.append(f"filter {self.filter}")
        return " ".join(parts)


_COLUMNS = tuple(k for k in MasterRow.__dataclass_fields__ if k != "current")


def _master(r: Any) -> MasterRow:
    return MasterRow(**{k: r[k] for k in _COLUMNS})


def mark_current(rows: list[MasterRow]) -> list[MasterRow]:
    """``rows`` with :attr:`MasterRow.current` set: of the masters with equal
    :meth:`MasterRow.conditions`, only the newest (latest ``DATE-OBS`` of its frames, then the
    latest run, then the latest built) is current."""
    best: dict[tuple[Any, ...], MasterRow] = {}
    for m in rows:
        key = m.conditions()
        held = best.get(key)
        if held is None or _age_key(m) > _age_key(held):
            best[key] = m
    winners = {id(m) for m in best.values()}
    return [m if id(m) in winners else replace(m, current=False) for m in rows]


def _age_key(m: MasterRow) -> tuple[str, int, str, int]:
    return (m.date_obs or "", m.run_id or 0, m.created_utc or "", m.id)


def inputs_digest(paths: list[str]) -> str:
    """Identity of a master's input set (which frames, not their bytes)."""
    return hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()[:16]


class MastersTable(Store):
    def cells_without_master(self, run_id: int) -> list[str]:
        """Keys of the run's cells that have frames but no master (masters are part of what a
        complete run means); a sensor set's cells have none by design."""
        rows = self.query(
            "SELECT rc.cell_key FROM run_cells rc WHERE rc.run_id=? AND EXISTS(SELECT 1 FROM "
            "frames f WHERE f.run_id=rc.run_id AND f.cell_key=rc.cell_key AND f.sensor=0) AND "
            "NOT EXISTS("
            "SELECT 1 FROM masters m WHERE m.run_id=rc.run_id AND m.cell_key=rc.cell_key) "
            "ORDER BY rc.position", (run_id,))
        return [str(r["cell_key"]) for r in rows]

    def upsert_master(self, row: Mapping[str, Any]) -> None:
        """Record a master (keys = column names), replacing the row of the same kind, run and
        cell and any row of the same path."""
        row = {**row, "created_utc": utc_now_text()}
        cols = ", ".join(f'"{k}"' for k in row)
        marks = ", ".join("?" for _ in row)
        with self.tx() as db:
            db.execute("DELETE FROM masters WHERE kind=? AND run_id IS ? AND cell_key IS ?",
                       (row["kind"], row.get("run_id"), row.get("cell_key")))
            db.execute("DELETE FROM masters WHERE path=?", (row["path"],))
            db.execute(f"INSERT INTO masters({cols}) VALUES({marks})", tuple(row.values()))

    def masters(self, kind: str | None = None) -> list[MasterRow]:
        """Every master (of ``kind``), ordered by kind, camera, gain and exposure, the superseded
        ones marked (:func:`mark_current`)."""
        if kind is None:
            rows = self.query("SELECT * FROM masters ORDER BY kind, camera, gain, exposure_s")
        else:
            rows = self.query("SELECT * FROM masters WHERE kind=? ORDER BY camera, gain, "
                              "exposure_s", (kind,))
        return mark_current([_master(r) for r in rows])

    def find_master(self, kind: str, run_id: int | None, cell_key: str | None
                    ) -> MasterRow | None:
        rows = self.query("SELECT * FROM masters WHERE kind=? AND run_id IS ? AND "
                          "cell_key IS ?", (kind, run_id, cell_key))
        return _master(rows[0]) if rows else None

    def calibrator_candidates(self, kind: str, *, camera: str, gain: int, offset: int,
                              binning: int, readout_mode: str, setpoint_c: float,
                              tolerance_c: float, prefer_run: int) -> list[MasterRow]:
        """Masters of ``kind`` at these settings with a set-point within ``tolerance_c`` [°C]:
        those of run ``prefer_run`` first, then the newest."""
        rows = self.query(
            'SELECT * FROM masters WHERE kind=? AND camera=? AND gain=? AND "offset"=? AND '
            "binning=? AND readout_mode=? AND ABS(setpoint_c - ?) <= ? ORDER BY (run_id = ?) "
            "DESC, created_utc DESC",
            (kind, camera, gain, offset, binning, readout_mode, setpoint_c, tolerance_c,
             prefer_run))
        return [_master(r) for r in rows]

    def master_dark_settings(self) -> list[tuple[str, int, int]]:
        """(camera, gain, binning) that have master darks (what bad pixel maps are made for)."""
        rows = self.query("SELECT DISTINCT camera, gain, binning FROM masters WHERE kind='dark'")
        return [(r["camera"], int(r["gain"]), int(r["binning"])) for r in rows]
