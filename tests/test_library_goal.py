"""The library goal in the daemon (a real subprocess on the simulated clock): an ``upkeep``
weather schedule keeps a small bias-and-darks library complete over 14 simulated days of
alternating cloudy and clear spells, under a policy that expires cells after 2.5 days — every
expired cell recaptured within the next cloudy spell, nothing recaptured that was still valid,
only cloudy time used — and a SIGKILL in the middle of a recapture loses nothing."""

from __future__ import annotations

import itertools
import signal
import sqlite3
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from calibd.capture.library.policy import parse_utc
from tests.support import DAEMON_T0
from tests.support import daemon_env
from tests.support import fits_files
from tests.support import fits_light
from tests.support import ready
from tests.support import run_cli
from tests.support import wait_for
from tests.support import write_config

GOAL = """
defaults: {offset: 50}
cooling: {dwell_s: 10, tolerance_c: 0.5}
warmup: {enabled: false}
sets:
  - kind: bias
    gains: [100]
    setpoints_c: [0]
    count: 4
  - kind: dark
    gains: [100]
    setpoints_c: [0]
    exposures_s: [5, 10, 20]
    count: 4
"""
MAX_AGE_D = 2.5
DAYS = 14
SCALE = 20000.0  # simulated seconds per real second: 14 days in about a minute
SPELLS = [(DAEMON_T0 + timedelta(hours=36 * k + 1), DAEMON_T0 + timedelta(hours=36 * k + 25))
          for k in range(DAYS * 24 // 36 + 1)]  # 24 h cloudy, 12 h clear


def _config(env: Any, plan: Path, start: datetime) -> None:
    env.write_config(scale=SCALE, start=start, cloudy=SPELLS, schedules=[
        {"name": "goal", "trigger": "unsafe", "when_safe": "yield", "plan": str(plan),
         "upkeep": True}])
    data = yaml.safe_load(env.config.read_text())
    data["library"]["policy"] = {"max_age_days": {"bias": MAX_AGE_D, "dark": MAX_AGE_D}}
    env.config.write_text(yaml.safe_dump(data, sort_keys=False))


def _now(env: Any) -> datetime:
    code, data = env.api("GET", "/api/v1/status")
    assert code == 200
    now = parse_utc(data["daemon"]["now_utc"])
    assert now is not None
    return now


def _rows(library: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(library / "calibd.sqlite", timeout=10)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _recapture_under_way(library: Path) -> int | None:
    """A run after the first with some but not all of its frames, else None."""
    if not (library / "calibd.sqlite").exists():
        return None
    try:
        rows = _rows(library, (
            "SELECT r.id, (SELECT COUNT(*) FROM frames f WHERE f.run_id = r.id), "
            "(SELECT SUM(planned) FROM run_cells c WHERE c.run_id = r.id) FROM runs r "
            "WHERE r.state = 'running'"))
    except sqlite3.OperationalError:  # being created
        return None
    for run_id, n, planned in rows:
        if run_id > 1 and 0 < n < (planned or 0):
            return int(run_id)
    return None


def test_the_daemon_keeps_the_library_complete_through_14_days_and_a_kill(
        tmp_path: Path) -> None:
    with daemon_env(tmp_path) as env:
        plan = env.plan("goal.yaml", GOAL)
        _config(env, plan, DAEMON_T0)
        proc = env.start()
        wait_for(lambda: ready(env), 30, "READY=1")
        # Kill it in the middle of a recapture (a second run with some of its frames).
        killed_run = wait_for(lambda: _recapture_under_way(env.library), 60,
                              "a recapture under way", poll_s=0.01)
        at = _now(env)
        proc.kill()
        proc.wait(10)
        frames_at_kill = {r[0] for r in _rows(env.library, "SELECT path FROM frames")}
        _config(env, plan, at)  # the simulated clock goes on from where it was
        (env.state / "api.port").unlink()
        proc = env.start()
        wait_for(lambda: env.notify.lines().count("READY=1") >= 2 and ready(env), 30,
                 "READY=1 after the kill")
        end = DAEMON_T0 + timedelta(days=DAYS)
        wait_for(lambda: _now(env) >= end or None, 120, "14 simulated days")
        _, status = env.api("GET", "/api/v1/status")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    # The status says what the goal lacks and when it is filled.
    (goal,) = status["library"]["goals"]
    assert goal["schedule"] == "goal" and goal["cells_known"] == 4
    assert goal["complete"] or goal["fills"]

    # Nothing lost and nothing extra: every frame on disk is indexed, every run's cells hold
    # exactly what they planned, the killed run finished with its frames from before the kill.
    on_disk = {str(p.relative_to(env.library)) for p in fits_files(env.library)}
    indexed = {r[0] for r in _rows(env.library, "SELECT path FROM frames")}
    assert on_disk == indexed and frames_at_kill <= indexed
    cells = _rows(env.library, (
        "SELECT c.run_id, c.cell_key, c.planned, COUNT(f.id), MIN(f.date_obs), "
        "MAX(f.date_obs), r.state FROM run_cells c JOIN runs r ON r.id = c.run_id "
        "LEFT JOIN frames f ON f.run_id = c.run_id AND f.cell_key = c.cell_key "
        "GROUP BY c.run_id, c.cell_key ORDER BY c.run_id"))
    last_run = max(r[0] for r in cells)
    for run_id, key, planned, done, _, _, state in cells:
        assert done <= planned, (run_id, key)
        if run_id != last_run:
            assert state == "complete" and done == planned, (run_id, key, done, state)
    assert {r[6] for r in cells if r[0] == killed_run} == {"complete"}

    # Every frame was taken while it was cloudy.
    for (date,) in _rows(env.library, "SELECT date_obs FROM frames"):
        t = parse_utc(date)
        assert t is not None and any(a <= t < b for a, b in SPELLS), date

    # Per cell: captures in time order; each recapture only once the previous had expired,
    # and within the first cloudy spell that began after it expired.
    captures: dict[str, list[tuple[datetime, datetime]]] = {}
    for _, key, planned, done, first, last, _ in cells:
        if done == planned:
            a, b = parse_utc(first), parse_utc(last)
            assert a is not None and b is not None
            captures.setdefault(key, []).append((a, b))
    assert len(captures) == 4
    age = timedelta(days=MAX_AGE_D)
    for key, caps in captures.items():
        caps.sort()
        assert SPELLS[0][0] <= caps[0][0] < SPELLS[0][1], key  # captured in the first spell
        for (_, last), (first, last2) in itertools.pairwise(caps):
            expired = last + age
            assert first >= expired, f"{key} recaptured at {first}, valid until {expired}"
            spell = next(s for s in SPELLS if s[0] >= expired)
            assert last2 < spell[1], f"{key} expired {expired}, recaptured only at {last2}"
        expired = caps[-1][1] + age
        late = [s for s in SPELLS if s[0] >= expired and s[1] <= end]
        assert not late, f"{key} expired {expired} and was not recaptured in {late[0]}"
        assert len(caps) >= 4, (key, caps)


def test_the_goal_fills_what_recent_lights_need_first_then_the_oldest(tmp_path: Path) -> None:
    """Order of the lacking cells: those the schedule's lights need (a 300 s light at gain
    100, 0 °C), then never captured, then the longest expired; held cells are left out."""
    from calibd.capture.daemon.goal import lights_rank
    from calibd.capture.library.policy import Verdict
    from calibd.capture.library.upkeep import Holding
    from calibd.capture.library.upkeep import needs
    from calibd.capture.lights.survey import survey
    from calibd.capture.plans.cells import Cell

    fits_light(tmp_path / "lights" / "l1.fits", {
        "IMAGETYP": "LIGHT", "INSTRUME": "cam", "EXPTIME": 300.0, "GAIN": 100, "OFFSET": 50,
        "SET-TEMP": 0.0, "FILTER": "L"})
    rank = lights_rank(survey([tmp_path / "lights"], []))

    def dark(e: float) -> Cell:
        return Cell("dark", 100, 50, 1, "normal", 0.0, e, 4)

    cells = [Cell("bias", 100, 50, 1, "normal", 0.0, 0.001, 4), dark(60), dark(120),
             dark(300), dark(600)]

    def stale(expired: str) -> Holding:
        return Holding(False, Verdict(False, "expired", 3.0, expired), False)

    held = {dark(60).key: Holding(True, Verdict(True, None, 1.0, "2026-12-30T00:00:00Z"), False),
            dark(120).key: stale("2026-12-02T00:00:00Z"),
            dark(600).key: stale("2026-12-01T00:00:00Z"),
            dark(300).key: stale("2026-12-03T00:00:00Z")}
    order = [n.key for n in needs(cells, held, rank)]
    assert order == [cells[0].key, dark(300).key, dark(600).key, dark(120).key]


def test_status_text_says_what_a_goal_lacks_without_echoing_control_characters() -> None:
    from calibd.capture.cli.cmd_status import format_status

    text = format_status({"daemon": {"version": "x"}, "library": {"root": "/lib", "goals": [
        {"schedule": "goal", "plan": "darks\x1b[2J", "complete": False,
         "fills": "at the next cloudy spell (safety unsafe)",
         "lacking": [{"key": "dark|g100|o50|b1|normal|0C|300s",
                      "reason": "expired: 3 days old\nFORGED LINE", "since_utc": None}]},
        {"schedule": "bias", "plan": "bias", "complete": True, "fills": None,
         "lacking": []}]}})
    assert "goal goal (darks\\x1b[2J): lacks 1 cell(s), filled at the next cloudy spell" in text
    assert "dark|g100|o50|b1|normal|0C|300s: expired: 3 days old\\x0aFORGED LINE" in text
    assert "goal bias (bias): complete" in text
    assert "\x1b" not in text and "\nFORGED" not in text


def test_run_upkeep_captures_only_what_the_library_lacks(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`calibd run --upkeep` (what a daytime cron goal runs): everything the first time,
    nothing while the library holds it all, and after `library invalidate --kind darks` a new
    run of just the darks — the bias is not taken again."""
    def config(name: str, start: datetime) -> Path:
        path = write_config(tmp_path / name, start=start.strftime("%Y-%m-%dT%H:%M:%SZ"))
        data = yaml.safe_load(path.read_text())
        data["masters"] = {"auto": False}
        path.write_text(yaml.safe_dump(data))
        return path

    # A simulated clock starts at its configured time in each process: the runs before the
    # invalidation (stamped with the real time) are dated before it, those after, after it.
    before = config("before.yaml", datetime.now(UTC) - timedelta(days=2))
    after = config("after.yaml", datetime.now(UTC) + timedelta(hours=1))
    plan = tmp_path / "goal.yaml"
    plan.write_text(GOAL)
    lib = tmp_path / "lib"

    def upkeep(cfg: Path) -> str:
        res = run_cli(capsys, "-q", "run", plan, "--upkeep", "--config", cfg,
                      "--library", lib, "--no-progress")
        assert res.code == 0, res.err
        return res.out

    upkeep(before)
    assert "library goal met" in upkeep(before)
    assert run_cli(capsys, "library", "invalidate", "--kind", "darks", "--reason",
                   "new firmware", "--library", lib).code == 0
    upkeep(after)
    runs = _rows(lib, "SELECT c.run_id, c.kind, COUNT(f.id), c.planned FROM run_cells c "
                      "LEFT JOIN frames f ON f.run_id = c.run_id AND f.cell_key = c.cell_key "
                      "GROUP BY c.run_id, c.cell_key")
    by_run: dict[int, list[str]] = {}
    for run_id, kind, done, planned in runs:
        assert done == planned
        by_run.setdefault(run_id, []).append(kind)
    assert sorted(by_run) == [1, 2]
    assert sorted(by_run[1]) == ["bias", "dark", "dark", "dark"]
    assert by_run[2] == ["dark", "dark", "dark"]
    assert "goal met" in upkeep(after)
