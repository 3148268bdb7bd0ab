"""Flats on colour (Bayer) sensors: the level of each CFA channel, the brightest aimed at the
target, no channel clipped, the weakest above the floor, the levels in the header, the index and
``library status``."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from calibd.capture import cfa
from calibd.capture.flats.channels import colour_problem
from calibd.capture.flats.channels import measure
from calibd.capture.library.index import COLOUR_FLAT_COLUMNS
from calibd.capture.library.index import Index
from tests.support import cli_json
from tests.support import run_cli
from tests.support import write_config
from tests.support import write_plan

BIAS = 500.0
TARGET = 20000.0
FLOOR = 1000.0


def mosaic(pattern: str, levels: dict[str, float], shape: tuple[int, int] = (240, 320),
           seed: int = 3) -> np.ndarray:
    """A raw colour flat: each channel at its level (ADU, bias included) with 1 % noise."""
    rng = np.random.default_rng(seed)
    data = np.empty(shape)
    for name, plane in cfa.channels(data, pattern).items():
        plane[...] = rng.normal(levels[name], 0.01 * (levels[name] - BIAS) + 2, plane.shape)
    return data.clip(0, 65535).astype(np.uint16)


@pytest.mark.parametrize("pattern", cfa.PATTERNS)
def test_channel_levels_follow_the_pattern(pattern: str) -> None:
    levels = {"R": 8000.0, "G1": 20000.0, "G2": 19800.0, "B": 6000.0}
    found = measure(mosaic(pattern, levels), pattern, 65535.0)
    for name, want in levels.items():
        assert abs(found.levels[name] - want) < 0.01 * want, (name, found.levels)
    assert found.brightest[0] == "G1" and found.weakest[0] == "B"
    assert set(found.header()) == {"CFALVLR", "CFALVLG1", "CFALVLG2", "CFALVLB"}
    assert colour_problem(found, bias_adu=BIAS, floor_adu=1000.0) is None


def test_a_clipping_channel_or_a_starved_one_is_refused_with_the_reason() -> None:
    clipped = measure(mosaic("RGGB", {"R": 9000.0, "G1": 65535.0, "G2": 65535.0, "B": 4000.0}),
                      "RGGB", 65535.0)
    why = colour_problem(clipped, bias_adu=BIAS, floor_adu=1000.0)
    assert why is not None and why.startswith("channel G1/G2 clips")
    starved = measure(mosaic("BGGR", {"R": 1200.0, "G1": 20000.0, "G2": 20000.0, "B": 9000.0}),
                      "BGGR", 65535.0)
    why = colour_problem(starved, bias_adu=BIAS, floor_adu=1000.0)
    assert why is not None and "weakest channel R is only 69" in why and "floor of 1000" in why
    assert colour_problem(starved, bias_adu=BIAS, floor_adu=500.0) is None


PANEL_PLAN = """
defaults: {offset: 50}
cooling: {dwell_s: 20}
sets:
  - kind: flat
    source: panel
    filters: [L]
    gains: [100]
    setpoints_c: [-10]
    count: 3
    panel: {mode: exposure, brightness: 512}
    dark_flats: {count: 3}
  - kind: flat
    source: panel
    filters: [Ha]
    gains: [100]
    setpoints_c: [-10]
    count: 3
    panel: {mode: brightness, exposure_s: 10}
    dark_flats: {count: 3}
"""

SKY_PLAN = """
defaults: {offset: 50}
cooling: {dwell_s: 20}
sets:
  - kind: flat
    source: sky
    filters: [L]
    gains: [100]
    setpoints_c: [-10]
    count: 4
    tolerance_pct: 10
    min_exposure_s: 0.1
    max_exposure_s: 30
    sky: {twilight: dusk, sun_altitude_deg: [-2, -10]}
    dark_flats: {count: 3}
"""


def independent_levels(data: np.ndarray, pattern: str) -> dict[str, float]:
    """Central median of each colour, sliced here by hand (not with calibd's cfa module)."""
    h, w = data.shape
    r0, c0 = (h // 4) // 2 * 2, (w // 4) // 2 * 2
    centre = data[r0: h - r0, c0: w - c0]
    out: dict[str, float] = {}
    for i, colour in enumerate(pattern):
        r, c = divmod(i, 2)
        name = colour if colour != "G" else ("G1" if "R" in pattern[2 * r: 2 * r + 2] else "G2")
        out[name] = float(np.median(centre[r::2, c::2]))
    return out


def clipped_fraction(data: np.ndarray, pattern: str) -> float:
    return max(float(np.mean(data[r::2, c::2] >= 0.98 * 65535)) for r in (0, 1) for c in (0, 1))


def colour_run(capsys: pytest.CaptureFixture[str], tmp_path: Path, plan: str,
               **config: Any) -> tuple[Path, list[tuple[fits.Header, np.ndarray]], float]:
    """Run ``plan`` on the small colour simulator; (library, flats, bias level of the dark
    flats measured here)."""
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", write_plan(tmp_path / "p.yaml", textwrap.dedent(plan)),
                  "--config", write_config(tmp_path / "c.yaml", profile="small-colour",
                                           flats=True, seed=5, **config), "--library", lib)
    assert res.code == 0, res.err + res.out
    flats = []
    for path in sorted((lib / "sim" / "Flats").rglob("*.fits")):
        with fits.open(path) as hdul:
            flats.append((hdul[0].header, hdul[0].data.astype(np.float64)))
    darks = [fits.getdata(p).astype(np.float64)
             for p in sorted((lib / "sim" / "DarkFlats").rglob("*.fits"))]
    bias = float(np.median([np.median(d) for d in darks]))
    return lib, flats, bias


def check_flats(lib: Path, flats: list[tuple[fits.Header, np.ndarray]], bias: float,
                brightest: str, light: str) -> None:
    """Every flat: its brightest channel within ±10 % of the target, no channel clipped, every
    channel above the floor (levels measured here from the pixels), the header's levels right;
    the index and ``library status`` carry them. Prints the levels and the test frames."""
    assert flats
    for h, data in flats:
        assert h["BAYERPAT"] == "RGGB"
        levels = independent_levels(data, h["BAYERPAT"])
        top = max(levels, key=lambda n: levels[n])
        assert top.startswith(brightest), (light, levels)
        assert abs(levels[top] - TARGET) <= 0.1 * TARGET, (light, levels)
        assert clipped_fraction(data, h["BAYERPAT"]) < 0.01
        assert min(levels.values()) - bias >= FLOOR, (light, levels, bias)
        for name, value in levels.items():  # the header says what the pixels say
            assert abs(h[f"CFALVL{name}"] - value) <= 0.01 * value, (name, value)
        assert abs(h["FLATBIAS"] - bias) < 20
    index = Index(lib)
    try:
        rows = index.query("SELECT cfa_r_adu, cfa_g1_adu, cfa_g2_adu, cfa_b_adu, flat_bias_adu "
                           "FROM frames WHERE kind='flat'")
        searches = index.events(1, "flat-search")
        rejected = index.events(1, "frame-rejected")
    finally:
        index.close()
    assert len(rows) == len(flats) and all(None not in tuple(r) for r in rows)
    status = cli_json("library", "status", "--library", lib, "--json")
    cells = [c for c in status["runs"][0]["cells"] if c["kind"] == "flat"]
    for cell in cells:
        levels = cell["channel_levels_adu"]
        assert set(levels) == {"R", "G1", "G2", "B"}
        assert max(levels, key=lambda n: levels[n]).startswith(brightest)
    for e in searches:
        data = json.loads(e["data"])
        print(f"{light}: {e['message']} | test frames {data['frames']} | channels above bias "
              f"{data['channels_adu']}")
    for cell in cells:
        print(f"{light}: flat {cell['filter']}: {cell['done']} flats, mean channel levels "
              f"above bias {cell['channel_levels_adu']}; frames rejected in the run: "
              f"{len(rejected)}")


def test_panel_flats_on_a_colour_sensor_aim_the_green_channel(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lib, flats, bias = colour_run(capsys, tmp_path, PANEL_PLAN)
    assert len(flats) == 6 and {h["FILTER"] for h, _ in flats} == {"L", "Ha"}
    res = run_cli(capsys, "library", "status", "--library", lib)
    assert res.code == 0 and "flat L channels (mean ADU above bias): R " in res.out
    check_flats(lib, flats, bias, "G", "panel (green-heavy)")


def test_sky_flats_on_a_colour_sensor_aim_the_blue_channel(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lib, flats, bias = colour_run(capsys, tmp_path, SKY_PLAN, scale=100.0,
                                  start="2026-11-25T15:57:00Z")
    assert len(flats) == 4
    check_flats(lib, flats, bias, "B", "twilight sky (blue-heavy)")


def test_an_index_from_before_colour_flats_gains_their_columns(tmp_path: Path) -> None:
    Index(tmp_path).close()
    db = sqlite3.connect(tmp_path / "calibd.sqlite")
    for name in COLOUR_FLAT_COLUMNS:
        db.execute(f"ALTER TABLE frames DROP COLUMN {name}")
    db.commit()
    db.close()
    index = Index(tmp_path)
    try:
        columns = {r["name"] for r in index.query("PRAGMA table_info(frames)")}
        assert set(COLOUR_FLAT_COLUMNS) <= columns
    finally:
        index.close()


def test_a_panel_too_far_from_white_fails_the_cell_with_the_weakest_channel(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.yaml", textwrap.dedent(PANEL_PLAN).replace(
        "count: 3\n    panel: {mode: exposure", "count: 3\n    min_channel_adu: 8000\n"
        "    panel: {mode: exposure"))
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", write_config(
        tmp_path / "c.yaml", profile="small-colour", flats=True, seed=5), "--library", lib)
    assert res.code == 1
    assert "the weakest channel R is only" in res.err and "floor of 8000 ADU" in res.err
    assert not list((lib / "sim" / "Flats").rglob("Flat_L_*.fits"))  # none kept
    assert len(list((lib / "sim" / "Flats").rglob("Flat_Ha_*.fits"))) == 3  # default floor
