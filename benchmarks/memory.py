"""Peak memory of capture on the simulated 26 MP camera (ASI2600MM-like, 6248x4176, 52 MB frames).

Two measurements, each a real ``calibd`` subprocess whose peak resident set size (``ru_maxrss``
from ``os.wait4``, the figure ``/usr/bin/time -v`` prints) includes the simulator, which runs in the
same process:

* ``run``: ``calibd run`` of 10 bias frames, the master bias built automatically at the end;
* ``daemon``: ``calibd daemon`` with the same camera and an on-demand schedule of the same plan,
  started through the API (``POST /api/v1/runs {"schedule": ...}``, as ``calibd control start``
  does), stopped with SIGTERM once the run is complete and its master is on disk.

Both use a simulated clock (1000x) so the exposures take no time: what is measured is the frames'
way from the sensor through the checks and the writer to disk, and the master's build.

    python benchmarks/memory.py [--frames 10] [--profile asi2600mm] [--dir DIR]

Last line: ``run_peak_mb=... daemon_peak_mb=... frames=... profile=...``. Target: both <= 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TARGET_MB = 300.0
TOKEN = "memory-benchmark-token-0123456789"
PLAN = """\
name: bias-memory
defaults: {offset: 50}
cooling: {dwell_s: 0, tolerance_c: 0.5, ramp_c_per_min: 60}
warmup: {enabled: false}
sets:
  - kind: bias
    gains: [100]
    setpoints_c: [0]
    count: %d
"""
CONFIG = """\
library: {root: %(library)s, min_free_mb: 10}
clock: {kind: simulated, scale: 1000}
cameras:
  main: {driver: simulator, profile: %(profile)s, offset: 50}
daemon:
  state_dir: %(state)s
  timezone: UTC
  stop_timeout_s: 30
  api: {host: 127.0.0.1, port: 0, token: %(token)s}
schedules:
  - {name: bias, camera: main, plan: %(plan)s, trigger: on_demand}
"""


def _wait_peak_mb(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, float]:
    """Wait for ``proc`` (killing it after ``timeout_s``); its exit code and peak RSS in MB."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_maxrss / 1024.0
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.1)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def measure_run(work: Path, profile: str, timeout_s: float) -> float:
    """Peak RSS (MB) of ``calibd run`` capturing the plan and building its master."""
    cmd = [sys.executable, "-m", "calibd", "run", str(work / "plan.yaml"),
           "--config", str(work / "calibd.yaml"), "--library", str(work / "lib-run")]
    with open(work / "run.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env())
        code, peak = _wait_peak_mb(proc, timeout_s)
    if code != 0:
        raise SystemExit(f"calibd run failed ({code}):\n{(work / 'run.log').read_text()[-2000:]}")
    _check_library(work / "lib-run")
    return peak


def _api(state: Path, method: str, path: str, body: dict[str, object] | None = None) -> object:
    port = int((state / "api.port").read_text())
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def measure_daemon(work: Path, timeout_s: float) -> float:
    """Peak RSS (MB) of ``calibd daemon`` running the plan once (and building its master)."""
    state = work / "state"
    library = work / "lib-daemon"
    cmd = [sys.executable, "-m", "calibd", "daemon", "--config", str(work / "calibd.yaml")]
    deadline = time.monotonic() + timeout_s
    with open(work / "daemon.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env())
        try:
            while not (state / "api.port").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the daemon did not start:\n"
                                     + (work / "daemon.log").read_text()[-2000:])
                time.sleep(0.1)
            _api(state, "POST", "/api/v1/runs", {"schedule": "bias"})
            while not list((library / "main" / "Masters").rglob("Master_*.fits")):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the daemon's run did not complete:\n"
                                     + (work / "daemon.log").read_text()[-2000:])
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
        finally:
            if proc.returncode is None:
                code, peak = _wait_peak_mb(proc, max(5.0, deadline - time.monotonic()))
    if code != 0:
        raise SystemExit(f"calibd daemon exited with {code}:\n"
                         + (work / "daemon.log").read_text()[-2000:])
    _check_library(library)
    return peak


def _check_library(library: Path) -> None:
    frames = [p for p in library.rglob("*.fits") if "Masters" not in p.parts]
    masters = list(library.rglob("Master_*.fits"))
    if not frames or not masters:
        raise SystemExit(f"{library}: {len(frames)} frame(s), {len(masters)} master(s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--profile", default="asi2600mm")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--timeout", type=float, default=600.0, help="real seconds per measurement")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="calibd-mem-", dir=args.dir))
    try:
        (work / "plan.yaml").write_text(PLAN % args.frames)
        (work / "calibd.yaml").write_text(CONFIG % {
            "library": work / "lib-daemon", "profile": args.profile, "state": work / "state",
            "token": TOKEN, "plan": work / "plan.yaml"})
        run_mb = measure_run(work, args.profile, args.timeout)
        print(f"calibd run, {args.frames} bias frames on {args.profile}: peak RSS {run_mb:.0f} MB")
        daemon_mb = measure_daemon(work, args.timeout)
        print(f"calibd daemon, the same plan started through the API: peak RSS {daemon_mb:.0f} MB")
        print(f"run_peak_mb={run_mb:.0f} daemon_peak_mb={daemon_mb:.0f} frames={args.frames} "
              f"profile={args.profile} target_mb={TARGET_MB:.0f}")
        return 0 if max(run_mb, daemon_mb) <= TARGET_MB else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
