"""The ``frames`` table: one row per complete FITS frame (made by
:func:`capture.library.headermap.frame_row`), and the questions the sequencer, the flats, the
masters and reconcile ask about them (a mixin of :class:`capture.library.index.Index`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import TypeVar

from calibd.capture.library.store import Store


@dataclass(frozen=True)
class IndexedFrame:
    """What every indexed frame of a run's cell carries: its cell, kind, camera and settings."""

    run_id: int
    cell_key: str
    kind: str
    camera: str
    gain: int
    offset: int
    binning: int
    readout_mode: str
    setpoint_c: float
    exposure_s: float
    path: str  # relative to the library root


@dataclass(frozen=True)
class CellFrame(IndexedFrame):
    """One indexed frame of a run's cell, with the run's folder (what masters are built from)."""

    folder: str
    filter: str | None


@dataclass(frozen=True)
class SensorFrame(IndexedFrame):
    """One indexed frame as the sensor analysis (:mod:`capture.sensor`) groups it."""

    ccd_temp_c: float | None
    seq: int


@dataclass(frozen=True)
class ReportFrame(IndexedFrame):
    """One indexed frame with what the calibration report plots: when, how cold, its robust
    level and noise (ADU, the centre's median and 1.4826 x MAD, as the run measured them)."""

    filter: str | None
    ccd_temp_c: float | None
    date_obs: str | None
    level_adu: float | None
    noise_adu: float | None


F = TypeVar("F", bound=IndexedFrame)


def _frames(cls: type[F], rows: Sequence[sqlite3.Row]) -> list[F]:
    """Rows of a SELECT that names every field of ``cls`` as instances of ``cls``."""
    return [cls(**{k: r[k] for k in cls.__dataclass_fields__}) for r in rows]


class FrameQueries(Store):
    def add_frame(self, row: Mapping[str, Any]) -> None:
        """Insert one frame row (keys = column names). Idempotent on the path."""
        cols = ", ".join(f'"{k}"' for k in row)
        marks = ", ".join("?" for _ in row)
        with self.tx() as db:
            db.execute(f"INSERT OR REPLACE INTO frames({cols}) VALUES({marks})",
                       tuple(row.values()))

    def frame_paths(self, run_id: int | None = None, cell_key: str | None = None) -> set[str]:
        """Paths (relative to the root) of the indexed frames, or of one run and/or cell."""
        rows = self.query("SELECT path FROM frames WHERE (?1 IS NULL OR run_id=?1) AND "
                          "(?2 IS NULL OR cell_key=?2)", (run_id, cell_key))
        return {r["path"] for r in rows}

    def frame_checks(self, run_id: int | None = None, cell_key: str | None = None
                     ) -> list[sqlite3.Row]:
        """path, bytes, mtime_ns, width, height, camera, binning of the frames of a run (and
        cell), or of every frame: what :func:`capture.library.rescan.check_frames` compares
        with the disk."""
        return self.query(
            "SELECT path, bytes, mtime_ns, width, height, camera, binning FROM frames WHERE "
            "(?1 IS NULL OR run_id=?1) AND (?2 IS NULL OR cell_key=?2) ORDER BY path",
            (run_id, cell_key))

    def set_frame_mtimes(self, mtimes: Mapping[str, int]) -> None:
        """Record the modification time (ns) each file had when its checksum was verified."""
        with self.tx() as db:
            db.executemany("UPDATE frames SET mtime_ns=? WHERE path=?",
                           [(m, p) for p, m in mtimes.items()])

    def frame_shape(self, run_id: Any, cell_key: Any, camera: Any, binning: Any
                    ) -> tuple[int, int] | None:
        """(height, width) most of the frames of this run and cell have, else most frames of
        this camera at this binning; None when there are none."""
        for where, args in (("run_id=? AND cell_key=?", (run_id, cell_key)),
                            ("camera=? AND binning=?", (camera, binning))):
            rows = self.query(f"SELECT height, width, COUNT(*) AS n FROM frames WHERE {where} "
                              "AND width IS NOT NULL GROUP BY height, width ORDER BY n DESC "
                              "LIMIT 1", args)
            if rows:
                return int(rows[0]["height"]), int(rows[0]["width"])
        return None

    def frame_path_at(self, run_id: Any, cell_key: Any, seq: Any) -> str | None:
        """The indexed file of frame ``seq`` of this run and cell, if any."""
        rows = self.query("SELECT path FROM frames WHERE run_id=? AND cell_key=? AND seq=?",
                          (run_id, cell_key, seq))
        return str(rows[0]["path"]) if rows else None

    def remove_frames(self, paths: list[str]) -> None:
        with self.tx() as db:
            db.executemany("DELETE FROM frames WHERE path=?", [(p,) for p in paths])

    def frame_count(self, run_id: int, cell_key: str) -> int:
        """Frames of one cell of one run in the index."""
        rows = self.query("SELECT COUNT(*) AS n FROM frames WHERE run_id=? AND cell_key=?",
                          (run_id, cell_key))
        return int(rows[0]["n"])

    def cell_exposures(self, run_id: int, cell_key: str) -> list[float]:
        """[s] exposures of the cell's frames in sequence order."""
        rows = self.query("SELECT exposure_s FROM frames WHERE run_id=? AND cell_key=? "
                          "ORDER BY seq", (run_id, cell_key))
        return [float(r["exposure_s"]) for r in rows]

    def mean_ccd_temp(self, run_id: int, cell_key: str) -> float | None:
        """[°C] mean sensor temperature of the cell's frames, None without any."""
        rows = self.query("SELECT AVG(ccd_temp_c) AS t FROM frames WHERE run_id=? AND "
                          "cell_key=?", (run_id, cell_key))
        return float(rows[0]["t"]) if rows and rows[0]["t"] is not None else None

    def run_bias_levels(self, run_id: int) -> dict[str, float]:
        """cell key -> [ADU] mean level of the run's bias frames."""
        rows = self.query("SELECT cell_key, AVG(level_adu) AS level FROM frames WHERE run_id=? "
                          "AND kind='bias' AND level_adu IS NOT NULL GROUP BY cell_key",
                          (run_id,))
        return {r["cell_key"]: float(r["level"]) for r in rows}

    def bias_level(self, gain: int, offset: int, binning: int, readout_mode: str
                   ) -> float | None:
        """[ADU] mean level of every bias frame at these settings in the library, or None."""
        rows = self.query(
            "SELECT AVG(level_adu) AS level FROM frames WHERE kind='bias' AND gain=? AND "
            '"offset"=? AND binning=? AND readout_mode=? AND level_adu IS NOT NULL',
            (gain, offset, binning, readout_mode))
        return float(rows[0]["level"]) if rows and rows[0]["level"] is not None else None

    def cell_frames(self, run_id: int | None = None, cell_key: str | None = None
                    ) -> list[CellFrame]:
        """What masters are built from: the frames that belong to a run's cell (all, or of one
        run and/or cell), ordered by run, cell and sequence number; never a sensor set's
        (``sensor``: bias and dark pairs, ladder flats, some saturated, for the analysis)."""
        sql = ("SELECT f.run_id, f.cell_key, f.kind, f.camera, COALESCE(r.folder, '') AS folder, "
               'f.gain, f."offset", f.binning, f.readout_mode, f.setpoint_c, f.exposure_s, '
               "f.filter, f.path FROM frames f LEFT JOIN runs r ON r.id = f.run_id "
               "WHERE f.run_id IS NOT NULL AND f.cell_key IS NOT NULL AND f.sensor=0")
        args: list[object] = []
        if run_id is not None:  # spelt out, so that SQLite uses the (run_id, cell_key) index
            sql += " AND f.run_id=?"
            args.append(run_id)
        if cell_key is not None:
            sql += " AND f.cell_key=?"
            args.append(cell_key)
        rows = self.query(sql + " ORDER BY f.run_id, f.cell_key, f.seq", tuple(args))
        return _frames(CellFrame, rows)

    def sensor_frames(self, camera: str | None = None, run_id: int | None = None
                      ) -> list[SensorFrame]:
        """Bias, dark, dark-flat and flat frames of runs (of one camera and/or run), ordered by
        run, cell and sequence number: what the sensor analysis reads."""
        rows = self.query(
            'SELECT run_id, cell_key, kind, camera, gain, "offset", binning, readout_mode, '
            "setpoint_c, exposure_s, ccd_temp_c, seq, path FROM frames WHERE run_id IS NOT NULL "
            "AND cell_key IS NOT NULL AND kind IN ('bias', 'dark', 'darkflat', 'flat') AND "
            "(?1 IS NULL OR camera=?1) AND (?2 IS NULL OR run_id=?2) "
            "ORDER BY run_id, cell_key, seq", (camera, run_id))
        return _frames(SensorFrame, rows)

    def report_frames(self, camera: str | None = None) -> list[ReportFrame]:
        """Every frame of a run's cell (of one camera, or all), ordered by observation time:
        what the calibration report (:mod:`capture.report`) plots."""
        rows = self.query(
            'SELECT run_id, cell_key, kind, camera, gain, "offset", binning, readout_mode, '
            "setpoint_c, exposure_s, path, filter, ccd_temp_c, date_obs, level_adu, noise_adu "
            "FROM frames WHERE run_id IS NOT NULL AND cell_key IS NOT NULL AND "
            "(?1 IS NULL OR camera=?1) ORDER BY date_obs, run_id, cell_key, seq", (camera,))
        return _frames(ReportFrame, rows)

    def frame_totals(self) -> tuple[int, int]:
        """(frames, bytes) in the index."""
        row = self.query("SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM frames")[0]
        return int(row["n"]), int(row["b"])

    def flat_channel_levels(self, run_id: int) -> dict[str, dict[str, float]]:
        """cell key -> mean level of each CFA channel above the bias (ADU) over the run's
        colour flats (``R``, ``G1``, ``G2``, ``B``); mono cells are absent."""
        rows = self.query(
            "SELECT cell_key, AVG(cfa_r_adu - flat_bias_adu) AS r, "
            "AVG(cfa_g1_adu - flat_bias_adu) AS g1, AVG(cfa_g2_adu - flat_bias_adu) AS g2, "
            "AVG(cfa_b_adu - flat_bias_adu) AS b FROM frames WHERE run_id=? AND kind='flat' "
            "AND cfa_r_adu IS NOT NULL AND flat_bias_adu IS NOT NULL GROUP BY cell_key",
            (run_id,))
        return {r["cell_key"]: {"R": round(r["r"], 1), "G1": round(r["g1"], 1),
                                "G2": round(r["g2"], 1), "B": round(r["b"], 1)} for r in rows}

    def flat_exposure_spans(self, run_id: int) -> dict[str, tuple[float, float]]:
        """cell key -> ([s] shortest, longest) exposure of the run's flats."""
        rows = self.query("SELECT cell_key, MIN(exposure_s) AS lo, MAX(exposure_s) AS hi "
                          "FROM frames WHERE run_id=? AND kind='flat' GROUP BY cell_key",
                          (run_id,))
        return {r["cell_key"]: (r["lo"], r["hi"]) for r in rows}
