"""``calibd report``: a self-contained HTML page from a simulated library (bias at two gains,
darks at two exposures and two set-points, flats in two filters, the bad pixel map, a stored
sensor result); the plotted values are recomputed from the FITS frames."""

from __future__ import annotations

import html
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml
from astropy.io import fits

from calibd.capture.cli.main import main
from calibd.capture.library.index import Index
from calibd.capture.sensor import store
from calibd.capture.sequencer.checks import frame_stats
from tests.support import fits_files
from tests.support import run_cli
from tests.support import write_config
from tests.support import write_plan

PLAN = """
defaults: {offset: 50}
cooling: {dwell_s: 10, tolerance_c: 0.3}
warmup: {enabled: false}
sets:
  - kind: bias
    gains: [0, 100]
    setpoints_c: [-10]
    count: 3
  - kind: dark
    gains: [100]
    setpoints_c: [0, -10]
    exposures_s: [60, 300]
    count: 3
  - kind: flat
    source: panel
    filters: [L, R]
    gains: [100]
    setpoints_c: [-10]
    count: 3
    panel: {mode: exposure, brightness: 600}
"""
PLOTS = ("dark-exposure", "dark-temperature", "bias-gain", "noise-gain", "flat-levels",
         "flat-exposures", "hot-pixels", "cooler", "sensor-noise", "sensor-gain")
_TABLE = re.compile(r'<table class="values" data-plot="([^"]+)">(.*?)</table>', re.S)
_ROW = re.compile(r'<tr data-series="([^"]*)"><td>[^<]*</td><td class="x">([^<]*)</td>'
                  r'<td class="y">([^<]*)</td></tr>')


def _tables(page: str) -> dict[str, list[tuple[str, str, float]]]:
    return {ident: [(html.unescape(s), x, float(y)) for s, x, y in _ROW.findall(body)]
            for ident, body in _TABLE.findall(page)}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("report")
    lib = tmp / "lib"
    config = write_config(tmp / "c.yaml", flats=True, scale=20000.0)
    data = yaml.safe_load(config.read_text())
    data["library"] = {"fsync": False}
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["-q", "run", str(write_plan(tmp / "p.yaml", PLAN)), "--config", str(config),
                 "--library", str(lib)]) == 0
    # A stored sensor analysis (as `calibd sensor analyze` writes it) for the sensor plots.
    store.save(lib, {"version": 1, "transfer": [
        {"camera": "sim", "gain": g, "offset": 50, "binning": 1, "readout_mode": "",
         "channels": {"L": {"e_per_adu": e, "read_noise_e": rn, "full_well_e": 20000.0}}}
        for g, e, rn in ((0, 0.8, 3.1), (100, 0.25, 1.4))], "unity": [], "offsets": [],
        "dark": [], "problems": []})
    out = tmp / "report.html"
    assert main(["-q", "report", "--library", str(lib), "-o", str(out)]) == 0
    return lib, out.read_text(encoding="utf-8")


def _stats(lib: Path) -> list[tuple[fits.Header, float]]:
    out = []
    for path in fits_files(lib):
        with fits.open(path) as hdul:
            header = hdul[0].header
            if header.get("IMAGETYP") not in ("Bias Frame", "Dark Frame", "Flat Frame"):
                continue
            out.append((header, frame_stats(hdul[0].data).level_adu))
    return out


def test_the_report_is_one_offline_page_with_every_plot(report: tuple[Path, str]) -> None:
    _, page = report
    assert page.startswith("<!DOCTYPE html>")
    assert "prefers-color-scheme: dark" in page and "currentColor" in page
    # Self-contained: no script, stylesheet, image or font from anywhere.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "@import" not in page
    for ident in PLOTS:
        assert re.search(rf'<figure id="{ident}" data-plot="{ident}"><svg ', page), ident
    assert 'class="sensor"' in page and "<td>1.4</td>" in page


def test_plotted_values_match_the_frames(report: tuple[Path, str]) -> None:
    lib, page = report
    tables = _tables(page)
    frames = _stats(lib)

    def level(kind: str, **want: Any) -> float:
        vals = [lv for h, lv in frames if h["IMAGETYP"] == kind
                and all(h[k] == v for k, v in want.items())]
        assert vals, (kind, want)
        return statistics.fmean(vals)

    # Bias level against gain: the mean of the frames' central medians.
    bias = {(s, float(x)): y for s, x, y in tables["bias-gain"]}
    for gain in (0, 100):
        expected = level("Bias Frame", GAIN=gain)
        assert bias[("sim offset 50 b1", float(gain))] == pytest.approx(expected, abs=0.01)
    # Dark level above the bias, per set-point and exposure.
    dark = {(s, float(x)): y for s, x, y in tables["dark-exposure"]}
    b100 = level("Bias Frame", GAIN=100)
    for sp in (0, -10):
        for t in (60, 300):
            expected = level("Dark Frame", GAIN=100, EXPTIME=float(t), **{"SET-TEMP": sp}) - b100
            assert dark[(f"sim g100 b1 {sp} °C", float(t))] == pytest.approx(expected, abs=0.01)
    # Dark current grows with temperature (the simulated sensor's physics).
    rates = sorted((float(x), y) for _, x, y in tables["dark-temperature"])
    assert len(rates) == 2 and rates[0][1] < rates[1][1]
    # Flats: one point per frame and filter, levels and exposures as in the headers.
    flats = [(h, lv) for h, lv in frames if h["IMAGETYP"] == "Flat Frame"]
    assert len(tables["flat-levels"]) == len(flats) == 6
    assert sorted(y for _, _, y in tables["flat-exposures"]) == pytest.approx(sorted(
        h["EXPTIME"] for h, _ in flats), rel=1e-6)
    assert {s for s, _, _ in tables["flat-levels"]} == {"sim L", "sim R"}
    # The cooler log has every frame's sensor temperature.
    assert len(tables["cooler"]) == len(frames)
    # Hot pixels: the map's own count.
    index = Index(lib)
    try:
        bpm = [lib / m.path for m in index.masters("bpm")]
    finally:
        index.close()
    assert len(bpm) == 1
    hot = [y for s, _, y in tables["hot-pixels"] if s == "hot"]
    assert hot == [float(fits.getheader(bpm[0])["NHOT"])]
    # The stored sensor analysis.
    assert sorted((float(x), y) for _, x, y in tables["sensor-noise"]) == [(0.0, 3.1),
                                                                           (100.0, 1.4)]


def test_an_empty_or_missing_library(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = run_cli(capsys, "report", "--library", tmp_path / "none", "-o", tmp_path / "r.html")
    assert res.code == 1 and "no calibd library" in res.err
    assert not (tmp_path / "r.html").exists()
