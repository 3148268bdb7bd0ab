"""Start-up of ``calibd masters combine`` and the benchmark against Siril (on tiny inputs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tests.support import REPO
from tests.support import calibd_subprocess

# Runs `calibd masters combine` in this interpreter, then prints which heavy modules it loaded
# and whether the garbage collector is on.
_PROBE = """
import gc, json, sys
from calibd.capture.cli.main import main
code = main(sys.argv[1:])
heavy = ("pydantic", "sqlite3", "calibd.capture.config", "calibd.capture.library.index",
         "calibd.capture.plans.model", "calibd.capture.devices", "calibd.drivers.contracts")
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules],
                  "gc": gc.isenabled()}))
"""


def _frames(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(3)
    paths = []
    for i in range(n):
        path = folder / f"bias_{i:03d}.fits"
        hdu = fits.PrimaryHDU(rng.normal(500, 5, (24, 32)).astype(np.uint16))
        hdu.header["IMAGETYP"] = "Bias Frame"
        hdu.writeto(path)
        paths.append(path)
    return paths


def test_masters_combine_starts_without_configuration_library_or_devices(tmp_path: Path) -> None:
    paths = _frames(tmp_path, 5)
    out = tmp_path / "master.fits"
    done = subprocess.run([sys.executable, "-c", _PROBE, "-q", "masters", "combine",
                           *map(str, paths), "--output", str(out), "--iterations", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # the command runs without the cyclic garbage collector; an in-process caller gets it back
    assert result == {"code": 0, "loaded": [], "gc": True}
    with fits.open(out) as hdul:
        assert hdul[0].header["NCOMBINE"] == 5
        assert hdul[0].header["IMAGETYP"] == "Master Bias"


def test_the_combine_process_loads_its_kernels_without_scipy(tmp_path: Path) -> None:
    # numba's BLAS probe imports SciPy (0.1-0.25 s of start-up) where it is installed; the
    # `calibd` process of `masters combine` keeps it out, an in-process caller is left alone
    probe = ("import json, sys\n"
             "from calibd.capture.cli.main import _main\n"
             "code, fast = _main(sys.argv[1:], program=True)\n"
             "print(json.dumps({'code': code, 'fast': fast, 'kernels': 'numba.np.arraymath' in "
             "sys.modules, 'scipy': type(sys.modules.get('scipy')).__name__}))\n")
    paths = _frames(tmp_path, 5)
    done = subprocess.run([sys.executable, "-c", probe, "-q", "masters", "combine",
                           *map(str, paths), "--output", str(tmp_path / "m.fits")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "fast": True, "kernels": True, "scipy": "NoneType"}


def test_masters_combine_process_ends_early_with_its_output_flushed(tmp_path: Path) -> None:
    # `masters combine` ends without the interpreter's shutdown (os._exit): what it printed and
    # logged must still be complete, with the right exit code (2 for bad input).
    paths = _frames(tmp_path, 5)
    out = tmp_path / "master.fits"
    done = calibd_subprocess("-v", "masters", "combine", *paths, "--output", out, timeout=120,
                             env={"PYTHONUNBUFFERED": ""})  # stdout to a pipe: block-buffered
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{out}: 5 frames, mean with sigma rejection, "
                                        f"{fits.getheader(out)['REJFRAC']:.3%} of samples "
                                        "rejected"]
    assert done.stderr.rstrip().endswith(f"wrote {out}")
    again = calibd_subprocess("masters", "combine", *paths, "--output", out, timeout=120)
    assert again.returncode == 2 and "the output exists" in again.stderr


def test_benchmark_against_siril_runs_on_tiny_frames(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "benchmarks" / "combine_vs_siril.py"), "--sets",
           "5x64x48", "--repeat", "1", "--data-dir", str(tmp_path)]
    if shutil.which("siril-cli") is None:
        cmd.append("--no-siril")
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = dict(kv.split("=", 1) for kv in done.stdout.strip().splitlines()[-1].split())
    assert float(summary["calibd5_s"]) > 0
    assert 0 < float(summary["calibd5_mb"]) < 1024
    assert float(summary["read5_s"]) >= 0
    if "--no-siril" not in cmd:
        assert float(summary["siril5_s"]) > 0 and float(summary["siril_convert5_s"]) > 0
        assert "within one float32 step" in done.stdout


def test_kernel_cache_falls_back_to_a_private_temporary_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numba")
    from calibd.capture.combine import _numba_setup as setup

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))  # cannot be created
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert setup.choose_cache_dir() == setup.fallback_cache_dir()
    fallback = Path(setup.fallback_cache_dir())
    assert fallback.parent == tmp_path and fallback.stat().st_mode & 0o777 == 0o700
    fallback.chmod(0o777)  # writable by others: its cache could be planted, so not used
    assert setup.choose_cache_dir() is None
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    assert setup.choose_cache_dir() == str(tmp_path / "home-cache" / "calibd" / "numba")
