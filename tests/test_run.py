"""End to end on the simulator: plan -> sequencer -> FITS files and index, through the real CLI."""

from __future__ import annotations

import errno
import json
import os
import stat
import textwrap
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from calibd.capture.library.index import Index
from calibd.capture.library.rescan import rescan
from tests.support import PLANS
from tests.support import REPO
from tests.support import assert_library_exact
from tests.support import fits_files
from tests.support import run_cli
from tests.support import write_config
from tests.support import write_plan

REQUIRED_KEYS = ["IMAGETYP", "EXPTIME", "EXPOSURE", "DATE-OBS", "CCD-TEMP", "SET-TEMP", "GAIN",
                 "OFFSET", "XBINNING", "YBINNING", "READOUTM", "EGAIN", "INSTRUME", "CAMERAID",
                 "ROWORDER", "SWCREATE", "PLANNAME", "RUNID", "CELLKEY", "FRAMESEQ"]

SMALL_PLAN = """
defaults: {offset: 40}
cooling: {dwell_s: 20, tolerance_c: 0.3}
sets:
  - kind: bias
    gains: [0, 100]
    setpoints_c: [-5, -15]
    count: 4
  - kind: dark
    gains: [100]
    setpoints_c: [-5, -15]
    exposures_s: [20, 60]
    count: 3
"""
SMALL_PLAN_FRAMES = 2 * 2 * 4 + 2 * 2 * 3


def status(capsys: pytest.CaptureFixture[str], library: Path, *extra: str) -> dict[str, Any]:
    res = run_cli(capsys, "library", "status", "--library", library, "--json", *extra)
    assert res.code == 0, res.err
    data: dict[str, Any] = json.loads(res.out)
    return data


def test_demo_without_config_writes_fits_with_every_keyword(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    library = tmp_path / "library"
    res = run_cli(capsys, "run", PLANS / "demo.yaml", "--library", library)
    assert res.code == 0, res.err
    files = fits_files(library)
    assert len(files) == 80
    for path in files:
        with fits.open(path) as hdul:
            h = hdul[0].header
            data = hdul[0].data
        for key in REQUIRED_KEYS:
            assert key in h, (path.name, key)
        kind, gain, offset, binning, mode, setpoint, *rest = h["CELLKEY"].split("|")
        assert h["GAIN"] == int(gain[1:]) and isinstance(h["GAIN"], int)
        assert h["OFFSET"] == int(offset[1:]) == 50
        assert h["XBINNING"] == h["YBINNING"] == int(binning[1:])
        assert h["READOUTM"] == mode
        assert h["SET-TEMP"] == float(setpoint.rstrip("C"))
        assert abs(h["CCD-TEMP"] - h["SET-TEMP"]) <= 0.5
        assert h["IMAGETYP"] == {"bias": "Bias Frame", "dark": "Dark Frame"}[kind]
        if kind == "dark":
            assert h["EXPTIME"] == h["EXPOSURE"] == h["DARKTIME"] == float(rest[0].rstrip("s"))
            assert path.parent.name == rest[0]
        else:
            assert h["EXPTIME"] < 0.001
        datetime.fromisoformat(h["DATE-OBS"])
        assert h["ROWORDER"] == "TOP-DOWN"
        assert data.dtype.kind in "ui" and data.shape == (240, 320)
        # The offset really applied: the simulator's pedestal is 10 ADU per offset unit.
        assert abs(float(np.median(data)) - 500) < 30
        assert "Master" not in path.name
    data = status(capsys, library)
    (run,) = data["runs"]
    assert run["state"] == "complete"
    assert run["planned"] == run["done"] == 80
    assert all(c["done"] == c["planned"] and c["state"] == "complete" for c in run["cells"])
    # Folders per camera, kind and settings; darks per exposure.
    assert (library / "simulator" / "Bias" / "g0_o50_bin1_-5C").is_dir()
    assert (library / "simulator" / "Darks" / "g100_o50_bin1_-10C" / "30s").is_dir()
    text = run_cli(capsys, "library", "status", "--library", library)
    assert text.code == 0 and "complete" in text.out


def test_completed_plan_is_not_captured_twice_unless_new(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    plan = write_plan(tmp_path / "p.yaml", SMALL_PLAN)
    lib = tmp_path / "lib"
    assert run_cli(capsys, "run", plan, "--config", config, "--library", lib).code == 0
    again = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert again.code == 0 and "nothing to do" in again.out
    assert len(fits_files(lib)) == SMALL_PLAN_FRAMES
    new = run_cli(capsys, "run", plan, "--config", config, "--library", lib, "--new")
    assert new.code == 0
    assert len(fits_files(lib)) == 2 * SMALL_PLAN_FRAMES
    runs = status(capsys, lib)["runs"]
    assert [r["state"] for r in runs] == ["complete", "complete"]


def test_rescan_rebuilds_the_same_index(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    plan = write_plan(tmp_path / "p.yaml", SMALL_PLAN)
    lib = tmp_path / "lib"
    assert run_cli(capsys, "run", plan, "--config", config, "--library", lib).code == 0
    before = status(capsys, lib)
    (lib / "calibd.sqlite").unlink()
    for extra in ("calibd.sqlite-wal", "calibd.sqlite-shm"):
        (lib / extra).unlink(missing_ok=True)
    assert run_cli(capsys, "library", "rescan", "--library", lib).code == 0
    after = status(capsys, lib)

    def strip(d: dict[str, Any]) -> list[Any]:
        return [(r["id"], r["plan"], r["state"], r["planned"], r["done"],
                 sorted((c["key"], c["planned"], c["done"]) for c in r["cells"]))
                for r in d["runs"]]

    assert strip(after) == strip(before)
    assert after["frames"] == before["frames"] == SMALL_PLAN_FRAMES


def test_injected_device_faults_are_survived(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", faults={
        "fail_every": 7, "disconnect_every": 11, "timeout_every": 13})
    plan = write_plan(tmp_path / "p.yaml", SMALL_PLAN)
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 0, res.err
    planned = {c["key"]: c["planned"] for c in status(capsys, lib)["runs"][0]["cells"]}
    assert_library_exact(lib, planned)
    index = Index(lib)
    kinds = [r["kind"] for r in index.events(1)]
    index.close()
    assert kinds.count("exposure-failed") >= 3  # fail_every and timeout_every
    assert "device-lost" in kinds and "reconnected" in kinds


@pytest.mark.timeout(120)  # before the one deadline, this run never ended
def test_a_camera_that_reconnects_but_drops_at_every_exposure_pauses_the_run(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", faults={"disconnect_every": 1})
    plan = write_plan(tmp_path / "p.yaml", SMALL_PLAN)
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 1
    assert "camera sim unavailable for 900 s" in res.err, res.err
    assert status(capsys, lib)["runs"][0]["state"] == "paused"
    index = Index(lib)
    events = index.events(1)
    index.close()
    lost = [e for e in events if e["kind"] == "device-lost"]
    back = [e for e in events if e["kind"] == "reconnected"]
    # Every reconnect works and the next exposure drops the camera again: back-off 1, 2, 4 ...
    # 60 s apart within the 900 s from the first drop, so a few tens of tries, not more.
    assert 5 <= len(back) <= 30 and len(lost) == len(back)  # the last drop: the pause reason
    assert not fits_files(lib)


def test_thermal_drift_rejects_and_retakes(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", faults={"thermal_glitch_every": 5,
                                                       "thermal_glitch_c": 3.0})
    plan = write_plan(tmp_path / "p.yaml", SMALL_PLAN)
    lib = tmp_path / "lib"
    assert run_cli(capsys, "run", plan, "--config", config, "--library", lib).code == 0
    index = Index(lib)
    rejected = index.events(1, "frame-rejected")
    index.close()
    # Bias frames are too short to drift; darks with a glitch are rejected.
    assert len(rejected) >= 2
    assert all("sensor at" in r["message"] for r in rejected)
    for path in fits_files(lib):
        h = fits.getheader(path)
        assert abs(h["CCDTSTRT"] - h["SET-TEMP"]) <= 0.5
        assert abs(h["CCDTEND"] - h["SET-TEMP"]) <= 0.5
    assert status(capsys, lib)["runs"][0]["done"] == SMALL_PLAN_FRAMES


def test_light_leak_in_darks_is_rejected(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", faults={"light_leak_every": 6})
    plan = write_plan(tmp_path / "p.yaml", SMALL_PLAN)
    lib = tmp_path / "lib"
    assert run_cli(capsys, "run", plan, "--config", config, "--library", lib).code == 0
    index = Index(lib)
    leaks = [r for r in index.events(1, "frame-rejected") if "light" in r["message"]]
    levels = index.query("SELECT cell_key, level_adu FROM frames WHERE kind='dark'")
    index.close()
    assert leaks
    by_cell: dict[str, list[float]] = {}
    for r in levels:
        by_cell.setdefault(r["cell_key"], []).append(r["level_adu"])
    for values in by_cell.values():
        assert max(values) - min(values) < 50, "a leaky frame was kept"


def test_unreachable_setpoint_is_skipped_with_a_reason(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    # The configured ambient makes -15 °C look reachable at check time; the simulated
    # observatory is warmer (25 °C - 35 = -10 °C at best), so the run finds out.
    config = write_config(tmp_path / "c.yaml", ambient_c=0.0, sim_ambient_c=25.0)
    plan = write_plan(tmp_path / "p.yaml", SMALL_PLAN)
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 1
    assert "not captured" in res.err and "unreachable" in res.err
    run = status(capsys, lib)["runs"][0]
    assert run["state"] == "paused"
    cells = {c["key"]: c for c in run["cells"]}
    for key, c in cells.items():
        if "|-15C" in key:
            assert c["state"] == "skipped" and c["done"] == 0
            assert "unreachable" in c["reason"]
        else:
            assert c["state"] == "complete"
    abort = write_plan(tmp_path / "abort.yaml", SMALL_PLAN.replace(
        "cooling: {", "cooling: {unreachable: abort, "))
    res = run_cli(capsys, "run", abort, "--config", config, "--library", lib)
    assert res.code == 1 and "unreachable" in res.err


def test_disk_reserve_stops_cleanly_and_resumes(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.yaml", SMALL_PLAN)
    lib = tmp_path / "lib"
    full = write_config(tmp_path / "full.yaml")
    text = full.read_text() + "library: {min_free_mb: 100000000}\n"
    full.write_text(text)
    res = run_cli(capsys, "run", plan, "--config", full, "--library", lib)
    assert res.code == 1
    assert "disk nearly full" in res.err
    assert not [p for p in lib.rglob("*.partial")]
    assert status(capsys, lib)["runs"][0]["state"] == "failed"
    ok = write_config(tmp_path / "ok.yaml")
    assert run_cli(capsys, "run", plan, "--config", ok, "--library", lib).code == 0
    assert status(capsys, lib)["runs"][0]["state"] == "complete"


def test_disk_full_during_write_loses_nothing(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from the file system (injected at os.fsync, the lowest layer) stops the run
    cleanly: the partial file is removed, every counted frame is complete, resume finishes."""
    config = write_config(tmp_path / "c.yaml")
    plan = write_plan(tmp_path / "p.yaml", SMALL_PLAN)
    lib = tmp_path / "lib"
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        if threading.current_thread().name == "calibd-writer" and \
                stat.S_ISREG(os.fstat(fd).st_mode):  # frames only, not folders or masters
            calls["n"] += 1
            if calls["n"] == 13:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 1
    assert "disk full" in res.err
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert not [p for p in lib.rglob("*.partial")]
    written = len(fits_files(lib))
    assert 0 < written < SMALL_PLAN_FRAMES
    index = Index(lib)
    assert index.query("SELECT COUNT(*) AS n FROM frames")[0]["n"] == written
    index.close()
    assert run_cli(capsys, "run", plan, "--config", config, "--library", lib).code == 0
    planned = {c["key"]: c["planned"] for c in status(capsys, lib)["runs"][0]["cells"]}
    assert_library_exact(lib, planned)


def test_two_processes_cannot_drive_one_camera_into_one_library(tmp_path: Path) -> None:
    from calibd.capture.errors import LibraryError
    from calibd.capture.library.library import Library

    first = Library.open(tmp_path / "lib", camera="sim")
    try:
        with pytest.raises(LibraryError, match="already capturing"):
            Library.open(tmp_path / "lib", camera="sim")
        other = Library.open(tmp_path / "lib", camera="other")  # another camera is fine
        other.close()
    finally:
        first.close()


def test_reconcile_indexes_orphans_and_drops_partials(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    plan = write_plan(tmp_path / "p.yaml", SMALL_PLAN)
    lib = tmp_path / "lib"
    assert run_cli(capsys, "run", plan, "--config", config, "--library", lib).code == 0
    files = fits_files(lib)
    # A crash between rename and index insert: the file exists, the row does not.
    index = Index(lib)
    index.remove_frames([files[0].relative_to(lib).as_posix()])
    index.close()
    # A crash mid-write: a partial file is left behind.
    partial = files[1].with_name("." + files[1].name + ".partial")
    partial.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    # A damaged frame of ours: moved aside, not deleted.
    damaged = files[2]
    damaged.write_bytes(damaged.read_bytes()[:4000])
    index = Index(lib)
    index.remove_frames([damaged.relative_to(lib).as_posix()])
    index.close()
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib, "--new")
    assert res.code == 0
    assert not partial.exists()
    assert (lib / ".quarantine" / damaged.relative_to(lib)).exists()
    counts = rescan(lib)
    assert counts["frames"] == 2 * SMALL_PLAN_FRAMES - 1


def test_progress_is_plain_log_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    plan = write_plan(tmp_path / "p.yaml", textwrap.dedent(SMALL_PLAN))
    res = run_cli(capsys, "run", plan, "--config", config, "--library", tmp_path / "lib")
    assert res.code == 0
    lines = [ln for ln in res.err.splitlines() if "%]" in ln]
    assert lines and all("\r" not in ln for ln in lines)
    assert any("sensor" in ln and "°C" in ln for ln in lines)


def test_logs_fit_journald_under_systemd(tmp_path: Path) -> None:
    """With JOURNAL_STREAM set (systemd), log lines carry a syslog priority, no timestamp of
    their own, and one event per line."""
    import re
    import subprocess
    import sys

    env = {**os.environ, "JOURNAL_STREAM": "8:12345"}
    proc = subprocess.run([sys.executable, "-m", "calibd", "run", str(PLANS / "demo.yaml"),
                           "--library", str(tmp_path / "lib"), "--no-progress"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines
    for line in lines:
        assert re.match(r"^<[0-7]>[\w.]+: ", line), line
        assert not re.match(r"^<[0-7]>[\w.]+: \d\d:\d\d:\d\d", line), line
    assert any(line.startswith("<6>") for line in lines)


def test_a_completed_plan_that_gains_cells_gets_only_the_new_frames(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    plan = write_plan(tmp_path / "p.yaml", SMALL_PLAN)
    lib = tmp_path / "lib"
    assert run_cli(capsys, "run", plan, "--config", config, "--library", lib).code == 0
    plan.write_text(SMALL_PLAN.replace("exposures_s: [20, 60]", "exposures_s: [20, 60, 120]"))
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 0, res.err
    assert "gained 6 frame(s) since run 1 completed" in res.err
    (run,) = status(capsys, lib)["runs"]  # the same run, extended
    assert run["state"] == "complete" and run["done"] == SMALL_PLAN_FRAMES + 6
    assert len(fits_files(lib)) == SMALL_PLAN_FRAMES + 6
