"""One header <-> index mapping: what is indexed when a frame or a master is written is what
``library rescan`` reads back from its file, for frames and masters of every kind."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from calibd.capture.config import MastersConfig
from calibd.capture.library import headermap
from calibd.capture.library.fitsio import FrameContext
from calibd.capture.library.fitsio import read_complete_header
from calibd.capture.library.headermap import FRAME_COLUMNS
from calibd.capture.library.headermap import Column
from calibd.capture.library.headermap import frame_kind
from calibd.capture.library.headermap import frame_row
from calibd.capture.library.index import COLOUR_FLAT_COLUMNS
from calibd.capture.library.index import Index
from calibd.capture.library.library import Library
from calibd.capture.library.rescan import rescan
from calibd.capture.library.writer import FrameWriter
from calibd.capture.library.writer import WriteJob
from calibd.capture.masters.export import export
from calibd.capture.masters.service import build_missing
from calibd.capture.plans.cells import Cell
from calibd.drivers.contracts import CameraInfo
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import Frame

INFO = CameraInfo(model="Test Cam 1", camera_id="SN-42", width=32, height=24, bit_depth=12,
                  pixel_size_um=3.76, gain_min=0, gain_max=300, offset_min=0, offset_max=100,
                  min_exposure_s=0.001, max_exposure_s=3600.0, has_cooler=True,
                  readout_modes=("normal", "fast"))
LEVELS = {"bias": 500.0, "dark": 900.0, "flat": 20000.0, "darkflat": 520.0}
N = 5


def _cell(kind: str, exposure_s: float, filter_name: str | None = None) -> Cell:
    return Cell(kind=kind, gain=120, offset=30, binning=1,  # type: ignore[arg-type]
                readout_mode="fast", setpoint_c=-10.0, exposure_s=exposure_s, count=N,
                filter=filter_name)


CELLS = (_cell("bias", 0.001), _cell("dark", 30.0), _cell("flat", 2.5, "Ha"),
         _cell("darkflat", 2.5), replace(_cell("dark", 60.0), sensor=True))  # (SENSSET: no master)


def _frame(cell: Cell, i: int, rng: np.random.Generator) -> Frame:
    data = rng.normal(LEVELS[cell.kind], 8.0, (24, 32))  # rows != columns: no swap goes unseen
    return Frame(data=data.clip(0, 65535).astype(np.uint16), exposure_s=cell.exposure_s,
                 dark=cell.kind != "flat",
                 settings=CaptureSettings(gain=120, offset=30, binning=1, readout_mode="fast"),
                 start_utc=datetime(2026, 3, 1, 20, cell.count, i, 125000, tzinfo=UTC),
                 temp_start_c=-10.04, temp_end_c=-9.97, setpoint_c=-10.0,
                 electrons_per_adu=0.25)


def _write_library(root: Path, extra: dict[str, str | int | float | bool] | None = None,
                   ) -> list[tuple[WriteJob, Frame]]:
    """Frames of every kind written and indexed the way a run does it."""
    rng = np.random.default_rng(7)
    lib = Library.open(root, camera="cam")
    run_id = lib.index.create_run("roundtrip", None, None, "cam", "")
    written = []
    with FrameWriter(lib.index, fsync=False) as writer:
        for cell in CELLS:
            for seq in range(1, N + 1):
                frame = _frame(cell, seq, rng)
                ctx = FrameContext("cam", INFO, cell, "roundtrip", run_id, seq,
                                   cooler_power_pct=40.0, extra=extra)
                job = lib.frame_job(frame, ctx, folder=None,
                                    stats=None if extra else {"level_adu": 1.5,
                                                              "noise_adu": 0.5})
                writer.submit(job)
                written.append((job, frame))
    lib.close()
    return written


def _rows(root: Path, table: str) -> list[dict[str, Any]]:
    index = Index(root)
    try:
        rows = index.query(f"SELECT * FROM {table} ORDER BY path")
    finally:
        index.close()
    out = [dict(zip(r.keys(), r, strict=True)) for r in rows]
    return [{k: v for k, v in r.items() if k not in ("id", "created_utc")} for r in out]


def test_frames_of_every_kind_index_what_their_files_say(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    written = _write_library(root)
    before = _rows(root, "frames")
    by_path = {job.path.relative_to(root.resolve()).as_posix(): frame for job, frame in written}
    assert sorted(by_path) == [r["path"] for r in before]
    for row in before:  # frame -> row: what the camera delivered and the cell asked for
        frame = by_path[row["path"]]
        cell = next(c for c in CELLS if c.key == row["cell_key"])
        assert row == {
            "path": row["path"], "run_id": 1, "cell_key": cell.key, "seq": row["seq"],
            "camera": "cam", "camera_id": "SN-42", "kind": cell.kind, "gain": 120, "offset": 30,
            "binning": 1, "readout_mode": "fast", "setpoint_c": -10.0, "ccd_temp_c": -10.0,
            "exposure_s": frame.exposure_s, "filter": cell.filter,
            "date_obs": f"2026-03-01T20:{N:02d}:{row['seq']:02d}.125", "width": 32,
            "height": 24, "bytes": (root / row["path"]).stat().st_size, "level_adu": 1.5,
            "noise_adu": 0.5, "mtime_ns": (root / row["path"]).stat().st_mtime_ns,
            "sensor": int(cell.sensor), **dict.fromkeys(COLOUR_FLAT_COLUMNS)}  # mono
        # frame -> header -> row: the file's header gives the same columns
        header = read_complete_header(root / row["path"])
        assert frame_row(header) == {c.name: row[c.name] for c in FRAME_COLUMNS}
    assert {r["kind"] for r in before} == {"bias", "dark", "flat", "darkflat"}
    assert rescan(root)["frames"] == len(written)
    after = _rows(root, "frames")  # pixel levels are not in the header: measured at capture
    # (and a rebuilt row's file is verified against its checksums before it is counted)
    assert after == [{**r, "level_adu": None, "noise_adu": None, "mtime_ns": None}
                     for r in before]


def test_a_keyword_added_to_the_table_reaches_the_writer_and_rescan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(headermap, "FRAME_COLUMNS",
                        (*headermap.FRAME_COLUMNS, Column("noise_adu", "NOISEADU")))
    root = tmp_path / "lib"
    _write_library(root, extra={"NOISEADU": 2.25})
    assert {r["noise_adu"] for r in _rows(root, "frames")} == {2.25}
    rescan(root)
    assert {r["noise_adu"] for r in _rows(root, "frames")} == {2.25}


def test_masters_of_every_kind_index_what_their_files_say(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    _write_library(root)
    index = Index(root)
    report = build_missing(index, MastersConfig(bpm_block_px=8,
                                                dark_convention="bias-subtracted"))
    index.close()
    assert not report.failed and len(report.built) == 5
    before = _rows(root, "masters")
    kinds = {r["kind"]: r for r in before}
    assert sorted(kinds) == ["bias", "bpm", "dark", "darkflat", "flat"]
    for kind, row in kinds.items():  # what was built: settings of the frames, the image's size
        assert (row["camera"], row["camera_id"], row["gain"], row["binning"],
                row["width"], row["height"], row["bit_depth"]) == \
            ("cam", "SN-42", 120, 1, 32, 24, 12), kind
        if kind != "bpm":
            assert (row["run_id"], row["offset"], row["readout_mode"], row["setpoint_c"],
                    row["ncombine"], row["instrument"]) == \
                (1, 30, "fast", -10.0, N, "Test Cam 1"), kind
    assert kinds["dark"]["calibration"].startswith("bias:Master_Bias_")
    assert kinds["flat"]["calibration"].startswith("darkflat:Master_DarkFlat_")
    assert kinds["flat"]["filter"] == "Ha" and kinds["flat"]["exposure_s"] == 2.5
    assert kinds["bpm"]["cell_key"] == "bpm|cam|g120|b1" and kinds["bpm"]["ncombine"] == 2
    rescan(root)
    assert _rows(root, "masters") == before
    # Dark flats are told apart by IMAGETYP alone; WBPP gets them as the darks of the flats.
    darkflat = root / kinds["darkflat"]["path"]
    assert fits.getheader(darkflat)["IMAGETYP"] == "Master Dark Flat"
    assert {fits.getheader(p)["IMAGETYP"] for p in root.rglob("*.fits")
            if frame_kind(fits.getheader(p)) == "darkflat"} == {"Dark Flat"}
    index = Index(root)
    try:
        done = {e.master.kind: e for e in export(index, tmp_path / "wbpp", "wbpp",
                                                 dark_convention="bias-subtracted")}
    finally:
        index.close()
    wbpp = fits.getheader(done["darkflat"].path)
    assert wbpp["IMAGETYP"] == "Master Dark" and wbpp["CALTYPE"] == "DARKFLAT"
    assert done["darkflat"].path.name.startswith("DARKFLAT_") and done["darkflat"].how == "written"
