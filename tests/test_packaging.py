"""The installed distribution: one top-level import package, and the command works from it.

Builds the wheel with pip (as a user's ``pip install .`` does), installs it into a fresh virtual
environment without the repository on the path, and runs ``calibd`` from there. The
dependencies come from the test environment's own site-packages (``PYTHONPATH``), so nothing is
downloaded but the build backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(out), str(REPO)], check=True, timeout=300,
                   capture_output=True)
    (built,) = out.glob("calibd-*.whl")
    return built


def test_wheel_has_one_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert zf.read(info).decode().split() == ["calibd"]
        roots = {n.split("/", 1)[0] for n in names}
    dist_info = {r for r in roots if r.endswith(".dist-info")}
    assert roots - dist_info == {"calibd"}, sorted(roots)
    for sub in ("capture", "drivers", "simulators"):
        assert f"calibd/{sub}/__init__.py" in names
    assert "calibd/simulators/asi_sdk/asi_double.c" in names  # package data travels too
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_calibd_runs_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # Nothing of the checkout on the path (its calibd.egg-info would read as installed).
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
                   check=True, timeout=300, capture_output=True, cwd=tmp_path, env=clean)
    deps = sysconfig.get_paths()["purelib"]  # numpy, astropy, pydantic… of the test environment
    env = {**clean, "PYTHONPATH": deps}
    where = subprocess.run([str(python), "-c", "import calibd; print(calibd.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                           check=False)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(env_dir)
    for stray in ("capture", "drivers", "simulators"):
        probe = subprocess.run([str(python), "-c", f"import {stray}"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=60, check=False)
        assert probe.returncode != 0, f"{stray} is importable as a top-level name"
    check = subprocess.run([str(env_dir / "bin" / "calibd"), "plan", "check",
                            str(REPO / "plans" / "demo.yaml")],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                           check=False)
    assert check.returncode == 0, check.stderr
    assert "Frames:    80" in check.stdout
