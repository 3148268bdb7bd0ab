"""SIGKILL a real ``calibd run`` at 20+ seeded random moments; the library must end exact."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support import assert_library_exact
from tests.support import write_config
from tests.support import write_plan

PLAN = """
defaults: {offset: 50}
cooling: {dwell_s: 30, tolerance_c: 0.3, ramp_c_per_min: 4}
sets:
  - kind: bias
    gains: [0, 100]
    setpoints_c: [-5, -15]
    count: 8
  - kind: dark
    gains: [0, 100]
    setpoints_c: [-5, -15]
    exposures_s: [30, 120]
    count: 4
"""
FRAMES = 2 * 2 * 8 + 2 * 2 * 2 * 4
KILLS = 22


def start(plan: Path, config: Path, library: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "calibd", "-q", "run", str(plan), "--config", str(config),
         "--library", str(library)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_exactly_the_plan(tmp_path: Path) -> None:
    rng = random.Random(20261125)
    # fsync on, a clock fast enough that a whole run takes a few seconds of real time.
    config = write_config(tmp_path / "c.yaml", scale=600.0)
    plan = write_plan(tmp_path / "p.yaml", PLAN)
    library = tmp_path / "lib"
    # Measure one uninterrupted run of the same plan elsewhere to spread the kill times.
    t0 = time.monotonic()
    ref = start(plan, config, tmp_path / "reference")
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    full_s = time.monotonic() - t0
    kills = 0
    finished_early = 0
    # What each kill interrupted: frames on disk, and partial (mid-write) files left behind.
    seen_partial = 0
    progress: list[int] = []
    while kills < KILLS:
        proc = start(plan, config, library)
        delay = rng.uniform(0.05, min(full_s * 0.6, 3.0))
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
            seen_partial += any(library.rglob("*.partial"))
            progress.append(sum(1 for _ in library.rglob("*.fits")))
            continue
        finally:
            if proc.stdout:
                proc.stdout.close()
            if proc.stderr:
                proc.stderr.close()
        # The run finished before the kill: start over with a new run so kills keep landing.
        assert proc.returncode == 0
        finished_early += 1
        assert finished_early < KILLS, "runs finish too fast for the kill schedule"
        _check(library, plan, config)
        for p in library.iterdir():
            if p.is_dir():
                subprocess.run(["rm", "-rf", str(p)], check=True)
        for p in library.glob("calibd.sqlite*"):
            p.unlink()
    final = start(plan, config, library)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    _check(library, plan, config)
    print(f"full run {full_s:.1f} s; {kills} kills, {finished_early} runs finished first; "
          f"kills left partial files {seen_partial} times; frames on disk at kills: {progress}")
    # The kills landed at different stages of the run, some of them mid-write.
    assert len(set(progress)) >= 5


def _check(library: Path, plan: Path, config: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "calibd", "library", "status", "--library", str(library),
         "--json"], cwd=REPO, capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    runs = [r for r in data["runs"] if r["state"] == "complete"]
    assert len(runs) == 1, data["runs"]
    planned = {c["key"]: c["planned"] for c in runs[0]["cells"]}
    assert sum(planned.values()) == FRAMES
    assert all(c["extra"] == 0 for c in runs[0]["cells"])
    assert_library_exact(library, planned)
