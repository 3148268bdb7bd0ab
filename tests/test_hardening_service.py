"""Fault injection on the daemon as a real subprocess (one daemon shared by the cases, in order):
an unexpected error in one camera's run pauses that camera with the reason while the other
camera, the status API and the watchdog go on; pause and resume continue the same run; a
damaged library index never takes the status down."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import LONG_DARKS
from tests.support import PLANS
from tests.support import REPO
from tests.support import Env
from tests.support import calibd_subprocess
from tests.support import daemon_env
from tests.support import library_runs
from tests.support import ready
from tests.support import run_cli
from tests.support import wait_for
from tests.support import write_config
from tests.support import write_plan

DARKS_6 = LONG_DARKS.replace("count: 16", "count: 6")
DARKS_10 = LONG_DARKS.replace("count: 16", "count: 10")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with daemon_env(tmp_path_factory.mktemp("hardening")) as env:
        env.write_config(scale=300.0)
        data = yaml.safe_load(env.config.read_text())
        data["cameras"] = {
            # every 3rd exposure raises a RuntimeError from the camera: a driver bug
            "faulty": {"driver": "simulator", "profile": "small", "offset": 50,
                       "faults": {"bug_every": 3}},
            "good": {"driver": "simulator", "profile": "small", "offset": 50, "seed": 9},
        }
        env.config.write_text(yaml.safe_dump(data, sort_keys=False))
        proc = env.start(watchdog_s=1.0)
        wait_for(lambda: ready(env), 30, "READY=1")
        yield env
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def status(env: Env) -> dict[str, Any]:
    code, body = env.api("GET", "/api/v1/status", token=None)
    assert code == 200, body
    return body


def camera(env: Env, name: str) -> dict[str, Any]:
    cam: dict[str, Any] = status(env)["cameras"][name]
    return cam


def pings(env: Env) -> int:
    return env.notify.lines().count("WATCHDOG=1")


def runs_of(env: Env, cam: str, plan: str) -> list[dict[str, Any]]:
    return [r for r in library_runs(env.library) if r["camera"] == cam and r["plan"] == plan]


def paused_with(env: Env, name: str, text: str) -> bool:
    cam = camera(env, name)
    return cam["state"] == "paused" and text in (cam.get("reason") or "")


def test_an_error_in_one_camera_pauses_it_and_everything_else_goes_on(env: Env) -> None:
    faulty_plan = env.plan("faulty-darks.yaml", DARKS_6)
    good_plan = env.plan("good-darks.yaml", DARKS_10)
    for cam, plan in (("faulty", faulty_plan), ("good", good_plan)):
        code, body = env.api("POST", "/api/v1/runs", {"plan": plan.name, "camera": cam})
        assert code in (200, 202), body
    wait_for(lambda: paused_with(env, "faulty", "injected driver bug"), 60,
             "the faulty camera to pause with the reason")
    cam = camera(env, "faulty")
    assert "RuntimeError" in cam["reason"] and "faulty-darks" in cam["reason"]
    assert cam["plan"] == str(faulty_plan)  # the paused run is shown, not "-"
    assert cam["run"]["run_id"] is not None and cam["run"]["frames_done"] == 2
    # The daemon stays healthy: the watchdog goes on and the other camera keeps capturing.
    before = pings(env)
    wait_for(lambda: pings(env) >= before + 3, 15, "watchdog pings after the error")
    assert status(env)["daemon"]["healthy"] is True
    wait_for(lambda: any(r["state"] == "complete" for r in runs_of(env, "good", "good-darks")),
             90, "the good camera's run")
    assert camera(env, "faulty")["state"] == "paused"
    # `calibd status` shows the paused run and why.
    port = int((env.state / "api.port").read_text())
    out = subprocess.run([sys.executable, "-m", "calibd", "status", "--url",
                          f"http://127.0.0.1:{port}"], cwd=REPO, capture_output=True, text=True,
                         check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("faulty "))
    assert "paused" in row and "faulty-darks" in row and "2/6" in row
    assert "injected driver bug" in out.stdout and "control resume faulty" in out.stdout
    # The pause is remembered with its reason (a restart does not retry the crash in a loop).
    db = sqlite3.connect(env.state / "daemon.sqlite")
    try:
        rows = db.execute("SELECT camera, reason FROM paused").fetchall()
    finally:
        db.close()
    assert [c for c, _ in rows] == ["faulty"] and "injected driver bug" in rows[0][1]
    # Each resume retries the same run; the fault hits every 3rd exposure of a session.
    assert env.api("POST", "/api/v1/cameras/faulty/resume")[0] == 200
    wait_for(lambda: paused_with(env, "faulty", "injected driver bug")
             and camera(env, "faulty")["run"]["frames_done"] == 4, 60, "the second session")
    assert env.api("POST", "/api/v1/cameras/faulty/resume")[0] == 200
    wait_for(lambda: any(r["state"] == "complete"
                         for r in runs_of(env, "faulty", "faulty-darks")), 60, "the last frames")
    (run,) = runs_of(env, "faulty", "faulty-darks")
    assert run["done"] == 6
    assert camera(env, "faulty")["state"] == "idle"


def test_pause_then_resume_continues_the_same_run_at_once(env: Env) -> None:
    plan = env.plan("pause-darks.yaml", DARKS_10)
    assert env.api("POST", "/api/v1/runs", {"plan": plan.name, "camera": "good"})[0] in (200,
                                                                                         202)
    wait_for(lambda: (camera(env, "good").get("run") or {}).get("frames_done", 0) >= 2, 60,
             "a few darks")
    code, body = env.api("POST", "/api/v1/cameras/good/pause")
    assert code == 200, body
    wait_for(lambda: camera(env, "good")["state"] == "paused", 30, "the pause")
    cam = camera(env, "good")
    assert cam["plan"] == str(plan) and cam["reason"] == "paused by the operator"
    (run,) = runs_of(env, "good", "pause-darks")
    assert cam["run"]["run_id"] == run["id"] and run["state"] == "interrupted"
    held = run["done"]
    time.sleep(2.0)  # 6 simulated exposures' time: nothing is captured while paused
    assert runs_of(env, "good", "pause-darks")[0]["done"] == held < 10
    code, body = env.api("POST", "/api/v1/cameras/good/resume")
    assert code == 200 and "pause-darks" in body["message"], body
    wait_for(lambda: runs_of(env, "good", "pause-darks")[0]["done"] > held, 20,
             "capture to continue right after resume")
    wait_for(lambda: runs_of(env, "good", "pause-darks")[0]["state"] == "complete", 60,
             "the run to complete")
    (run,) = runs_of(env, "good", "pause-darks")  # the same run, not a new one
    assert run["done"] == 10 and camera(env, "good")["state"] == "idle"


def damage_index(library: Path) -> None:
    """Overwrite every page of the index with garbage except the schema page and the small
    ``meta`` table (so the index still opens and the damage shows in the first real query)."""
    path = library / "calibd.sqlite"
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = db.execute("PRAGMA page_size").fetchone()[0]
        keep = {1} | {r[0] for r in db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name='meta'")}
    finally:
        db.close()
    data = bytearray(path.read_bytes())
    noise = os.urandom(len(data))
    for n in range(2, len(data) // page + 1):
        if n not in keep:
            data[(n - 1) * page:n * page] = noise[(n - 1) * page:n * page]
    path.write_bytes(bytes(data))


def test_a_damaged_index_never_takes_the_status_or_the_daemon_down(env: Env) -> None:
    wait_for(lambda: all(c["state"] == "idle" for c in status(env)["cameras"].values()), 30,
             "idle cameras")
    damage_index(env.library)
    library = status(env)["library"]  # 200, not 500
    assert "error" in library or library.get("frames") is not None
    plan = env.plan("after-damage.yaml", DARKS_6)
    before = pings(env)
    assert env.api("POST", "/api/v1/runs", {"plan": plan.name, "camera": "good"})[0] in (200,
                                                                                         202)

    def settled() -> bool:
        cam = camera(env, "good")
        return (cam["state"] == "paused" and bool(cam.get("reason"))) or (
            cam["state"] == "idle" and bool(cam["last"]) and "after-damage" in cam["last"]["plan"])

    wait_for(settled, 60, "the run to end (paused with a reason, or repaired and done)")
    wait_for(lambda: pings(env) >= before + 3, 15, "watchdog pings after the damage")
    body = status(env)
    assert body["daemon"]["healthy"] is True
    cam = body["cameras"]["good"]
    if cam["state"] == "paused":
        assert "after-damage" in cam["reason"] and cam["plan"] == str(plan)
    else:
        assert cam["last"]["ok"] is True, cam["last"]
    assert env.procs[0].poll() is None


# ----- settings verified against what the camera read back (issue item 15) -------------------

IGNORED_SETTINGS = """
cooling: {dwell_s: 10, tolerance_c: 0.5}
warmup: {enabled: false}
sets:
  - kind: bias
    gains: [100]
    offsets: [10]
    setpoints_c: [5]
    count: 2
  - kind: bias
    gains: [0]
    offsets: [30]
    setpoints_c: [5]
    count: 2
"""


def test_a_camera_that_ignores_gain_and_offset_gets_nothing_filed_under_the_cell(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The simulated camera accepts gain/offset requests and keeps gain 100, offset 10 (its
    power-on values, as the INDI camera in the report did): the g100_o10 cell is captured, the
    g0_o30 cell fails with the read-back values, and no frame lands in a g0_o30 folder."""
    from astropy.io import fits

    config = write_config(tmp_path / "calibd.yaml", faults={"ignore_gain_offset": True})
    plan = write_plan(tmp_path / "bias.yaml", IGNORED_SETTINGS)
    library = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", library)
    assert res.code == 1, res.err
    text = res.out + res.err
    assert "gain 100 instead of 0" in text and "offset 10 instead of 30" in text, text
    files = sorted(library.rglob("*.fits"))
    assert len(files) == 2 and all("g100_o10" in str(p) for p in files), files
    for path in files:
        header = fits.getheader(path)
        assert (header["GAIN"], header["OFFSET"]) == (100, 10)
    assert not any("g0_o30" in str(p) for p in library.rglob("*"))
    (run,) = library_runs(library)
    cells = {c["key"]: c for c in run["cells"]}
    failed = [c for c in cells.values() if c["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["done"] == 0
    assert "instead of 30" in failed[0]["reason"]


def test_a_frame_taken_with_other_settings_than_its_cell_is_refused() -> None:
    from calibd.capture.sequencer.checks import settings_mismatch
    from calibd.drivers.contracts import CaptureSettings

    wanted = CaptureSettings(gain=100, offset=30, binning=1, readout_mode="High Gain")
    assert settings_mismatch(wanted, wanted) is None
    got = CaptureSettings(gain=0, offset=30, binning=2, readout_mode="High Gain")
    problem = settings_mismatch(wanted, got)
    assert problem is not None and "gain 0 instead of 100" in problem
    assert "binning 2 instead of 1" in problem and "offset" not in problem


# ----- daylight saving time (issue item 17) --------------------------------------------------

@pytest.mark.parametrize(("start", "expected"), [
    # autumn: 02:30 happens twice (CEST 00:30 UTC, then CET 01:30 UTC): fire once, the first
    (datetime(2026, 10, 24, 23, 0, tzinfo=UTC), [datetime(2026, 10, 25, 0, 30, tzinfo=UTC)]),
    # spring: 02:30 does not exist: fire once at 03:30 CEST (01:30 UTC)
    (datetime(2026, 3, 28, 23, 30, tzinfo=UTC), [datetime(2026, 3, 29, 1, 30, tzinfo=UTC)]),
], ids=["autumn", "spring"])
def test_a_daily_cron_fires_once_across_a_dst_change(tmp_path: Path, start: datetime,
                                                     expected: list[datetime]) -> None:
    """The daemon's scheduler on a simulated clock (1 h per real second) runs through the night
    of the change with a daily 02:30 schedule in Europe/Rome."""
    from zoneinfo import ZoneInfo

    from calibd.capture.config import CronSchedule
    from calibd.capture.daemon.scheduling import make_scheduler
    from calibd.capture.daemon.scheduling import set_fire_target
    from calibd.capture.daemon.scheduling import sync_jobs
    from calibd.capture.daemon.scheduling import use_clock_for_apscheduler
    from calibd.drivers.clock import RealClock
    from calibd.simulators.clock import ScaledClock

    clock = ScaledClock(scale=3600.0, start=start)
    tz = ZoneInfo("Europe/Rome")
    fired: list[datetime] = []
    set_fire_target(lambda name: fired.append(clock.now()))
    scheduler = make_scheduler(tmp_path, clock, tz)
    try:
        scheduler.start(paused=True)
        sync_jobs(scheduler, [CronSchedule(name="nightly", trigger="cron", cron="30 2 * * *",
                                           plan=Path("p.yaml"))], None, tz)
        scheduler.resume()
        end = start + timedelta(hours=3, minutes=30)
        while clock.now() < end:
            time.sleep(0.05)
        job = scheduler.get_job("nightly")
        assert job is not None and job.next_run_time.astimezone(tz).hour == 2
    finally:
        scheduler.shutdown(wait=False)
        set_fire_target(None)
        use_clock_for_apscheduler(RealClock())  # APScheduler back on real time
    assert len(fired) == len(expected), fired
    for got, want in zip(fired, expected, strict=True):
        assert abs((got - want).total_seconds()) < 300, (got, want)


# ----- the end of the calendar (issue item 18) -----------------------------------------------

@pytest.mark.parametrize(("scale", "start", "code", "says"), [
    (5000.0, "9999-12-31T18:00:00+00:00", 2, "clock.start: too close to the end of the calendar"),
    (0.001, "9999-12-31T12:00:00+00:00", 0, "no twilight window"),
], ids=["refused", "no-window"])
def test_plan_check_near_the_end_of_year_9999(tmp_path: Path, scale: float, start: str,
                                              code: int, says: str) -> None:
    config = write_config(tmp_path / "calibd.yaml", flats=True, scale=scale, start=start)
    proc = calibd_subprocess("plan", "check", PLANS / "sky-flats.yaml", "--config", config,
                             "--library", tmp_path / "lib", timeout=120)
    assert proc.returncode == code, proc.stderr
    assert says in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr


# ----- one clock for the journal (issue item 19) ---------------------------------------------

def test_the_run_journal_uses_the_clock_the_frames_use(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A simulated clock starting in 2031: the run's start/finish and its journal events carry
    that clock's time (as DATE-OBS does), not the machine's."""
    from astropy.io import fits

    from calibd.capture.library.index import Index

    config = write_config(tmp_path / "calibd.yaml", start="2031-05-05T10:00:00+00:00",
                          faults={"fail_every": 2})  # failed exposures: journal events
    plan = write_plan(tmp_path / "bias.yaml", IGNORED_SETTINGS[:IGNORED_SETTINGS.rindex(
        "  - kind: bias")])
    library = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", library)
    assert res.code == 0, res.err
    (run,) = library_runs(library)
    obs = sorted(fits.getheader(p)["DATE-OBS"] for p in library.rglob("*.fits"))
    assert obs and all(t.startswith("2031-05-05") for t in obs), obs
    assert run["started_utc"][:19] <= obs[0][:19] <= obs[-1][:19] <= run["finished_utc"][:19]
    index = Index(library)
    try:
        events = index.events(run["id"])
    finally:
        index.close()
    assert events and all(e["time_utc"].startswith("2031-05-05") for e in events), \
        [dict(e) for e in events]


# ----- the run's ETA counts the flats and dark flats still to come (issue item 16) -----------

PANEL_FLATS = """
name: eta-flats
defaults: {offset: 50}
cooling: {dwell_s: 10, tolerance_c: 0.5}
warmup: {enabled: false}
sets:
  - kind: flat
    source: panel
    filters: [L]
    gains: [100]
    setpoints_c: [5]
    count: 6
    target_adu: 20000
    tolerance_pct: 10
    min_exposure_s: 0.05
    max_exposure_s: 30
    panel: {mode: exposure, brightness: 512}
    dark_flats: {count: 6}
"""


def test_the_eta_counts_the_flats_and_dark_flats_still_to_come(tmp_path: Path) -> None:
    """After the first flat is kept, 5 flats and 6 dark flats (all at the flats' exposure) are
    still to come: the ETA reported then must cover their exposures (it said "2 s")."""
    from calibd.capture.config import load_config
    from calibd.capture.runner import prepare
    from calibd.capture.runner import run_prepared
    from calibd.capture.sequencer.status import RunStatus

    config_path = write_config(tmp_path / "calibd.yaml", flats=True, scale=50.0)
    config, located = load_config(config_path)
    prepared = prepare(write_plan(tmp_path / "flats.yaml", PANEL_FLATS), config, located)
    seen: list[tuple[datetime, RunStatus]] = []

    def report(status: RunStatus) -> None:
        if status.eta_s is not None and status.cell and status.cell.startswith("flat"):
            seen.append((prepared.clock.now(), RunStatus(**status.to_dict())))


    try:
        outcome = run_prepared(prepared, tmp_path / "lib", reporter=report)
    finally:
        prepared.setup.disconnect()
    assert outcome.result is not None and outcome.result.complete
    from astropy.io import fits

    frames = [fits.getheader(p) for p in sorted((tmp_path / "lib").rglob("*.fits"))]
    flats = [h for h in frames if h["IMAGETYP"] == "Flat Frame"]
    darks = [h for h in frames if h["IMAGETYP"] != "Flat Frame"]
    assert len(flats) == 6 and len(darks) == 6
    exposure = flats[-1]["EXPTIME"]
    still_to_come = 11 * exposure  # 5 flats and 6 dark flats, read-out not even counted
    first = next(s for _, s in seen if s.cell_done == 1)
    assert first.eta_s is not None and first.eta_s >= 0.9 * still_to_come, \
        (first.eta_s, still_to_come)
    assert first.eta_s <= 3 * still_to_come + 60, (first.eta_s, still_to_come)


def test_plan_check_estimates_the_warm_up_to_the_target_the_run_uses(tmp_path: Path) -> None:
    """The camera's configured ambient is 15 °C: the warm-up after the -10 °C set-point ramps
    to 15 °C at 3 °C/min (500 s), and plan check says so (it estimated the ramp to the sensor's
    current temperature instead)."""
    import json

    from calibd.capture.plans.model import Warmup

    config = write_config(tmp_path / "calibd.yaml", ambient_c=15.0)
    plan = write_plan(tmp_path / "bias.yaml", IGNORED_SETTINGS.replace("setpoints_c: [5]",
                                                                       "setpoints_c: [-10]")
                      .replace("warmup: {enabled: false}", "warmup: {rate_c_per_min: 3}"))
    proc = calibd_subprocess("plan", "check", plan, "--config", config, "--json",
                             "--library", tmp_path / "lib", timeout=60)
    assert proc.returncode == 0, proc.stderr
    est = json.loads(proc.stdout)["estimate"]
    assert est["warmup_target_c"] == 15.0
    assert abs(est["warmup_s"] - 25.0 / 3.0 * 60.0) < 1.0, est
    text = calibd_subprocess("plan", "check", plan, "--config", config, "--library",
                             tmp_path / "lib", timeout=60).stdout
    assert "warm-up 8 min 20 s to 15 °C" in text, text
    # the run ramps to the same target (one rule for both)
    assert Warmup().target_for(15.0, -10.0) == 15.0
    assert Warmup(target_c=5.0).target_for(15.0, -10.0) == 5.0


def test_a_paused_camera_stays_paused_across_a_restart_and_shows_its_run(
        tmp_path: Path) -> None:
    with daemon_env(tmp_path) as env:
        env.write_config(scale=300.0)
        plan = env.plan("darks.yaml", DARKS_10)
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        code, body = env.api("POST", "/api/v1/runs", {"plan": plan.name})
        assert code in (200, 202), body
        wait_for(lambda: (env.library / "calibd.sqlite").exists() and
                 any(r["done"] >= 2 for r in library_runs(env.library)), 60, "a few darks")
        assert env.api("POST", "/api/v1/cameras/sim/pause")[0] == 200
        wait_for(lambda: camera(env, "sim")["state"] == "paused", 30, "the pause")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        (env.state / "api.port").unlink()
        proc = env.start()
        wait_for((env.state / "api.port").exists, 30, "the restart")
        cam = camera(env, "sim")
        assert cam["state"] == "paused" and cam["reason"] == "paused by the operator"
        assert cam["plan"] == str(plan)  # what continues on resume
        held = library_runs(env.library)[0]["done"]
        assert env.api("POST", "/api/v1/cameras/sim/resume")[0] == 200
        wait_for(lambda: library_runs(env.library)[0]["state"] == "complete", 60, "the run")
        (run,) = library_runs(env.library)
        assert run["done"] == 10 > held
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
