"""Benchmark: ``calibd masters build --force`` of a whole simulated library, as one process.

Usage::

    .venv/bin/python benchmarks/masters_build.py                 # asi294mm (4144x2822) library
    .venv/bin/python benchmarks/masters_build.py --repeat 5 --profile small

The library is captured once by ``calibd run`` on the simulated camera, wheel and panel (a
simulated clock, so only the frames' writing takes time) into ``--dir`` (default:
``calibd-bench-library`` in the system's temporary folder) and reused: 2 bias sets of 20 frames,
3 dark sets of 15, 2 flat sets of 12 with their dark flats, the seven masters and a bad pixel map.
Each repeat rebuilds every master (``--force``): the inputs' checksums are verified, the frames
combined, the masters written and indexed. Wall and CPU time and peak RSS come from a small
launcher (see ``combine_vs_siril.py``); medians are reported with the load average.

Run it from two checkouts (``--calibd`` points at the other one) to compare before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from combine_vs_siril import ROOT  # noqa: E402
from combine_vs_siril import Runs  # noqa: E402
from combine_vs_siril import launch  # noqa: E402
from combine_vs_siril import load  # noqa: E402

PLAN = """\
name: library-bench
defaults: {offset: 50}
cooling: {dwell_s: 0, tolerance_c: 0.5, ramp_c_per_min: 60}
warmup: {enabled: false}
sets:
  - {kind: bias, gains: [100, 200], setpoints_c: [0], count: 20}
  - {kind: dark, gains: [100], setpoints_c: [0], exposures_s: [30, 120, 300], count: 15}
  - kind: flat
    source: panel
    filters: [L, R]
    gains: [100]
    setpoints_c: [0]
    count: 12
    panel: {mode: exposure, brightness: 600}
    dark_flats: {use_master_bias: true}
"""
CONFIG = """\
library: {root: %(root)s, min_free_mb: 10}
clock: {kind: simulated, scale: 1000}
masters: {auto: false}
site: {latitude_deg: 45.0, longitude_deg: 7.0, elevation_m: 400.0}
cameras:
  main: {driver: simulator, profile: %(profile)s, offset: 50, filter_wheel: wheel,
         flat_panel: panel}
filter_wheels: {wheel: {driver: simulator}}
flat_panels: {panel: {driver: simulator}}
"""


def ensure_library(folder: Path, profile: str) -> Path:
    """Capture the library once (reused while its configuration is the same); the config."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "calibd.yaml"
    text = CONFIG % {"root": folder / "lib", "profile": profile}
    done = folder / "captured"
    if done.exists() and config.exists() and config.read_text() == text:
        return config
    done.unlink(missing_ok=True)
    config.write_text(text)
    (folder / "plan.yaml").write_text(PLAN)
    print(f"capturing the library into {folder / 'lib'} ...", flush=True)
    subprocess.run([sys.executable, "-m", "calibd", "-q", "run", str(folder / "plan.yaml"),
                    "--config", str(config)], cwd=ROOT, check=True, timeout=3600)
    done.write_text("")
    return config


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) /
                    "calibd-bench-library")
    ap.add_argument("--profile", default="asi294mm", help="simulated camera (default asi294mm)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--calibd", type=Path, default=ROOT, help="checkout whose calibd is timed")
    opts = ap.parse_args()
    config = ensure_library(opts.dir, opts.profile)
    env = {**os.environ, "PYTHONPATH": str(opts.calibd)}
    argv = [sys.executable, "-m", "calibd", "-q", "masters", "build", "--force", "--config",
            str(config)]
    runs = Runs()
    before = load()
    for _ in range(max(1, opts.repeat)):
        launch(argv, opts.calibd, opts.dir / "build.log", 3600, runs, env)
    frames = sum(1 for p in (opts.dir / "lib").rglob("*.fits") if "Masters" not in p.parts)
    print(f"masters build --force of {frames} frames ({opts.profile}), calibd from "
          f"{opts.calibd}: median {runs.median:.2f} s (min {min(runs.seconds):.2f}, max "
          f"{max(runs.seconds):.2f}), CPU {statistics.median(runs.cpu):.2f} s, peak "
          f"{runs.peak:.0f} MB; load average {before} before, {load()} after")
    print(f"build_s={runs.median:.2f} build_cpu_s={statistics.median(runs.cpu):.2f} "
          f"build_mb={runs.peak:.0f} frames={frames}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
