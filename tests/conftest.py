"""Shared fixtures: configuration files for the simulator, and running the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from capture.cli.main import main

REPO = Path(__file__).resolve().parent.parent
PLANS = REPO / "plans"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> CliResult:
    """Run ``calibd`` in-process (same code path as the console script)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def calibd_subprocess(*args: str | Path, timeout: float = 300,
                      env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``calibd`` as a real process (``python -m capture``)."""
    return subprocess.run([sys.executable, "-m", "capture", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})}, check=False)


def write_config(path: Path, *, scale: float = 5000.0, profile: str = "small",
                 camera: str = "sim", flats: bool = False, start: str | None = None,
                 panel: dict[str, Any] | None = None, **camera_options: Any) -> Path:
    """A configuration with one simulated camera on a simulated clock; ``flats`` adds the
    simulated seven-filter wheel, flip-flat panel and a site (45° N, 7° E)."""
    cam: dict[str, Any] = {"driver": "simulator", "profile": profile, "offset": 50}
    cam.update(camera_options)
    clock: dict[str, Any] = {"kind": "simulated", "scale": scale}
    if start is not None:
        clock["start"] = start
    data: dict[str, Any] = {"clock": clock, "cameras": {camera: cam}}
    if flats:
        cam.update(filter_wheel="wheel", flat_panel="panel")
        data["site"] = {"latitude_deg": 45.0, "longitude_deg": 7.0, "elevation_m": 400.0}
        data["filter_wheels"] = {"wheel": {"driver": "simulator"}}
        data["flat_panels"] = {"panel": {"driver": "simulator", **(panel or {})}}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_plan(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def required(component: str) -> bool:
    """True when CI demands ``component``'s tests (CALIBD_REQUIRE=indi,alpaca,zwo)."""
    wanted = os.environ.get("CALIBD_REQUIRE", "")
    return component in {w.strip() for w in wanted.split(",")}


def skip_or_fail(component: str, reason: str) -> None:
    """Skip with ``reason`` on a developer machine; fail when CI requires the component."""
    if required(component):
        pytest.fail(f"{component} tests are required (CALIBD_REQUIRE) but cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture
def sim_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "calibd.yaml")
