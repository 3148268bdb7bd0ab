"""Regression tests for bugs found in review: resume around dark flats, rescan with dark flats
never started, frames the user deleted, camera matching, a full disk while building masters,
several cameras in one library, cron time zones, the API's camera choice and token rotation.

A SIGKILL at an exact moment cannot be scheduled from a test, so "killed here" is simulated by a
BaseException raised at that point: nothing in calibd catches it, no run state is written, the
index is left as a kill would leave it (run "running").
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import textwrap
import threading
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import yaml
from astropy.io import fits

from calibd.capture.flats import runner as flats_runner
from tests.support import QUICK_BIAS
from tests.support import assert_library_exact
from tests.support import daemon_env
from tests.support import ready
from tests.support import run_cli
from tests.support import wait_for
from tests.support import write_config
from tests.support import write_plan


class Killed(BaseException):
    """Stands in for SIGKILL: escapes every handler in calibd."""


def _kill_before_dark_flats(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next call of FlatRunner.dark_flats (flats of a group done, dark flats not started)
    kills the process."""
    def killed(self: Any, *args: Any) -> None:
        raise Killed("SIGKILL between the flats and their dark flats")

    monkeypatch.setattr(flats_runner.FlatRunner, "dark_flats", killed)


def _status(capsys: pytest.CaptureFixture[str], library: Path) -> dict[str, Any]:
    res = run_cli(capsys, "library", "status", "--library", library, "--json")
    assert res.code == 0, res.err
    data: dict[str, Any] = json.loads(res.out)
    return data


def _no_auto_masters(config: Path) -> Path:
    config.write_text(config.read_text() + "masters: {auto: false}\n", encoding="utf-8")
    return config


PANEL_FLATS_TWO_SETPOINTS = textwrap.dedent("""
    defaults: {offset: 50}
    cooling: {dwell_s: 10, tolerance_c: 0.5}
    warmup: {enabled: false}
    sets:
      - kind: flat
        source: panel
        filters: [L]
        gains: [100]
        setpoints_c: [-5, -10]
        count: 2
        panel: {mode: brightness, exposure_s: 2}
        dark_flats: {count: 2}
""")

PANEL_FLATS_ONE_SETPOINT = PANEL_FLATS_TWO_SETPOINTS.replace("[-5, -10]", "[-5]")


# ----- 1. resume loses the dark flats of the warmer set-point ----------------------------------
def test_resume_after_kill_before_dark_flats_captures_dark_flats_at_every_setpoint(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the -5 °C flats, before their dark flats. The resumed run must take the
    -5 °C dark flats too; it skips them and marks the run complete."""
    config = _no_auto_masters(write_config(tmp_path / "c.yaml", flats=True))
    plan = write_plan(tmp_path / "p.yaml", PANEL_FLATS_TWO_SETPOINTS)
    lib = tmp_path / "lib"
    real = flats_runner.FlatRunner.dark_flats
    _kill_before_dark_flats(monkeypatch)
    with pytest.raises(Killed):
        run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    monkeypatch.setattr(flats_runner.FlatRunner, "dark_flats", real)
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 0, res.err
    assert_library_exact(lib, {
        "flat|g100|o50|b1|normal|-5C|f:L": 2,
        "flat|g100|o50|b1|normal|-10C|f:L": 2,
        "darkflat|g100|o50|b1|normal|-5C|2s": 2,
        "darkflat|g100|o50|b1|normal|-10C|2s": 2,
    })


# ----- 2. rescan declares a run complete whose dark flats never started -----------------------
def test_rescan_does_not_complete_a_run_whose_dark_flats_never_started(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = _no_auto_masters(write_config(tmp_path / "c.yaml", flats=True))
    plan = write_plan(tmp_path / "p.yaml", PANEL_FLATS_ONE_SETPOINT)
    lib = tmp_path / "lib"
    real = flats_runner.FlatRunner.dark_flats
    _kill_before_dark_flats(monkeypatch)
    with pytest.raises(Killed):
        run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    monkeypatch.setattr(flats_runner.FlatRunner, "dark_flats", real)
    assert run_cli(capsys, "library", "rescan", "--library", lib).code == 0
    (run,) = _status(capsys, lib)["runs"]
    assert run["state"] != "complete", "the dark flats were never taken"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 0, res.err
    assert "nothing to do" not in res.out
    assert_library_exact(lib, {"flat|g100|o50|b1|normal|-5C|f:L": 2,
                               "darkflat|g100|o50|b1|normal|-5C|2s": 2})


# ----- 3. resumed dark flats are taken with the panel still lit --------------------------------
def test_resumed_dark_flats_are_taken_with_the_panel_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The killed process left the panel lit (a real flip-flat keeps its state). The resumed
    session captures the pending dark flats without turning the panel off, and the per-frame
    checks accept dark flats at ~50000 ADU."""
    from calibd.capture.config import load_config
    from calibd.capture.runner import prepare
    from calibd.capture.runner import run_prepared

    config, located = load_config(_no_auto_masters(write_config(tmp_path / "c.yaml",
                                                                flats=True)))
    plan = write_plan(tmp_path / "p.yaml", PANEL_FLATS_ONE_SETPOINT)
    lib = tmp_path / "lib"
    prepared = prepare(plan, config, located)
    try:
        real = flats_runner.FlatRunner.dark_flats
        _kill_before_dark_flats(monkeypatch)
        with pytest.raises(Killed):
            run_prepared(prepared, lib)
        monkeypatch.setattr(flats_runner.FlatRunner, "dark_flats", real)
        panel = prepared.setup.panel
        assert panel is not None
        panel.light(512)  # as the killed process left it
        outcome = run_prepared(prepared, lib)
    finally:
        prepared.setup.disconnect()
    assert outcome.result is not None and outcome.result.complete
    darks = sorted((lib / "sim" / "DarkFlats").rglob("*.fits"))
    assert len(darks) == 2
    for path in darks:
        level = float(np.median(fits.getdata(path)))
        assert level < 600, f"{path.name}: a lit 'dark flat' at {level:.0f} ADU was kept"


# ----- 4. masters build crashes when the user deleted a cell's frames -------------------------
BIAS_TWO_GAINS = textwrap.dedent("""
    defaults: {offset: 50}
    cooling: {dwell_s: 10, tolerance_c: 0.5}
    warmup: {enabled: false}
    sets:
      - kind: bias
        gains: [0, 100]
        setpoints_c: [-5]
        count: 3
""")


def test_masters_build_after_the_user_deleted_a_cells_frames(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = _no_auto_masters(write_config(tmp_path / "c.yaml"))
    plan = write_plan(tmp_path / "p.yaml", BIAS_TWO_GAINS)
    lib = tmp_path / "lib"
    assert run_cli(capsys, "run", plan, "--config", config, "--library", lib).code == 0
    shutil.rmtree(lib / "sim" / "Bias" / "g0_o50_bin1_-5C")  # the user deletes one cell
    res = run_cli(capsys, "masters", "build", "--library", lib)  # raised IndexError
    assert res.code in (0, 1), res.err
    assert (lib / "sim" / "Masters" / "Bias" / "Master_Bias_g100_o50_bin1_normal_-5C_r1.fits"
            ).is_file()
    assert not list((lib / "sim" / "Masters" / "Bias").glob("Master_Bias_g0_*"))


# ----- 5. library match hands a light from another camera this camera's masters ---------------
BIAS_AND_DARK = textwrap.dedent("""
    defaults: {offset: 50}
    cooling: {dwell_s: 10, tolerance_c: 0.5}
    warmup: {enabled: false}
    sets:
      - kind: bias
        gains: [100]
        setpoints_c: [-5]
        count: 3
      - kind: dark
        gains: [100]
        setpoints_c: [-5]
        exposures_s: [10]
        count: 3
""")


def test_match_does_not_offer_masters_of_another_camera_model(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The docstring promises camera matching on CAMERAID, else INSTRUME. A light from an
    ASI294MM (no CAMERAID, as many capture programs write it; another sensor size) gets the
    simulated 320x240 camera's bias, dark and bad pixel map as 'same camera and settings'."""
    config = write_config(tmp_path / "c.yaml")
    plan = write_plan(tmp_path / "p.yaml", BIAS_AND_DARK)
    lib = tmp_path / "lib"
    assert run_cli(capsys, "run", plan, "--config", config, "--library", lib).code == 0
    assert list((lib / "sim" / "Masters").rglob("Master_Bias_*.fits"))
    light = tmp_path / "light.fits"
    header = fits.Header()
    for key, value in (("IMAGETYP", "Light Frame"), ("INSTRUME", "ZWO CCD ASI294MM Pro"),
                       ("GAIN", 100), ("OFFSET", 50), ("XBINNING", 1), ("EXPTIME", 10.0),
                       ("SET-TEMP", -5.0), ("FILTER", "L")):
        header[key] = value
    fits.writeto(light, np.zeros((2822 // 8, 4144 // 8), dtype=np.uint16), header)
    res = run_cli(capsys, "library", "match", light, "--library", lib, "--json")
    assert res.code == 0, res.err
    chosen = {m["kind"]: m["path"] for m in json.loads(res.out)["masters"]}
    assert chosen["bias"] is None and chosen["dark"] is None and chosen["bpm"] is None, chosen


# ----- 6. a master that cannot be written (disk full) crashes the run -------------------------
def test_disk_full_while_building_masters_is_reported_not_raised(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames are written; the masters (automatic at the end of the run) hit ENOSPC. The
    OSError escapes run_prepared: a traceback from `calibd run`, and in the daemon the camera
    worker dies (CameraWorker catches only LibraryError/CoolingTimeout/DeviceError)."""
    config = write_config(tmp_path / "c.yaml")
    plan = write_plan(tmp_path / "p.yaml", BIAS_TWO_GAINS)
    lib = tmp_path / "lib"
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if threading.current_thread().name != "calibd-writer":  # frames fine, masters not
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)  # raised OSError
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert res.code in (0, 1)
    assert "fail" in (res.out + res.err).lower()
    (run,) = _status(capsys, lib)["runs"]
    assert run["state"] == "complete" and run["done"] == 6


# ----- 7. one camera's run start deletes another camera's frame being written -----------------
def test_opening_the_library_for_one_camera_keeps_another_cameras_write_in_flight(
        tmp_path: Path) -> None:
    """Several cameras capture into one library (the daemon runs them concurrently). Camera
    "a" starting a run reconciles the whole library and removes camera "b"'s `.partial` file
    while b's writer is between writing it and renaming it: b's os.replace then fails and
    b's run stops with "cannot write"."""
    from calibd.capture.library.library import Library

    root = tmp_path / "lib"
    b = Library.open(root, camera="b")  # b is capturing: it holds its lock
    try:
        in_flight = (root / "b" / "Darks" / "g100_o50_bin1_-10C" / "300s" /
                     ".Dark_300s_g100_o50_bin1_-10C_20261125T031522Z_r1-0001.fits.partial")
        in_flight.parent.mkdir(parents=True)
        in_flight.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
        a = Library.open(root, camera="a")
        a.close()
        assert in_flight.exists(), "camera a removed camera b's file while b was writing it"
    finally:
        b.close()


# ----- 8. a changed time zone never reaches a stored cron schedule ----------------------------
def test_cron_schedule_follows_a_changed_time_zone(tmp_path: Path) -> None:
    """daemon.timezone Europe/Rome -> UTC, daemon restarted: the persistent job keeps firing
    at 10:00 Rome (09:00 UTC) because sync_jobs compares str(trigger), which has no zone."""
    from calibd.capture.config import CronSchedule
    from calibd.capture.daemon.scheduling import make_scheduler
    from calibd.capture.daemon.scheduling import sync_jobs
    from calibd.drivers.clock import RealClock

    schedules = [CronSchedule(name="daily", trigger="cron", cron="0 10 * * *",
                              plan=Path("p.yaml"))]
    for zone in ("Europe/Rome", "UTC"):  # two daemon starts on the same state folder
        tz = ZoneInfo(zone)
        scheduler = make_scheduler(tmp_path, RealClock(), tz)
        scheduler.start(paused=True)
        try:
            sync_jobs(scheduler, list(schedules), None, tz)
            job = scheduler.get_job("daily")
            assert job is not None
            nxt = job.next_run_time.astimezone(tz)
        finally:
            scheduler.shutdown(wait=False)
        assert (nxt.hour, nxt.minute) == (10, 0), (zone, job.next_run_time.astimezone(UTC))


# ----- 9/10. the daemon: API start ignores the plan's camera; SIGHUP ignores the token file ----
def test_api_start_runs_the_plan_on_the_camera_it_names(tmp_path: Path) -> None:
    """`calibd control start --plan P`: "--camera (default: the plan's, or the only one)".
    With two cameras and `camera: sim2` in the plan the daemon answers 400 "name one"."""
    with daemon_env(tmp_path) as env:
        env.write_config()
        data = yaml.safe_load(env.config.read_text())
        data["cameras"]["sim2"] = {"driver": "simulator", "profile": "small", "offset": 50,
                                   "seed": 9}
        env.config.write_text(yaml.safe_dump(data, sort_keys=False))
        plan = env.plan("bias.yaml", "camera: sim2\n" + QUICK_BIAS)
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        code, body = env.api("POST", "/api/v1/runs", {"plan": plan.name})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert code == 202, body
        assert body["message"].startswith("sim2:"), body


def test_sighup_rereads_the_api_token_file(tmp_path: Path) -> None:
    """The token is rotated in daemon.api.token_file and the daemon reloaded: the new token
    must work and the old (maybe leaked) one must stop working. _do_reload compares only the
    inline `token` values (None == None), so the old token stays valid."""
    old, new = "first-token-0123456789abcdef", "second-token-0123456789abcdef"
    with daemon_env(tmp_path) as env:
        token_file = tmp_path / "api-token"
        token_file.write_text(old + "\n", encoding="utf-8")
        env.write_config(api={"host": "127.0.0.1", "port": 0, "token_file": str(token_file)})
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        assert env.api("POST", "/api/v1/cameras/sim/resume", token=old)[0] == 200
        token_file.write_text(new + "\n", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in env.log(), 20, "the reload")
        with_new = env.api("POST", "/api/v1/cameras/sim/resume", token=new)[0]
        with_old = env.api("POST", "/api/v1/cameras/sim/resume", token=old)[0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert (with_new, with_old) == (200, 401)
