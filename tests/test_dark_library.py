"""The full dark library (1,840 frames, 72.7 h of exposure) on the small simulator profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import PLANS
from tests.support import calibd_subprocess
from tests.support import write_config


@pytest.mark.slow
def test_full_dark_library_runs_to_completion(tmp_path: Path) -> None:
    # Simulated clock: 72.7 h of darks in well under a minute of real time.
    config = write_config(tmp_path / "c.yaml", scale=20000.0)
    library = tmp_path / "lib"
    run = calibd_subprocess("-q", "run", PLANS / "dark-library.yaml", "--config", config,
                            "--library", library, timeout=600)
    assert run.returncode == 0, run.stderr
    status = calibd_subprocess("library", "status", "--library", library, "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    (r,) = data["runs"]
    assert r["state"] == "complete"
    assert r["planned"] == r["done"] == 1840
    assert len(r["cells"]) == 80
    assert all(c["state"] == "complete" and c["done"] == c["planned"] for c in r["cells"])
    assert data["frames"] == 1840
    files = list(library.rglob("*.fits"))
    masters = [p for p in files if "Masters" in p.parts]
    assert len(files) - len(masters) == 1840
    # Built as the cells completed: 8 master bias, 72 master darks, a bad pixel map per gain.
    assert sum(1 for p in masters if p.name.startswith("Master_Bias")) == 8
    assert sum(1 for p in masters if p.name.startswith("Master_Dark_")) == 72
    assert sum(1 for p in masters if p.name.startswith("Master_BPM")) == 4
    text = calibd_subprocess("library", "status", "--library", library)
    assert text.returncode == 0 and "1,840/1,840 frames, 80/80 cells complete" in text.stdout
