"""The daemon as a real subprocess: systemd notify on a real socket, signals, resume, schedules
at simulated times, the weather trigger, the API's token rules and reloading."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import yaml

from calibd.capture.site import Site
from calibd.capture.site import crossings
from tests.support import DAEMON_T0
from tests.support import LONG_DARKS
from tests.support import QUICK_BIAS
from tests.support import REPO
from tests.support import assert_library_exact
from tests.support import daemon_env
from tests.support import library_runs
from tests.support import ready
from tests.support import wait_for


def test_notify_protocol_on_a_real_socket(tmp_path: Path) -> None:
    with daemon_env(tmp_path) as env:
        env.write_config()
        proc = env.start(watchdog_s=1.0)
        wait_for(lambda: ready(env), 30, "READY=1")
        wait_for(lambda: any(x.startswith("STATUS=") for x in env.notify.lines()), 10, "STATUS")
        wait_for(lambda: env.notify.lines().count("WATCHDOG=1") >= 2, 10, "WATCHDOG pings")
        lines = env.notify.lines()
        assert lines.index("READY=1") < lines.index("WATCHDOG=1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "STOPPING=1" in env.notify.lines()


def test_api_needs_the_token_for_commands(tmp_path: Path) -> None:
    with daemon_env(tmp_path) as env:
        env.write_config()
        plan = env.plan("bias.yaml", QUICK_BIAS)
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        code, status = env.api("GET", "/api/v1/status", token=None)
        assert code == 200 and "sim" in status["cameras"]
        for token in (None, "wrong-token-wrong-token-000"):
            code, body = env.api("POST", "/api/v1/runs", {"plan": plan.name}, token=token)
            assert code == 401, body
        code, body = env.api("POST", "/api/v1/runs", {"plan": plan.name})
        assert code in (200, 202), body
        wait_for(lambda: (env.library / "calibd.sqlite").exists() and
                 any(r["state"] == "complete" for r in library_runs(env.library)), 60, "the run")
        # `calibd status` reads the same API.
        port = int((env.state / "api.port").read_text())
        out = subprocess.run([sys.executable, "-m", "calibd", "status", "--url",
                              f"http://127.0.0.1:{port}"], cwd=REPO, capture_output=True,
                             text=True, check=False)
        assert out.returncode == 0, out.stderr
        assert "sim" in out.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_a_non_loopback_api_without_a_token_is_refused(tmp_path: Path) -> None:
    with daemon_env(tmp_path) as env:
        env.write_config(api={"host": "0.0.0.0", "port": 0})
        proc = env.start()
        assert proc.wait(30) == 2
        assert "without a token" in env.log()


def test_sigterm_mid_exposure_exits_cleanly_and_the_next_start_resumes(tmp_path: Path) -> None:
    with daemon_env(tmp_path) as env:
        env.write_config(scale=300.0)
        plan = env.plan("darks.yaml", LONG_DARKS)
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        assert env.api("POST", "/api/v1/runs", {"plan": plan.name})[0] in (200, 202)
        wait_for(lambda: (env.library / "calibd.sqlite").exists() and
                 any(r["done"] >= 3 for r in library_runs(env.library)), 60, "a few darks")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert time.monotonic() - t0 < 20
        (run,) = library_runs(env.library)
        assert run["state"] == "interrupted" and run["done"] < 16
        proc2 = env.start()
        wait_for(lambda: library_runs(env.library)[0]["state"] == "complete", 120,
                 "the resumed run to complete")
        runs = library_runs(env.library)
        assert len(runs) == 1 and runs[0]["done"] == 16
        proc2.send_signal(signal.SIGTERM)
        assert proc2.wait(30) == 0
        assert_library_exact(env.library, {c["key"]: c["planned"] for c in runs[0]["cells"]})


def test_sigkill_mid_run_then_restart_resumes_exactly(tmp_path: Path) -> None:
    with daemon_env(tmp_path) as env:
        env.write_config(scale=300.0)
        plan = env.plan("darks.yaml", LONG_DARKS)
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        assert env.api("POST", "/api/v1/runs", {"plan": plan.name})[0] in (200, 202)
        wait_for(lambda: (env.library / "calibd.sqlite").exists() and
                 any(r["done"] >= 5 for r in library_runs(env.library)), 60, "some darks")
        proc.kill()
        proc.wait(10)
        proc2 = env.start()
        wait_for(lambda: library_runs(env.library)[0]["state"] == "complete", 120,
                 "the resumed run to complete")
        (run,) = library_runs(env.library)
        proc2.send_signal(signal.SIGTERM)
        assert proc2.wait(30) == 0
        assert_library_exact(env.library, {c["key"]: c["planned"] for c in run["cells"]})


def fires(state: Path) -> list[tuple[str, datetime]]:
    db = sqlite3.connect(state / "daemon.sqlite")
    try:
        rows = db.execute("SELECT schedule, fired_utc FROM fires ORDER BY id").fetchall()
    finally:
        db.close()
    return [(name, datetime.fromisoformat(t)) for name, t in rows]


def test_cron_and_twilight_schedules_fire_at_the_simulated_times(tmp_path: Path) -> None:
    with daemon_env(tmp_path) as env:
        plan = env.plan("bias.yaml", QUICK_BIAS)
        env.write_config(scale=600.0, schedules=[
            {"name": "every-20-min", "trigger": "cron", "cron": "*/20 * * * *",
             "plan": str(plan)},
            {"name": "dusk", "trigger": "dusk", "sun_altitude_deg": -2.0, "plan": str(plan)},
        ])
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        site = Site(45.0, 7.0, 400.0)
        dusk = next(t for t, rising in crossings(site, DAEMON_T0, -2.0, 24) if not rising)
        wait_for(lambda: any(n == "dusk" for n, _ in fires(env.state)), 60, "the dusk fire")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        got = fires(env.state)
        cron = [t for n, t in got if n == "every-20-min"]
        assert len(cron) >= 3
        # Fired at :00, :20, :40 of simulated time. At 600x a busy machine delays a fire by a
        # few tenths of a real second, i.e. a few simulated minutes: 5 minutes (0.5 s) allowed.
        for t in cron:
            due = t.replace(second=0, microsecond=0, minute=t.minute - t.minute % 20)
            assert timedelta(0) <= t - due < timedelta(minutes=5), t
        (dusk_fire,) = [t for n, t in got if n == "dusk"]
        assert abs((dusk_fire - dusk).total_seconds()) < 300, (dusk_fire, dusk)
        assert len(library_runs(env.library)) >= 3  # each fire ran the plan again


def test_weather_trigger_runs_darks_while_cloudy_and_yields_when_clear(tmp_path: Path) -> None:
    with daemon_env(tmp_path) as env:
        plan = env.plan("darks.yaml", LONG_DARKS)
        cloudy = [(DAEMON_T0 + timedelta(minutes=20), DAEMON_T0 + timedelta(minutes=60)),
                  (DAEMON_T0 + timedelta(minutes=90), DAEMON_T0 + timedelta(hours=4))]
        env.write_config(scale=300.0, cloudy=cloudy, schedules=[
            {"name": "cloudy-darks", "trigger": "unsafe", "when_safe": "yield",
             "plan": str(plan)}])
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        wait_for(lambda: (env.library / "calibd.sqlite").exists() and
                 library_runs(env.library)[0]["state"] == "complete", 180, "the darks")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        (run,) = library_runs(env.library)  # one run: it yielded and resumed, never restarted
        assert_library_exact(env.library, {c["key"]: c["planned"] for c in run["cells"]})
        from astropy.io import fits

        starts = sorted(datetime.fromisoformat(fits.getheader(p)["DATE-OBS"]).replace(
            tzinfo=UTC) for p in env.library.rglob("Dark_*.fits"))
        for t in starts:  # every dark began while it was cloudy
            assert any(a <= t < b for a, b in cloudy), t
        assert any(cloudy[0][0] <= t < cloudy[0][1] for t in starts)
        assert any(cloudy[1][0] <= t < cloudy[1][1] for t in starts)
        assert "yields" in env.log()


def test_sighup_reloads_and_an_invalid_configuration_keeps_the_old(tmp_path: Path) -> None:
    with daemon_env(tmp_path) as env:
        plan = env.plan("bias.yaml", QUICK_BIAS)
        env.write_config()
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        good = env.config.read_text()
        env.config.write_text(good.replace("schedules: []", "schedules: [{name: x, trigger: "
                                                            "cron, cron: 'not a cron'}]"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in env.log(), 20, "the reload error")
        assert env.api("GET", "/api/v1/status")[1]["schedules"] == []
        env.config.write_text(good.replace("schedules: []", "schedules: [{name: nightly, "
                                           f"trigger: cron, cron: '0 9 * * *', plan: {plan}}}]"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: [s["name"] for s in env.api("GET", "/api/v1/status")[1]["schedules"]]
                 == ["nightly"], 20, "the new schedule")
        status = env.api("GET", "/api/v1/status")[1]
        assert status["schedules"][0]["next_run_utc"].startswith("2026-11-26T09:00")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_schedules_missed_while_off_follow_the_misfire_policy(tmp_path: Path) -> None:
    """The machine is off from 15:05 to 17:00 (simulated): a 15:30 and 16:30 daily run was
    missed. run_once (grace 6 h) runs it once on start; skip does not."""
    with daemon_env(tmp_path) as env:
        plan = env.plan("bias.yaml", QUICK_BIAS)
        schedules = [
            {"name": "catch-up", "trigger": "cron", "cron": "30 15,16 * * *", "plan": str(plan),
             "misfire": "run_once", "misfire_grace_s": 21600},
            {"name": "skip-it", "trigger": "cron", "cron": "30 15,16 * * *", "plan": str(plan),
             "misfire": "skip"},
        ]
        env.write_config(scale=60.0, schedules=schedules)
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        proc.send_signal(signal.SIGTERM)  # about 15:00-15:01: nothing fired yet
        assert proc.wait(30) == 0
        assert fires(env.state) == []
        env.write_config(scale=60.0, schedules=schedules, start=DAEMON_T0 + timedelta(hours=2))
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        wait_for(lambda: any(n == "catch-up" for n, _ in fires(env.state)), 30, "the catch-up")
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        names = [n for n, _ in fires(env.state)]
        assert names.count("catch-up") == 1  # coalesced: two missed fires, one run
        assert "skip-it" not in names
        assert "missed" in env.log().lower() or "skip" in env.log().lower()


def test_two_cameras_run_concurrently(tmp_path: Path) -> None:
    with daemon_env(tmp_path) as env:
        env.write_config(scale=300.0)
        data = yaml.safe_load(env.config.read_text())
        data["cameras"]["sim2"] = {"driver": "simulator", "profile": "small", "offset": 50,
                                   "seed": 9}
        env.config.write_text(yaml.safe_dump(data, sort_keys=False))
        plan = env.plan("darks.yaml", LONG_DARKS.replace("count: 16", "count: 6"))
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        for camera in ("sim", "sim2"):
            code, body = env.api("POST", "/api/v1/runs", {"plan": plan.name, "camera": camera})
            assert code in (200, 202), body
        wait_for(lambda: (env.library / "calibd.sqlite").exists() and
                 sum(r["state"] == "complete" for r in library_runs(env.library)) == 2,
                 120, "both runs")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        from astropy.io import fits

        spans = {}
        for camera in ("sim", "sim2"):
            times = sorted(datetime.fromisoformat(fits.getheader(p)["DATE-OBS"]).replace(
                tzinfo=UTC) for p in (env.library / camera).rglob("Dark_*.fits"))
            assert len(times) == 6
            spans[camera] = (times[0], times[-1])
        # The two cameras exposed at the same time, each from its own queue.
        assert spans["sim"][0] < spans["sim2"][1] and spans["sim2"][0] < spans["sim"][1]
