"""Flats end to end on the simulator: panel (exposure and brightness modes), sky at dusk and
dawn, dark flats, bounded failures, remembered results, and the offline sun."""

from __future__ import annotations

import json
import socket
import textwrap
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from calibd.capture.library.index import Index
from calibd.capture.site import Site
from calibd.capture.site import next_window
from calibd.capture.site import sun_altitude_deg
from calibd.capture.site import sun_altitudes
from tests.support import PLANS
from tests.support import run_cli
from tests.support import write_config
from tests.support import write_plan

FILTERS = ["L", "R", "G", "B", "Ha", "OIII", "SII"]


def headers(library: Path, folder: str, camera: str = "simulator"
            ) -> list[tuple[fits.Header, np.ndarray]]:
    out = []
    for path in sorted((library / camera / folder).rglob("*.fits")):
        with fits.open(path) as hdul:
            out.append((hdul[0].header, hdul[0].data.astype(np.float64)))
    return out


def central_median(data: np.ndarray) -> float:
    h, w = data.shape
    return float(np.median(data[h // 4: h - h // 4, w // 4: w - w // 4]))


def events(library: Path, kind: str, run: int = 1) -> list[Any]:
    index = Index(library)
    try:
        return index.events(run, kind)
    finally:
        index.close()


def test_panel_flats_for_seven_filters_land_in_tolerance_with_matching_dark_flats(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", PLANS / "panel-flats.yaml", "--library", lib)
    assert res.code == 0, res.err
    flats = headers(lib, "Flats")
    assert {h["FILTER"] for h, _ in flats} == set(FILTERS)
    for name in FILTERS:
        assert sum(1 for h, _ in flats if h["FILTER"] == name) == 20
    for h, data in flats:
        assert h["IMAGETYP"] == "Flat Frame"
        assert abs(central_median(data) - 20000) <= 2000, (h["FILTER"], central_median(data))
        assert h["FLATSRC"] == "panel" and h["PANELBRT"] == 512
    darks = headers(lib, "DarkFlats")
    assert darks and all(h["IMAGETYP"] == "Dark Flat" and h["CALTYPE"] == "DARKFLAT"
                         for h, _ in darks)
    flat_exposures = {h["EXPTIME"] for h, _ in flats}
    dark_exposures = {h["EXPTIME"] for h, _ in darks}
    assert dark_exposures == flat_exposures  # exactly, not approximately
    for h, data in darks:
        assert h["GAIN"] == 100 and h["OFFSET"] == 50 and h["XBINNING"] == 1
        assert h["SET-TEMP"] == -10
        assert central_median(data) < 600  # no light
        assert sum(1 for d, _ in darks if d["EXPTIME"] == h["EXPTIME"]) == 20
    searches = events(lib, "flat-search")
    assert len(searches) == 7
    frames = [json.loads(e["data"])["frames"] for e in searches]
    assert max(frames) <= 6


def test_second_run_starts_from_the_remembered_exposure(capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    plan = write_plan(tmp_path / "p.yaml", (PLANS / "panel-flats.yaml").read_text().replace(
        "count: 20", "count: 3"))
    assert run_cli(capsys, "run", plan, "--library", lib).code == 0
    assert run_cli(capsys, "run", plan, "--library", lib, "--new").code == 0
    second = events(lib, "flat-search", run=2)
    assert len(second) == 7
    assert all(json.loads(e["data"])["frames"] == 1 for e in second), \
        [e["message"] for e in second]


def test_brightness_mode_gives_one_exposure_for_all_filters(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.yaml", textwrap.dedent("""
        defaults: {offset: 50}
        cooling: {dwell_s: 20}
        sets:
          - kind: flat
            source: panel
            filters: [L, R, G, B, Ha, OIII, SII]
            gains: [100]
            setpoints_c: [-10]
            count: 5
            panel: {mode: brightness, exposure_s: 10}
            dark_flats: {count: 6}
    """))
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--library", lib)
    assert res.code == 0, res.err
    flats = headers(lib, "Flats")
    assert len(flats) == 35
    assert {h["EXPTIME"] for h, _ in flats} == {10.0}
    brightness = {h["FILTER"]: h["PANELBRT"] for h, _ in flats}
    assert brightness["Ha"] > brightness["R"] > brightness["L"]
    for _, data in flats:
        assert abs(central_median(data) - 20000) <= 2000
    darks = headers(lib, "DarkFlats")
    assert len(darks) == 6 and {h["EXPTIME"] for h, _ in darks} == {10.0}


@pytest.mark.parametrize(("panel", "brightness", "min_exp", "max_exp", "words"), [
    ({}, 0, 0.05, 30, "no light"),
    ({}, 1, 0.05, 2, "too dim"),
    ({}, 1023, 2, 30, "too bright"),
])
def test_bad_panel_ends_the_search_with_a_clear_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, panel: dict[str, Any],
        brightness: int, min_exp: float, max_exp: float, words: str) -> None:
    plan = write_plan(tmp_path / "p.yaml", textwrap.dedent(f"""
        defaults: {{offset: 50}}
        cooling: {{dwell_s: 20}}
        sets:
          - kind: flat
            source: panel
            filters: [L]
            gains: [100]
            setpoints_c: [-10]
            count: 5
            min_exposure_s: {min_exp}
            max_exposure_s: {max_exp}
            panel: {{mode: exposure, brightness: {brightness}}}
    """))
    config = write_config(tmp_path / "c.yaml", flats=True, panel=panel)
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 1
    assert words in res.err
    assert "search stopped after" in res.err
    frames = int(res.err.split("search stopped after ")[1].split(" ")[0])
    assert 1 <= frames <= 8
    assert not list((lib / "sim").rglob("Flat_*.fits"))


def sky_run(capsys: pytest.CaptureFixture[str], tmp_path: Path, start: str,
            twilight: str) -> tuple[Path, list[tuple[fits.Header, np.ndarray]]]:
    plan = write_plan(tmp_path / f"{twilight}.yaml", (PLANS / "sky-flats.yaml").read_text()
                      .replace("twilight: next", f"twilight: {twilight}")
                      .replace("count: 15", "count: 8"))
    config = write_config(tmp_path / f"{twilight}-c.yaml", flats=True, scale=500.0, start=start)
    lib = tmp_path / twilight
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code in (0, 1), res.err
    out = []
    for path in sorted((lib / "sim" / "Flats").rglob("*.fits")):
        with fits.open(path) as hdul:
            out.append((hdul[0].header, hdul[0].data.astype(np.float64)))
    return lib, out


def test_sky_flats_at_dusk_fill_filters_narrowband_first(capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path) -> None:
    lib, flats = sky_run(capsys, tmp_path, "2026-11-25T15:30:00Z", "dusk")
    per_filter: dict[str, list[tuple[str, float]]] = {}
    for h, data in flats:
        assert h["FLATSRC"] == "sky" and -10.0 <= h["SUNALT"] <= -2.0
        assert abs(central_median(data) - 20000) <= 3000
        per_filter.setdefault(h["FILTER"], []).append((h["DATE-OBS"], h["EXPTIME"]))
    assert len(per_filter) >= 5
    first_time = {f: min(v)[0] for f, v in per_filter.items()}
    narrow = [first_time[f] for f in ("Ha", "OIII", "SII") if f in first_time]
    broad = [first_time[f] for f in ("L", "R", "G", "B") if f in first_time]
    assert max(narrow) < min(broad), "dusk: narrowband first"
    for values in per_filter.values():  # the sky dims: exposures grow within a filter
        exposures = [e for _, e in sorted(values)]  # (the first one is a guess)
        assert len(exposures) < 3 or exposures[-1] > exposures[1]
    assert events(lib, "sky-flats")


def test_sky_flats_at_dawn_fill_filters_broadband_first(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    _, flats = sky_run(capsys, tmp_path, "2026-11-26T05:30:00Z", "dawn")
    per_filter: dict[str, list[tuple[str, float]]] = {}
    for h, data in flats:
        assert abs(central_median(data) - 20000) <= 3000
        per_filter.setdefault(h["FILTER"], []).append((h["DATE-OBS"], h["EXPTIME"]))
    assert len(per_filter) >= 4
    first_time = {f: min(v)[0] for f, v in per_filter.items()}
    broad = [first_time[f] for f in ("L", "R", "G", "B") if f in first_time]
    narrow = [first_time[f] for f in ("Ha", "OIII", "SII") if f in first_time]
    assert broad and (not narrow or max(broad) < min(narrow)), "dawn: broadband first"
    for values in per_filter.values():  # the sky brightens: exposures shrink
        exposures = [e for _, e in sorted(values)]  # (the first one is a guess)
        assert len(exposures) < 3 or exposures[-1] < exposures[1]


def test_sun_altitude_matches_the_almanac_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """NREL SPA reference case (Reda & Andreas 2004): Golden, Colorado, 2003-10-17 19:30:30 UTC,
    topocentric zenith angle 50.11162° (with refraction; ~0.016° of it). No network allowed."""
    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    site = Site(39.742476, -105.1786, 1830.14)
    when = datetime(2003, 10, 17, 19, 30, 30, tzinfo=UTC)
    alt = float(sun_altitudes(site, [when])[0])
    assert abs((90.0 - alt) - 50.11162) < 0.1
    assert abs(sun_altitude_deg(site, when) - alt) < 0.01  # the interpolated grid agrees


def test_twilight_windows() -> None:
    site = Site(45.0, 7.0, 400.0)
    start = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    dusk = next_window(site, start, "dusk", -2, -10)
    dawn = next_window(site, start, "dawn", -2, -10)
    assert dusk is not None and dawn is not None
    assert dusk.opens.hour == 16 and dusk.closes > dusk.opens
    assert abs(sun_altitude_deg(site, dusk.opens) + 2) < 0.05
    assert abs(sun_altitude_deg(site, dusk.closes) + 10) < 0.05
    assert dawn.opens > dusk.closes and abs(sun_altitude_deg(site, dawn.opens) + 10) < 0.05
    assert next_window(site, start, "next", -2, -10) == dusk


def test_a_fading_panel_is_followed_frame_by_frame(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    """Every flat is checked: frames that leave the tolerance are discarded and the exposure is
    tuned again; the flats that are kept are all within tolerance."""
    plan = write_plan(tmp_path / "p.yaml", textwrap.dedent("""
        defaults: {offset: 50}
        cooling: {dwell_s: 20}
        sets:
          - kind: flat
            source: panel
            filters: [L]
            gains: [100]
            setpoints_c: [-10]
            count: 30
            tolerance_pct: 5
            panel: {mode: exposure, brightness: 100}
    """))
    # 6 %/min over ~70 s of exposures leaves the 5 % tolerance at least once; the clock is slow
    # enough (and the cooling short enough) that a loaded machine's real overhead does not add
    # the simulated minutes that would drift it past MAX_RETUNES (10 %/min at 100x did)
    config = write_config(tmp_path / "c.yaml", flats=True, scale=25.0, sim_ambient_c=-5.0,
                          panel={"drift_pct_per_min": 6.0})
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 0, res.err
    rejected = [e for e in events(lib, "frame-rejected") if "outside" in e["message"]]
    assert rejected, "the fading panel should have pushed frames out of tolerance"
    assert len(events(lib, "flat-search")) >= 2  # tuned again
    flats = headers(lib, "Flats", camera="sim")
    assert len(flats) == 30
    exposures = sorted({h["EXPTIME"] for h, _ in flats})
    assert len(exposures) >= 2 and exposures[-1] > exposures[0]
    for _, data in flats:
        assert abs(central_median(data) - 20000) <= 1000
