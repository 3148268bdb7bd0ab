"""Benchmark: building a master from N raw frames, calibd vs ccdproc vs a plain streaming read.

Usage::

    .venv/bin/python benchmarks/masters.py            # full sizes: 30x4144x2822, 50x6248x4176
    .venv/bin/python benchmarks/masters.py --quick    # small sets, a smoke run
    .venv/bin/python benchmarks/masters.py --sets 30x4144x2822 --skip-ccdproc --repeat 5

Sets are ``NxWIDTHxHEIGHT`` (frames x columns x rows). The frames are realistic 16-bit biases
(fixed bias level with a column pattern and a corner glow, per-frame row noise, Gaussian read
noise, hot pixels, cosmic-ray hits) written as BITPIX=16/BZERO=32768 FITS files into the data
directory (default ``benchmarks/data/``, git-ignored); files already there are reused.

Every measurement runs in its own subprocess, on a warm page cache, timed inside the child around
the operation only (imports excluded). Peak memory is the child's own high-water mark (VmHWM
from /proc/self/status at its end; ``ru_maxrss`` from ``os.wait4`` only where /proc is missing,
as it also counts pages inherited from the parent before exec). ``read`` and ``calibd`` run
``--repeat`` times (default 3) and the best run counts, since other processes may share the
machine; ccdproc runs once. Measured per set:

* ``read``: every frame read in full, sequentially, into one reused buffer (the floor);
* ``calibd``: :func:`capture.combine.combine_to_fits` (3-sigma clipping around the median, one
  pass, mean) including writing and fsyncing the FITS master;
* ``ccdproc``: ``ccdproc.combine(method='average', sigma_clip=True, 3/3 sigma, median/std,
  mem_limit=1e9)`` (the same algorithm; it does not write a file).

The calibd result is compared with ccdproc's (max |difference| in float32 steps). The last line
of the output is a one-line ``key=value`` summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = HERE / "data"
FULL_SETS = "30x4144x2822,50x6248x4176"
QUICK_SETS = "12x640x480,20x1024x768"
GENERATOR_VERSION = 1

# sensor model (16-bit ADU)
BIAS_LEVEL = 1000.0
COLUMN_PATTERN_ADU = 3.0
ROW_NOISE_ADU = 1.5
READ_NOISE_ADU = 8.0
GLOW_ADU = 25.0
HOT_FRACTION = 5e-4
COSMICS_PER_MPIX = 8.0


@dataclass(frozen=True)
class FrameSet:
    """``n`` frames of ``width`` x ``height`` pixels."""

    n: int
    width: int
    height: int

    @property
    def name(self) -> str:
        return f"{self.n}x{self.width}x{self.height}"

    @classmethod
    def parse(cls, text: str) -> FrameSet:
        try:
            n, w, h = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad set {text!r}: use NxWIDTHxHEIGHT") from None
        if n < 3 or w < 1 or h < 1:
            raise argparse.ArgumentTypeError(f"bad set {text!r}: need N >= 3 and a positive size")
        return cls(n, w, h)


# --------------------------------------------------------------------------- data generation


def _fixed_pattern(rng: np.random.Generator, fs: FrameSet) -> np.ndarray[Any, Any]:
    h, w = fs.height, fs.width
    pattern = np.full((h, w), BIAS_LEVEL, dtype=np.float32)
    pattern += (rng.standard_normal(w, dtype=np.float32) * COLUMN_PATTERN_ADU)[None, :]
    yy = np.arange(h, dtype=np.float32)[:, None] / max(h, 1)
    xx = np.arange(w, dtype=np.float32)[None, :] / max(w, 1)
    pattern += GLOW_ADU * np.exp(-((1 - xx) ** 2 + yy**2) / 0.02).astype(np.float32)
    return pattern


def _frame(
    rng: np.random.Generator,
    fs: FrameSet,
    pattern: np.ndarray[Any, Any],
    hot_idx: np.ndarray[Any, Any],
    hot_val: np.ndarray[Any, Any],
) -> np.ndarray[Any, Any]:
    h, w = fs.height, fs.width
    img = rng.standard_normal((h, w), dtype=np.float32)
    img *= READ_NOISE_ADU
    img += pattern
    img += rng.standard_normal((h, 1), dtype=np.float32) * ROW_NOISE_ADU
    flat = img.reshape(-1)
    flat[hot_idx] = hot_val + rng.standard_normal(hot_idx.size).astype(np.float32) * 20
    ncr = int(rng.poisson(COSMICS_PER_MPIX * h * w / 1e6))
    ys = rng.integers(0, h, ncr)
    xs = rng.integers(0, w, ncr)
    energy = rng.uniform(500, 30000, ncr).astype(np.float32)
    img[ys, xs] += energy
    img[ys, np.minimum(xs + 1, w - 1)] += energy * 0.3
    img[np.minimum(ys + 1, h - 1), xs] += energy * 0.2
    np.clip(img, 0, 65535, out=img)
    np.rint(img, out=img)
    return img.astype(np.uint16)


def ensure_set(data_dir: Path, fs: FrameSet, log: Any = print) -> list[Path]:
    """Generate (or reuse) the frames of ``fs``; returns their paths."""
    from astropy.io import fits

    set_dir = data_dir / fs.name
    set_dir.mkdir(parents=True, exist_ok=True)
    manifest = set_dir / "manifest.json"
    meta = {"version": GENERATOR_VERSION, "n": fs.n, "width": fs.width, "height": fs.height}
    paths = [set_dir / f"bias_{i:03d}.fits" for i in range(fs.n)]
    data_bytes = fs.width * fs.height * 2
    reuse = manifest.exists() and json.loads(manifest.read_text()) == meta
    if reuse and all(p.exists() and p.stat().st_size >= data_bytes for p in paths):
        return paths
    log(f"generating {fs.n} frames of {fs.width}x{fs.height} in {set_dir} ...")
    t0 = time.perf_counter()
    manifest.unlink(missing_ok=True)
    rng = np.random.default_rng(20241125 + fs.n)
    pattern = _fixed_pattern(rng, fs)
    nhot = max(1, int(HOT_FRACTION * fs.width * fs.height))
    hot_idx = rng.choice(fs.width * fs.height, nhot, replace=False)
    hot_val = rng.uniform(2000, 40000, nhot).astype(np.float32)
    for i, path in enumerate(paths):
        frame = _frame(np.random.default_rng([20241125, fs.n, i]), fs, pattern, hot_idx, hot_val)
        hdu = fits.PrimaryHDU(frame)
        hdu.header["IMAGETYP"] = "Bias Frame"
        hdu.header["EXPTIME"] = 0.0
        hdu.header["GAIN"] = 100
        hdu.header["OFFSET"] = 30
        hdu.header["INSTRUME"] = "benchmark sensor"
        tmp = path.with_suffix(".tmp")
        hdu.writeto(tmp, overwrite=True)
        os.replace(tmp, path)
    manifest.write_text(json.dumps(meta))
    log(f"  done in {time.perf_counter() - t0:.1f} s")
    return paths


# --------------------------------------------------------------------------- child processes


def _child_read(paths: list[str]) -> dict[str, Any]:
    from astropy.io import fits

    sizes = []
    for p in paths:
        with fits.open(p, lazy_load_hdus=True) as hdul:
            info = hdul.fileinfo(0)
            assert info is not None
            sizes.append((int(info["datLoc"]), abs(hdul[0].header["BITPIX"]) // 8))
    nbytes = [
        int(np.prod([fits.getval(p, "NAXIS1"), fits.getval(p, "NAXIS2")])) * b
        for p, (_, b) in zip(paths, sizes, strict=True)
    ]
    buf = bytearray(max(nbytes))
    view = memoryview(buf)
    t0 = time.perf_counter()
    total = 0
    for p, (off, _), nb in zip(paths, sizes, nbytes, strict=True):
        fd = os.open(p, os.O_RDONLY)
        try:
            got = 0
            while got < nb:
                r = os.preadv(fd, [view[got:nb]], off + got)
                if r <= 0:
                    raise OSError(f"short read in {p}")
                got += r
            total += got
        finally:
            os.close(fd)
    return {"seconds": time.perf_counter() - t0, "bytes": total}


def _child_calibd(paths: list[str], out: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from calibd.capture.combine import Rejection
    from calibd.capture.combine import combine_to_fits
    from calibd.capture.combine import warm_up

    rejection = Rejection("sigma", sigma_low=3.0, sigma_high=3.0, iterations=1)
    t0 = time.perf_counter()
    engine = warm_up()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats = combine_to_fits(paths, out, method="mean", rejection=rejection)
    return {
        "seconds": time.perf_counter() - t0,
        "warm_up_seconds": warm,
        "engine": engine,
        "rejected_fraction": stats.rejected_fraction,
    }


def _child_warmup() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from calibd.capture.combine import warm_up

    t0 = time.perf_counter()
    engine = warm_up()
    return {"seconds": time.perf_counter() - t0, "engine": engine}


def _child_ccdproc(paths: list[str], out: str) -> dict[str, Any]:
    import warnings

    import ccdproc
    from astropy import log as astropy_log
    from astropy.utils.exceptions import AstropyWarning

    astropy_log.setLevel("ERROR")
    warnings.simplefilter("ignore", AstropyWarning)
    t0 = time.perf_counter()
    ccd = ccdproc.combine(
        paths,
        method="average",
        sigma_clip=True,
        sigma_clip_low_thresh=3,
        sigma_clip_high_thresh=3,
        sigma_clip_func=np.ma.median,
        sigma_clip_dev_func=np.ma.std,
        mem_limit=1e9,
        unit="adu",
    )
    seconds = time.perf_counter() - t0
    np.save(out, np.asarray(ccd.data))
    return {"seconds": seconds}


def _child_main(argv: Sequence[str]) -> int:
    kind, listfile, out = argv
    paths = Path(listfile).read_text().split("\n")
    if kind == "read":
        result = _child_read(paths)
    elif kind == "calibd":
        result = _child_calibd(paths, out)
    elif kind == "ccdproc":
        result = _child_ccdproc(paths, out)
    elif kind == "warmup":
        result = _child_warmup()
    else:
        raise SystemExit(f"unknown child kind {kind}")
    result["vmhwm_kb"] = _vm_hwm_kb()
    print(json.dumps(result), flush=True)
    return 0


def _vm_hwm_kb() -> int:
    """This process's peak resident set (VmHWM) since exec, in KiB; 0 if unknown.

    Unlike ``ru_maxrss`` it does not inherit the parent's size from before the exec.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Measurement:
    seconds: float
    peak_mb: float
    extra: dict[str, Any]


def run_child(
    kind: str, paths: list[Path], out: Path, env: dict[str, str] | None = None
) -> Measurement:
    """Run one measurement in a fresh interpreter; peak memory from ``os.wait4``."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("\n".join(str(p) for p in paths))
        listfile = fh.name
    try:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", kind, listfile, str(out)],
            stdout=subprocess.PIPE,
            env=env,
            cwd=str(ROOT),
        )
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        os.unlink(listfile)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed with exit code {proc.returncode}")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    # VmHWM from the child itself; ru_maxrss of a child also counts the parent's pages it had
    # before exec, so it is only the fallback.
    hwm_kb = int(result.pop("vmhwm_kb", 0)) or usage.ru_maxrss
    return Measurement(float(result.pop("seconds")), hwm_kb / 1024.0, result)


# --------------------------------------------------------------------------- comparison


def compare(master: Path, reference: Path) -> tuple[float, float]:
    """Max |calibd - ccdproc| in ADU and in float32 steps of the reference value."""
    from astropy.io import fits

    ours = fits.getdata(master).astype(np.float64)
    ref = np.load(reference)
    diff = np.abs(ours - ref)
    steps = diff / np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    return float(diff.max()), float(steps.max())


def cache_timing(work: Path) -> tuple[float, float, str]:
    """Seconds to make the numba kernels ready in a fresh process: empty cache, then cached."""
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(work / "numba-cache")
    cold = run_child("warmup", [], work / "none", env)
    warm = run_child("warmup", [], work / "none", env)
    return cold.seconds, warm.seconds, str(cold.extra["engine"])


def best_of(kind: str, paths: list[Path], out: Path, repeat: int) -> tuple[Measurement, float]:
    """Run ``repeat`` times; returns the fastest run and the median time."""
    runs = [run_child(kind, paths, out) for _ in range(max(1, repeat))]
    times = sorted(r.seconds for r in runs)
    return min(runs, key=lambda r: r.seconds), times[len(times) // 2]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--child"]:
        return _child_main(args[1:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"small sets ({QUICK_SETS})")
    parser.add_argument("--sets", type=str, default=None, help=f"default {FULL_SETS}")
    parser.add_argument("--skip-ccdproc", action="store_true", help="do not run ccdproc")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3, help="runs of read/calibd (best counts)")
    parser.add_argument("--no-cache-check", action="store_true", help="skip numba cache timing")
    opts = parser.parse_args(args)
    spec = opts.sets or (QUICK_SETS if opts.quick else FULL_SETS)
    sets = [FrameSet.parse(s) for s in spec.split(",") if s.strip()]

    summary: dict[str, str] = {}
    opts.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="calibd-bench-", dir=opts.data_dir) as tmp:
        work = Path(tmp)
        if not opts.no_cache_check:
            cold, warm, engine = cache_timing(work)
            print(
                f"kernel warm-up ({engine}): {cold:.2f} s with an empty cache, {warm:.2f} s cached"
            )
            summary["warmup_cold_s"] = f"{cold:.2f}"
            summary["warmup_cached_s"] = f"{warm:.2f}"
        for fs in sets:
            paths = ensure_set(opts.data_dir, fs)
            master = work / f"master_{fs.name}.fits"
            run_child("read", paths, work / "none")  # warm the page cache
            read, read_med = best_of("read", paths, work / "none", opts.repeat)
            ours, ours_med = best_of("calibd", paths, master, opts.repeat)
            gb = fs.n * fs.width * fs.height * 2 / 1e9
            print(f"\n{fs.name}: {fs.n} frames of {fs.width}x{fs.height}, {gb:.2f} GB")
            print(f"  {'':<9} {'best s':>8} {'median s':>9} {'peak MB':>8}")
            print(f"  {'read':<9} {read.seconds:8.3f} {read_med:9.3f} {read.peak_mb:8.0f}")
            print(
                f"  {'calibd':<9} {ours.seconds:8.3f} {ours_med:9.3f} {ours.peak_mb:8.0f}"
                f"   engine {ours.extra['engine']}, {ours.extra['rejected_fraction']:.3%} rejected"
            )
            key = f"{fs.n}"
            summary[f"calibd{key}_s"] = f"{ours.seconds:.3f}"
            summary[f"calibd{key}_mb"] = f"{ours.peak_mb:.0f}"
            summary[f"read{key}_s"] = f"{read.seconds:.3f}"
            summary[f"read{key}_mb"] = f"{read.peak_mb:.0f}"
            if not opts.skip_ccdproc:
                ref = work / f"ccdproc_{fs.name}.npy"
                cp = run_child("ccdproc", paths, ref)
                diff, steps = compare(master, ref)
                print(f"  {'ccdproc':<9} {cp.seconds:8.3f} {'':>9} {cp.peak_mb:8.0f}")
                print(
                    f"  speed-up vs ccdproc {cp.seconds / ours.seconds:.1f}x "
                    f"(median run {cp.seconds / ours_med:.1f}x); max |calibd - ccdproc| = "
                    f"{diff:.3g} ADU = {steps:.2f} float32 steps"
                )
                summary[f"speedup{key}"] = f"{cp.seconds / ours.seconds:.1f}"
                summary[f"ccdproc{key}_s"] = f"{cp.seconds:.2f}"
                summary[f"ccdproc{key}_mb"] = f"{cp.peak_mb:.0f}"
                summary[f"maxdiff_steps{key}"] = f"{steps:.2f}"
                ref.unlink()
            ratio = ours.seconds / read.seconds
            print(f"  calibd / read floor = {ratio:.2f}")
            summary[f"floor_ratio{key}"] = f"{ratio:.2f}"
            master.unlink(missing_ok=True)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
