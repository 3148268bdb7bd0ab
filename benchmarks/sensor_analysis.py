"""Sensor analysis: is ``calibd sensor analyze`` cheaper than reading its frames twice?

Captures the ready sensor plan's frames for one gain (``--gains`` more) on the simulated 26 MP
camera (ASI2600MM-like, 6248x4176) with the simulated flat panel, on the simulated clock, into
``--dir`` (default: a temporary folder, removed afterwards; about 5.5 GB per gain). Then reads
every frame of the run twice (the same raw reader the analysis uses; the second pass is from the
page cache, like the analysis that follows) and times the analysis (photon transfer, offsets,
dark model).

    python benchmarks/sensor_analysis.py [--gains 1] [--dir DIR] [--keep] [--library LIB]

Both are timed ``--repeat`` times, interleaved (each analysis right after its reading pass,
so both see the same load on a shared machine); each pair gives a ratio. Last line:
``ratio=... (median of N paired runs) best_ratio=... analysis_s=... read_twice_s=...
cpu_ratio=... frames=... gb=... load=...`` (``best_ratio``: best analysis over best reading;
times are medians; ``cpu_ratio``: the median ratio in process CPU time; ``load``: the 1-minute
load average before and after). Target: ratio < 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from calibd.capture.library.frame_queries import SensorFrame
from calibd.capture.library.index import Index
from calibd.capture.sensor.analyze import analyze
from calibd.capture.sensor.frames import read_image

PLAN = """
defaults: {offset: 50}
cooling: {dwell_s: 10, ramp_c_per_min: 30}
warmup: {enabled: false}
sets:
  - kind: sensor
    gains: %s
    setpoints_c: [-10, -20]
    count: 2
    flats: {levels: 20, min_signal_adu: 300, beyond: 1.3}
    dark_exposures_s: [60, 300, 900]
    offset_sweep: [0, 5, 10, 30]
"""
GAINS = [100, 0, 200, 300]


def capture(folder: Path, gains: int) -> Path:
    """Run the plan through ``calibd run`` (a real process). Returns the library."""
    config = {"clock": {"kind": "simulated", "scale": 5000.0},
              "library": {"fsync": False},
              "masters": {"auto": False},
              "site": {"latitude_deg": 45.0, "longitude_deg": 7.0, "elevation_m": 400.0},
              "filter_wheels": {"wheel": {"driver": "simulator"}},
              "flat_panels": {"panel": {"driver": "simulator"}},
              "cameras": {"sim": {"driver": "simulator", "profile": "asi2600mm", "offset": 50,
                                  "filter_wheel": "wheel", "flat_panel": "panel"}}}
    (folder / "c.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (folder / "p.yaml").write_text(PLAN % (GAINS[:gains],), encoding="utf-8")
    lib = folder / "lib"
    subprocess.run([sys.executable, "-m", "calibd", "-q", "run", str(folder / "p.yaml"),
                    "--config", str(folder / "c.yaml"), "--library", str(lib)],
                   check=True, timeout=3600)
    return lib


def _read_all(lib: Path, frames: list[SensorFrame], times: int) -> int:
    """Read every frame ``times`` times, one at a time; returns the bytes of one pass."""
    total = 0
    for _ in range(times):
        total = 0
        for f in frames:
            total += read_image(lib, f).data.nbytes
    return total


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    w0, c0 = time.monotonic(), time.process_time()
    fn()
    return time.monotonic() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gains", type=int, default=1, choices=range(1, 5))
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the generated library")
    ap.add_argument("--library", type=Path, help="analyse this library (a kept one) instead")
    ap.add_argument("--repeat", type=int, default=5,
                    help="timed repetitions (the median of the paired ratios is reported)")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="calibd-sensor-bench-", dir=args.dir))
    try:
        if args.library is not None:
            lib = args.library
        else:
            t0 = time.monotonic()
            lib = capture(folder, args.gains)
            print(f"captured in {time.monotonic() - t0:.0f} s", flush=True)
        index = Index(lib)
        try:
            frames = index.sensor_frames()
            nbytes = _read_all(lib, frames, 1)  # warms the page cache
            result = analyze(lib, index)  # and the compiled kernels
            load0 = os.getloadavg()[0]
            reads: list[tuple[float, float]] = []
            runs: list[tuple[float, float]] = []
            for _ in range(args.repeat):  # interleaved: each pair sees about the same load
                reads.append(_timed(lambda: _read_all(lib, frames, 2)))
                runs.append(_timed(lambda: analyze(lib, index)))
        finally:
            index.close()
        ratios = [a[0] / r[0] for a, r in zip(runs, reads, strict=True)]
        cpu_ratios = [a[1] / r[1] for a, r in zip(runs, reads, strict=True)]
        for t in result["transfer"]:
            m = t["channels"]["mono"]
            print(f"gain {t['gain']}: {m['e_per_adu']:.4f} e-/ADU, read noise "
                  f"{m['read_noise_e']:.3f} e-, full well {m['full_well_e']:.0f} e-")
        for d in result["dark"]:
            print(f"gain {d['gain']}: dark " + ", ".join(
                f"{s['rate_e_per_s']:.5f} e-/s at {s['temperature_c']:.1f} °C"
                for s in d["setpoints"]) + f", doubling {d['doubling_c']:.2f} °C")
        print("paired runs (analysis s / read twice s): " + ", ".join(
            f"{a[0]:.2f}/{r[0]:.2f}" for a, r in zip(runs, reads, strict=True)))
        print(f"ratio={statistics.median(ratios):.3f} (median of {len(ratios)} paired runs) "
              f"best_ratio={min(a[0] for a in runs) / min(r[0] for r in reads):.3f} "
              f"analysis_s={statistics.median(a[0] for a in runs):.2f} "
              f"read_twice_s={statistics.median(r[0] for r in reads):.2f} "
              f"cpu_ratio={statistics.median(cpu_ratios):.3f} frames={len(frames)} "
              f"gb={nbytes / 1e9:.2f} load={load0:.2f}->{os.getloadavg()[0]:.2f}")
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
