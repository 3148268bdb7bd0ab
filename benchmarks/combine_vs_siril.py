"""Benchmark: ``calibd masters combine`` against Siril's stack of the same frames, side by side.

Usage::

    .venv/bin/python benchmarks/combine_vs_siril.py            # 30x4144x2822 and 50x6248x4176
    .venv/bin/python benchmarks/combine_vs_siril.py --quick    # small sets, a smoke run
    .venv/bin/python benchmarks/combine_vs_siril.py --sets 30x4144x2822 --repeat 7

The frames are the realistic 16-bit biases of ``benchmarks/masters.py`` (same generator, same
``NxWIDTHxHEIGHT`` sets), written once into ``--data-dir`` (default: ``calibd-bench-data`` in the
system's temporary folder) and reused while the generator's manifest matches.

The method is the same in both programs: mean of the samples kept by sigma clipping, 3 sigma low
and high around the median with the sample standard deviation, repeated until nothing more is
rejected (``calibd masters combine --rejection sigma --sigma-low 3 --sigma-high 3 --stddev sample
--iterations 0``; Siril's ``stack NAME rej s 3 3 -nonorm``). Every measurement is one whole
process, start-up included, timed from its spawn to its exit on a warm page cache; its peak
resident memory is ``ru_maxrss`` from ``os.wait4``, taken by a small launcher process (a child
spawned straight from this process would count this process's memory, see
``tests/test_memory.py``). Per repeat, in turn (so load changes hit all alike):

* ``calibd``: ``python -m calibd masters combine FILES -o OUT`` (its combine time alone, from its
  debug log, is reported too);
* ``siril``: ``siril-cli -s`` of a script that stacks the frames where they are (Siril takes files
  named ``prefix_NNN.fits`` as a sequence once told ``setext fits``: no ``convert`` is needed);
* ``siril+convert``: the stock way, ``convert`` to a sequence folder first, then the same stack
  (Siril 1.0 only links FITS files when converting, so the difference is small);
* ``read``: a plain read of every byte of the frames, in a fresh process (start-up excluded from
  its figure), the floor any combine has to pay.

Reported: medians of ``--repeat`` runs (default 5), the speed-up of calibd over each Siril run,
calibd's peak memory, the machine's load average before and after, and how far calibd's master is
from Siril's. The last line is a ``key=value`` summary. Targets: calibd at least 3x faster than
Siril, at most 256 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from masters import FULL_SETS  # noqa: E402
from masters import QUICK_SETS  # noqa: E402
from masters import FrameSet  # noqa: E402
from masters import ensure_set  # noqa: E402

DEFAULT_DATA = Path(tempfile.gettempdir()) / "calibd-bench-data"
TARGET_SPEEDUP = 3.0
TARGET_MB = 256.0

# Runs argv[1:]; prints its wall time and CPU time (s), exit code and peak RSS (KiB) as JSON.
_LAUNCHER = """
import json, os, sys, time
t0 = time.perf_counter()
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"seconds": time.perf_counter() - t0, "code": os.waitstatus_to_exitcode(status),
                  "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}))
"""

# A plain read of every data byte of the files listed in argv[1] (one reused buffer).
_READER = """
import os, sys, time
paths = open(sys.argv[1]).read().split("\\n")
t0 = time.perf_counter()
buf = bytearray(1 << 24)
view = memoryview(buf)
total = 0
for p in paths:
    fd = os.open(p, os.O_RDONLY)
    try:
        while (got := os.readv(fd, [view])) > 0:
            total += got
    finally:
        os.close(fd)
print(time.perf_counter() - t0, total)
"""

SIRIL_DIRECT = """requires 1.0.0
setext fits
cd raw
stack bias_ rej s 3 3 -nonorm -out=../siril_direct
close
"""
SIRIL_CONVERT = """requires 1.0.0
setext fits
cd raw
convert bias -out=../process
cd ../process
stack bias_ rej s 3 3 -nonorm -out=../siril_convert
close
"""


@dataclass
class Runs:
    """Repeated measurements of one kind."""

    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)
    extra: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def peak(self) -> float:
        return max(self.peak_mb) if self.peak_mb else float("nan")


def launch(argv: Sequence[str], cwd: Path, log: Path, timeout_s: float,
           runs: Runs, env: dict[str, str] | None = None) -> None:
    """Run ``argv`` through the launcher and add its wall and CPU seconds and peak RSS (MB) to
    ``runs``. Raises RuntimeError (with the end of its log) if it fails."""
    with open(log, "wb") as out:
        done = subprocess.run([sys.executable, "-c", _LAUNCHER, *argv], cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=out, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"launcher failed: {done.stdout.decode()[-500:]}")
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    if result["code"] != 0:
        raise RuntimeError(f"{argv[0]} exited with {result['code']}:\n"
                           f"{log.read_text(errors='replace')[-2000:]}")
    runs.seconds.append(float(result["seconds"]))
    runs.cpu.append(float(result["cpu"]))
    runs.peak_mb.append(result["maxrss_kb"] / 1024.0)


def plain_read(paths: Sequence[Path], work: Path) -> float:
    """Seconds a fresh process takes to read every byte of ``paths`` (start-up excluded)."""
    listing = work / "files.txt"
    listing.write_text("\n".join(str(p) for p in paths))
    done = subprocess.run([sys.executable, "-c", _READER, str(listing)], capture_output=True,
                          text=True, timeout=600, check=True)
    seconds, total = done.stdout.split()
    if int(total) < sum(p.stat().st_size for p in paths):
        raise RuntimeError("short read")
    return float(seconds)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def calibd_argv(paths: Sequence[Path], out: Path) -> list[str]:
    return [sys.executable, "-m", "calibd", "-v", "masters", "combine", *map(str, paths),
            "--output", str(out), "--force", "--method", "mean", "--rejection", "sigma",
            "--sigma-low", "3", "--sigma-high", "3", "--center", "median", "--stddev", "sample",
            "--iterations", "0"]


_COMBINED = re.compile(r"combined in ([0-9.]+) s")


def run_calibd(paths: Sequence[Path], work: Path, runs: Runs) -> Path:
    out = work / "calibd_master.fits"
    log = work / "calibd.log"
    launch(calibd_argv(paths, out), ROOT, log, 900, runs, _env())
    found = _COMBINED.search(log.read_text(errors="replace"))
    if found:
        runs.extra.append(float(found.group(1)))
    return out


def siril_dir(paths: Sequence[Path], work: Path) -> Path:
    """A folder for Siril: ``raw/bias_NNN.fits`` links to the frames and the two scripts."""
    folder = work / "siril"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "raw").mkdir(parents=True)
    for i, p in enumerate(paths):
        (folder / "raw" / f"bias_{i:03d}.fits").symlink_to(p)
    (folder / "direct.ssf").write_text(SIRIL_DIRECT)
    (folder / "convert.ssf").write_text(SIRIL_CONVERT)
    return folder


def run_siril(folder: Path, script: str, runs: Runs) -> Path:
    for stale in [folder / "process", folder / "raw" / "bias_.seq"]:
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink(missing_ok=True)
    launch(["siril-cli", "-s", script, "-d", str(folder)], folder, folder / f"{script}.log",
           1800, runs)
    return folder / ("siril_direct.fits" if script == "direct.ssf" else "siril_convert.fits")


def compare(ours: Path, theirs: Path) -> tuple[float, float]:
    """Max |calibd - Siril| in ADU, and the fraction of pixels within one float32 step.

    Siril scales its 32-bit result to [0, 1] when the input was 16-bit: it is brought back to
    ADU first.
    """
    from astropy.io import fits

    a = fits.getdata(ours).astype(np.float64)
    b = fits.getdata(theirs).astype(np.float64)
    if b.max() <= 2.0:
        b = b * 65535.0
    diff = np.abs(a - b)
    step = np.spacing(np.abs(a).astype(np.float32)).astype(np.float64)
    return float(diff.max()), float(np.mean(diff <= step))


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def bench_set(fs: FrameSet, data_dir: Path, repeat: int, use_siril: bool,
              summary: dict[str, str]) -> bool:
    paths = ensure_set(data_dir, fs)
    ok = True
    with tempfile.TemporaryDirectory(prefix="calibd-vs-siril-") as tmp:
        work = Path(tmp)
        folder = siril_dir(paths, work) if use_siril else None
        kinds = ["read", "calibd"] + (["siril", "siril+convert"] if use_siril else [])
        runs = {k: Runs() for k in kinds}
        plain_read(paths, work)  # warm the page cache
        before = load()
        ours = theirs = None
        for _ in range(repeat):
            runs["read"].seconds.append(plain_read(paths, work))
            ours = run_calibd(paths, work, runs["calibd"])
            if folder is not None:
                theirs = run_siril(folder, "direct.ssf", runs["siril"])
                run_siril(folder, "convert.ssf", runs["siril+convert"])
        after = load()
        gb = sum(p.stat().st_size for p in paths) / 1e9
        print(f"\n{fs.name}: {fs.n} frames of {fs.width}x{fs.height} ({gb:.2f} GB), "
              f"{repeat} runs each; load average {before} before, {after} after")
        print(f"  {'':<14} {'median s':>9} {'min s':>7} {'max s':>7} {'CPU s':>7} {'peak MB':>8}")
        for kind, r in runs.items():
            cpu = f"{statistics.median(r.cpu):7.2f}" if r.cpu else f"{'':>7}"
            peak = f"{r.peak:8.0f}" if r.peak_mb else f"{'':>8}"
            print(f"  {kind:<14} {r.median:9.3f} {min(r.seconds):7.3f} {max(r.seconds):7.3f} "
                  f"{cpu} {peak}")
        cal = runs["calibd"]
        key = str(fs.n)
        summary[f"calibd{key}_s"] = f"{cal.median:.3f}"
        summary[f"calibd{key}_mb"] = f"{cal.peak:.0f}"
        summary[f"read{key}_s"] = f"{runs['read'].median:.3f}"
        if cal.extra:
            engine = statistics.median(cal.extra)
            print(f"  calibd's combine alone (its log): {engine:.3f} s median, "
                  f"{engine / runs['read'].median:.1f}x the plain read; the whole process "
                  f"{cal.median / runs['read'].median:.1f}x")
            summary[f"engine{key}_s"] = f"{engine:.3f}"
        ok = ok and cal.peak <= TARGET_MB
        if use_siril and ours is not None and theirs is not None:
            for kind in ("siril", "siril+convert"):
                ratio = runs[kind].median / cal.median
                cpu_ratio = statistics.median(runs[kind].cpu) / statistics.median(cal.cpu)
                print(f"  calibd is {ratio:.2f}x faster than {kind} (median wall times; "
                      f"{cpu_ratio:.2f}x in CPU time)")
                summary[f"{kind.replace('+', '_')}{key}_s"] = f"{runs[kind].median:.3f}"
                summary[f"speedup_{kind.replace('+', '_')}{key}"] = f"{ratio:.2f}"
                ok = ok and ratio >= TARGET_SPEEDUP
            diff, within = compare(ours, theirs)
            print(f"  max |calibd - Siril| = {diff:.3g} ADU; {within:.4%} of pixels within one "
                  f"float32 step")
        print(result_line(fs, runs, f"{before} / {after}"))
    return ok


def result_line(fs: FrameSet, runs: dict[str, Runs], load_avg: str) -> str:
    """The set's verdict on one line: calibd's median against Siril's, and the targets."""
    cal = runs["calibd"]
    memory = "met" if cal.peak <= TARGET_MB else "NOT met"
    text = (f"RESULT {fs.name}: calibd {cal.median:.3f} s, peak {cal.peak:.0f} MB "
            f"(<= {TARGET_MB:.0f} MB: {memory})")
    if "siril" in runs:
        ratio = runs["siril"].median / cal.median
        speed = "met" if ratio >= TARGET_SPEEDUP else "NOT met"
        text += (f"; Siril {runs['siril'].median:.3f} s: calibd {ratio:.2f}x faster "
                 f"(>= {TARGET_SPEEDUP:g}x: {speed})")
    return f"{text}; load average {load_avg}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"small sets ({QUICK_SETS})")
    parser.add_argument("--sets", default=None, help=f"default {FULL_SETS}")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each (medians count)")
    parser.add_argument("--no-siril", action="store_true", help="calibd and the read only")
    opts = parser.parse_args(argv)
    spec = opts.sets or (QUICK_SETS if opts.quick else FULL_SETS)
    sets = [FrameSet.parse(s) for s in spec.split(",") if s.strip()]
    use_siril = not opts.no_siril
    if use_siril and shutil.which("siril-cli") is None:
        print("siril-cli not found (Debian: apt-get install siril), or use --no-siril")
        return 2
    print(f"{os.cpu_count()} CPU(s); calibd from {ROOT}")
    summary: dict[str, str] = {}
    ok = all([bench_set(fs, opts.data_dir, max(1, opts.repeat), use_siril, summary)
              for fs in sets])
    summary["targets_met"] = str(ok).lower()
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
