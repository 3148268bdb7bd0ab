"""Web view and report benchmarks.

``report``: the calibration report of a 2,000-frame library (an index holding 2,000 frame rows
at 3 set-points, 4 gains, 5 exposures and 4 filters over 30 nights: the report reads the index,
never the pixels), collect + render, whole process included (matplotlib's import). Target
< 10 s.

``status``: a real ``calibd daemon`` capturing 26 MP frames (the simulated ASI2600MM on the
real clock, 1 s exposures) while a client asks for the web page and the status JSON at
20 requests per second; latency percentiles. Target: p99 < 50 ms.

    python benchmarks/webview.py report [--frames 2000]
    python benchmarks/webview.py status [--seconds 20] [--rate 20]

Last line: ``report_s=... frames=... plots=...`` or ``p50_ms=... p99_ms=... requests=...``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import yaml

from calibd.capture.library.index import Index


def fill_index(root: Path, frames: int) -> None:
    """``frames`` frame rows: bias, darks, flats, spread over 30 nights."""
    index = Index(root)
    t0 = datetime(2026, 10, 1, 20, 0, tzinfo=UTC)
    kinds = ["bias", "dark", "dark", "flat"]
    try:
        for i in range(frames):
            kind = kinds[i % 4]
            sp = (0.0, -10.0, -20.0)[(i // 4) % 3]
            gain = (0, 100, 200, 300)[(i // 12) % 4]
            exposure = {"bias": 0.0, "flat": 1.0 + (i % 7) * 0.1}.get(
                kind, (30.0, 60.0, 120.0, 300.0, 600.0)[(i // 48) % 5])
            level = 500.0 + gain * 0.1 + (exposure * 0.02 * 2 ** (sp / 6) if kind == "dark"
                                          else 20000.0 if kind == "flat" else 0.0)
            index.add_frame({
                "path": f"f{i:05d}.fits", "run_id": 1 + i // 500, "cell_key": f"c{i % 240}",
                "seq": i, "camera": "cam", "kind": kind, "gain": gain, "offset": 50,
                "binning": 1, "readout_mode": "normal", "setpoint_c": sp,
                "ccd_temp_c": sp + 0.1, "exposure_s": exposure,
                "filter": ("L", "R", "G", "B")[i % 4] if kind == "flat" else None,
                "date_obs": (t0 + timedelta(days=i % 30, seconds=i * 7)).isoformat(),
                "level_adu": level, "noise_adu": 3.0 + gain * 0.01, "bytes": 52_000_000})
    finally:
        index.close()


def bench_report(frames: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lib"
        root.mkdir()
        fill_index(root, frames)
        out = Path(tmp) / "report.html"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "calibd", "-q", "report", "--library",
                               str(root), "-o", str(out)], capture_output=True, text=True,
                              check=False, timeout=120)
        took = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        plots = out.read_text(encoding="utf-8").count("<figure id=")
        print(f"report_s={took:.2f} frames={frames} plots={plots} "
              f"html_kb={out.stat().st_size / 1024:.0f}")
        return 0 if took < 10 else 1


PLAN = """
defaults: {offset: 50}
cooling: {dwell_s: 0, tolerance_c: 3, frame_tolerance_c: 5, ramp_c_per_min: 60}
warmup: {enabled: false}
sets:
  - kind: dark
    gains: [100]
    setpoints_c: [5]
    exposures_s: [1]
    count: 500
"""


def _get(port: int, path: str) -> float:
    """Milliseconds for one GET of ``path``, connection and whole body included."""
    start = time.perf_counter()
    _get_body(port, path)
    return (time.perf_counter() - start) * 1000


def bench_status(seconds: float, rate: float) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plan = root / "darks.yaml"
        plan.write_text(PLAN, encoding="utf-8")
        config = root / "calibd.yaml"
        config.write_text(yaml.safe_dump({
            "library": {"root": str(root / "lib"), "min_free_mb": 10},
            "cameras": {"cam": {"driver": "simulator", "profile": "asi2600mm", "offset": 50,
                                "sim_ambient_c": 8.0}},
            "masters": {"auto": False},
            "daemon": {"state_dir": str(root / "state"), "timezone": "UTC",
                       "plans_dir": str(root),
                       "api": {"host": "127.0.0.1", "port": 0,
                               "token": "bench-token-0123456789abcdef"}}}), encoding="utf-8")
        (root / "state").mkdir()
        log = open(root / "daemon.log", "w")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "calibd", "daemon", "--config",
                                 str(config)], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            port_file = root / "state" / "api.port"
            deadline = time.monotonic() + 60
            while not port_file.exists():
                if time.monotonic() > deadline or proc.poll() is not None:
                    print((root / "daemon.log").read_text(), file=sys.stderr)
                    return 1
                time.sleep(0.1)
            port = int(port_file.read_text())
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("POST", "/api/v1/runs", body=json.dumps({"plan": plan.name}),
                         headers={"Content-Type": "application/json",
                                  "Authorization": "Bearer bench-token-0123456789abcdef"})
            assert conn.getresponse().status in (200, 202)
            conn.close()
            deadline = time.monotonic() + 180
            while True:  # wait for the capture to be under way
                status = json.loads(_get_body(port, "/api/v1/status"))
                run = status["cameras"]["cam"].get("run") or {}
                if run.get("frames_done", 0) >= 2:
                    break
                if time.monotonic() > deadline:
                    print("the capture did not start:", json.dumps(status["cameras"]),
                          (root / "daemon.log").read_text()[-2000:], file=sys.stderr)
                    return 1
                time.sleep(0.5)
            times: list[float] = []
            start = time.monotonic()
            n = 0
            while time.monotonic() - start < seconds:
                n += 1
                times.append(_get(port, "/" if n % 2 else "/api/v1/status"))
                time.sleep(max(0.0, start + n / rate - time.monotonic()))
            status = json.loads(_get_body(port, "/api/v1/status"))
            done = (status["cameras"]["cam"].get("run") or {}).get("frames_done", 0)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            log.close()
        times.sort()
        p50 = statistics.median(times)
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        print(f"p50_ms={p50:.1f} p99_ms={p99:.1f} max_ms={times[-1]:.1f} "
              f"requests={len(times)} rate={rate:g}/s frames_during={done}")
        return 0 if p99 < 50 else 1


def _get_body(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (path, resp.status)
        return body
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="what", required=True)
    rep = sub.add_parser("report")
    rep.add_argument("--frames", type=int, default=2000)
    st = sub.add_parser("status")
    st.add_argument("--seconds", type=float, default=20.0)
    st.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    if args.what == "report":
        return bench_report(args.frames)
    return bench_status(args.seconds, args.rate)


if __name__ == "__main__":
    sys.exit(main())
