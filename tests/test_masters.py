"""Masters from the library: physics recovered, bad pixel maps, bad input, staleness, matching."""

from __future__ import annotations

import gzip
import json
import shutil
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from calibd.capture.combine import write_master
from calibd.capture.config import MastersConfig
from calibd.capture.library.headermap import master_row
from calibd.capture.library.index import Index
from calibd.capture.library.policy import parse_utc
from calibd.capture.library.status import status_data
from calibd.capture.masters.levels import local_level
from calibd.simulators.profiles import get_profile
from calibd.simulators.sensor import SensorModel
from tests.support import run_cli
from tests.support import write_config
from tests.support import write_plan

PLAN = """
defaults: {offset: 50}
cooling: {dwell_s: 20, tolerance_c: 0.2, frame_tolerance_c: 0.3}
sets:
  - kind: bias
    gains: [100]
    setpoints_c: [-10]
    count: 20
  - kind: dark
    gains: [100]
    setpoints_c: [-10]
    exposures_s: [600]
    count: 20
  - kind: flat
    source: panel
    filters: [L]
    gains: [100]
    setpoints_c: [-10]
    count: 12
    panel: {mode: exposure, brightness: 600}
    dark_flats: {use_master_bias: true}
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("masters")
    plan = write_plan(tmp / "p.yaml", PLAN)
    config = write_config(tmp / "c.yaml", flats=True, seed=5)
    from calibd.capture.cli.main import main

    assert main(["-q", "run", str(plan), "--config", str(config), "--library",
                 str(tmp / "lib")]) == 0
    return tmp / "lib"


def masters(lib: Path, kind: str) -> list[Any]:
    index = Index(lib)
    try:
        return index.masters(kind)
    finally:
        index.close()


def test_auto_masters_have_the_provenance_headers(library: Path) -> None:
    (dark,) = masters(library, "dark")
    h = fits.getheader(library / dark.path)
    assert h["IMAGETYP"] == "Master Dark"
    assert h["NCOMBINE"] == 20 and h["REJMETH"] == "SIGMA" and h["COMBMETH"] == "MEAN"
    # The default convention: the bias stays in (what Siril's scripts and WBPP expect).
    assert h["DARKCONV"] == "with-bias" and h["BIASSUB"] is False and "BIASMSTR" not in h
    assert h["DATAMIN"] == 0.0 and h["DATAMAX"] == 65535.0
    assert h["EXPTIME"] == 600.0 and h["GAIN"] == 100 and h["OFFSET"] == 50
    assert h["SWCREATE"].startswith("calibd")
    assert sum(1 for line in h["HISTORY"] if "Dark_600s" in str(line)) == 20
    assert h["BITPIX"] == -32
    (bias,) = masters(library, "bias")
    assert fits.getheader(library / bias.path)["IMAGETYP"] == "Master Bias"
    (flat,) = masters(library, "flat")
    fh = fits.getheader(library / flat.path)
    assert fh["IMAGETYP"] == "Master Flat" and fh["FILTER"] == "L"
    assert fh["FLATCAL"].startswith("bias:")
    data = fits.getdata(library / flat.path)
    h_, w_ = data.shape
    assert abs(float(np.median(data[h_ // 4: -h_ // 4, w_ // 4: -w_ // 4])) - 1.0) < 0.01


def test_master_dark_recovers_the_dark_current_map(library: Path) -> None:
    (dark,) = masters(library, "dark")
    (bias,) = masters(library, "bias")
    master = fits.getdata(library / dark.path).astype(np.float64) - \
        fits.getdata(library / bias.path).astype(np.float64)
    sensor = SensorModel(get_profile("small"))
    egain = sensor.e_per_adu16(100)
    truth = sensor.dark_rate_map(-10.0).astype(np.float64) * 600.0 / egain
    hot = np.zeros(master.shape, dtype=bool)
    rc = sensor.hot_pixels_rc()
    hot[rc[:, 0], rc[:, 1]] = True
    residual = (master - truth)[~hot]
    # Expected noise per pixel: shot noise of its own dark signal (amp glow included) plus read
    # noise, averaged over 20 darks, plus the master bias's own read noise (20 frames).
    rn = sensor.read_noise_e(100) / egain
    expected = np.sqrt((rn**2 + truth[~hot] * egain) / 20 + rn**2 / 20)
    assert abs(float(np.mean(residual))) < 0.2, np.mean(residual)
    normalised = residual / expected
    assert 0.8 < float(np.std(normalised)) < 1.2, np.std(normalised)
    # Hot pixels carry their rate (a few per cent of temperature play allowed).
    ratio = master[hot] / truth[hot]
    assert float(np.median(np.abs(ratio - 1))) < 0.05


def test_bad_pixel_map_recovers_hot_and_dead_pixels(library: Path) -> None:
    bpm_rows = masters(library, "bpm")
    assert len(bpm_rows) == 1
    path = library / bpm_rows[0].path
    mask = fits.getdata(path)
    h = fits.getheader(path)
    assert h["IMAGETYP"] == "Bad Pixel Map" and h["NHOT"] > 0 and h["NCOLD"] > 0
    sensor = SensorModel(get_profile("small"))
    injected = {tuple(x) for x in sensor.hot_pixels_rc()}
    found_hot = {tuple(x) for x in np.argwhere(mask & 1)}
    # "Above the threshold": the injected hot pixels whose true excess over the local level
    # beats the map's rule (hot_factor x local dark signal; amp glow raises the local level).
    truth = sensor.dark_rate_map(-10.0) * 600.0 / sensor.e_per_adu16(100)
    local = local_level(truth, MastersConfig().bpm_block_px)
    rule = np.maximum(5 * 1.0, (MastersConfig().hot_factor - 1) * np.maximum(local, 0))
    above = {p for p in injected if truth[p] - local[p] > 1.05 * rule[p]}
    assert len(above) >= 0.95 * len(injected)
    precision = len(injected & found_hot) / len(found_hot)
    recall = len(above & found_hot) / len(above)
    assert precision >= 0.99 and recall >= 0.99, (precision, recall, len(found_hot))
    dead = {tuple(x) for x in sensor.dead_pixels_rc()}
    found_cold = {tuple(x) for x in np.argwhere(mask & 2)}
    assert len(dead & found_cold) / len(dead) >= 0.99
    cold_truth = {tuple(x) for x in np.stack(np.divmod(sensor.cold_index, 320), axis=1)}
    assert len(cold_truth & found_cold) / len(cold_truth) >= 0.9
    assert h["NHOT"] == len(found_hot)


def test_the_bad_pixel_map_is_dated_by_its_master_dark_and_aged_by_the_policy(
        capsys: pytest.CaptureFixture[str], library: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    # The flat (any current flat takes part, for cold pixels) made older than the dark: the map
    # is still dated by its dark, where the hot pixels that come with age are found.
    (flat,) = masters(lib, "flat")
    with fits.open(lib / flat.path) as hdul:
        header, data = hdul[0].header.copy(), np.asarray(hdul[0].data)
    header["DATE-OBS"] = "2020-01-01T00:00:00.000"
    write_master(lib / flat.path, data, header)
    assert run_cli(capsys, "library", "rescan", "--library", lib).code == 0
    assert run_cli(capsys, "masters", "build", "--library", lib, "--kind", "bpm").code == 0
    (bpm,) = masters(lib, "bpm")
    h = fits.getheader(lib / bpm.path)
    made_from = {str(line).removeprefix("from ") for line in h["HISTORY"]}
    (dark,) = masters(lib, "dark")
    assert {Path(dark.path).name, Path(flat.path).name} == made_from
    assert h["DATE-OBS"] == fits.getheader(lib / dark.path)["DATE-OBS"] == dark.date_obs
    assert h["TIMESYS"] == "UTC" and bpm.date_obs == h["DATE-OBS"]
    # The library judges the map like any master: age, then expiry by max_age_days.bpm.
    res = run_cli(capsys, "library", "status", "--library", lib, "--json")
    (shown,) = [m for m in json.loads(res.out)["masters"] if m["kind"] == "bpm"]
    assert shown["valid"] is True and shown["age_days"] is not None
    taken = parse_utc(h["DATE-OBS"])
    assert taken is not None
    index = Index(lib)
    try:
        for days, valid in ((10.0, True), (200.0, False)):
            data = status_data(lib, index, now=taken + timedelta(days=days))
            (m,) = [m for m in data["masters"] if m["kind"] == "bpm"]
            assert m["valid"] is valid and abs(m["age_days"] - days) < 0.01
        assert "expired: 200 days old, the policy keeps bpm 180 days" in m["invalid_reason"]
        # A map from an earlier calibd has no date: the next build makes it again, dated.
        old = fits.getheader(lib / bpm.path)
        del old["DATE-OBS"]
        index.upsert_master(master_row(old, path=bpm.path, inputs_digest=None))
    finally:
        index.close()
    (undated,) = masters(lib, "bpm")
    assert undated.date_obs is None
    res = run_cli(capsys, "masters", "build", "--library", lib)
    assert res.code == 0 and "Master_BPM_g100_bin1.fits" in res.out, res.out
    assert masters(lib, "bpm")[0].date_obs == dark.date_obs


def test_build_is_idempotent_then_force_rebuilds(capsys: pytest.CaptureFixture[str],
                                                 library: Path) -> None:
    res = run_cli(capsys, "masters", "build", "--library", library)
    assert res.code == 0 and "0 master(s) built" in res.out
    res = run_cli(capsys, "masters", "build", "--library", library, "--force", "--kind", "bias")
    assert res.code == 0
    assert res.out.splitlines()[-1] == "1 master(s) built, 0 up to date"
    listed = run_cli(capsys, "masters", "list", "--library", library, "--json")
    kinds = sorted(m["kind"] for m in json.loads(listed.out))
    assert kinds == ["bias", "bpm", "dark", "flat"]


def write_frame(path: Path, data: np.ndarray, **keys: Any) -> Path:
    header = fits.Header()
    header["IMAGETYP"] = "Dark Frame"
    header["EXPTIME"] = 60.0
    header["GAIN"] = 100
    header["OFFSET"] = 50
    header["XBINNING"] = 1
    header["YBINNING"] = 1
    header["SET-TEMP"] = -10.0
    for k, v in keys.items():
        header[k.replace("_", "-")] = v
    fits.PrimaryHDU(data=data, header=header).writeto(path)
    return path


@pytest.mark.parametrize(("key", "value"), [("GAIN", 200), ("OFFSET", 30), ("XBINNING", 2),
                                            ("EXPTIME", 120.0), ("SET_TEMP", -20.0),
                                            ("shape", (30, 40))])
def test_combine_names_the_odd_frame(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     key: str, value: Any) -> None:
    rng = np.random.default_rng(1)
    files = [write_frame(tmp_path / f"f{i}.fits",
                         rng.normal(500, 5, (20, 30)).astype(np.uint16)) for i in range(5)]
    odd = tmp_path / "odd.fits"
    if key == "shape":
        write_frame(odd, rng.normal(500, 5, value).astype(np.uint16))
    else:
        write_frame(odd, rng.normal(500, 5, (20, 30)).astype(np.uint16), **{key: value})
    out = tmp_path / "master.fits"
    res = run_cli(capsys, "masters", "combine", *files[:3], odd, *files[3:], "--output", out)
    assert res.code == 2, res.err
    assert "odd.fits" in res.err
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_combine_excludes_a_truncated_frame_and_needs_enough_frames(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    files = [write_frame(tmp_path / f"f{i}.fits",
                         rng.normal(500, 5, (20, 30)).astype(np.uint16)) for i in range(4)]
    broken = tmp_path / "broken.fits"
    broken.write_bytes(files[0].read_bytes()[:3000])
    out = tmp_path / "master.fits"
    res = run_cli(capsys, "masters", "combine", *files, broken, "--output", out)
    assert res.code == 0, res.err
    assert "excluded" in res.out and "broken.fits" in res.out
    with fits.open(out) as hdul:
        assert hdul[0].header["NCOMBINE"] == 4
        assert hdul[0].header["IMAGETYP"] == "Master Dark"
        assert hdul[0].header["DATAMAX"] == 65535.0  # 16-bit ADU, whatever the values
        assert hdul[0].data.dtype.kind == "f"
    few = run_cli(capsys, "masters", "combine", files[0], broken, "--output",
                  tmp_path / "few.fits", "--rejection", "minmax")
    assert few.code == 2 and "broken.fits" in few.err
    assert not (tmp_path / "few.fits").exists()


def test_library_match_prints_the_masters_and_why(capsys: pytest.CaptureFixture[str],
                                                  library: Path, tmp_path: Path) -> None:
    (dark,) = masters(library, "dark")
    light = tmp_path / "light.fits"
    h = fits.getheader(library / dark.path)
    hdr = fits.Header()
    for key in ("GAIN", "OFFSET", "XBINNING", "READOUTM", "CAMERAID", "INSTRUME", "BITDEPTH"):
        hdr[key] = h[key]
    hdr["IMAGETYP"] = "Light Frame"
    hdr["EXPTIME"] = 600.0
    hdr["SET-TEMP"] = -10.3
    hdr["FILTER"] = "L"
    fits.PrimaryHDU(np.zeros((4, 4), np.uint16), hdr).writeto(light)
    res = run_cli(capsys, "library", "match", light, "--library", library, "--json")
    assert res.code == 0, res.err
    got = {m["kind"]: m for m in json.loads(res.out)["masters"]}
    assert got["dark"]["path"] == dark.path and got["dark"]["step"] == 1
    assert "Master_Bias" in got["bias"]["path"] and "Master_Flat_L" in got["flat"]["path"]
    assert any("includes the bias" in r for r in got["bias"]["reasons"])
    assert got["bpm"]["path"] is not None
    # A 300 s light: no 300 s master, and a with-bias dark cannot be scaled.
    hdr["EXPTIME"] = 300.0
    hdr["FILTER"] = "Ha"
    light2 = tmp_path / "light2.fits"
    fits.PrimaryHDU(np.zeros((4, 4), np.uint16), hdr).writeto(light2)
    res = run_cli(capsys, "library", "match", light2, "--library", library)
    assert res.code == 0
    assert "no master dark in the library fits" in res.out and "scale" not in res.out
    assert "no master flat in the library fits filter 'Ha'" in res.out
    # A library whose convention is bias-subtracted does not take the with-bias dark.
    config = write_config(tmp_path / "c.yaml")
    config.write_text(config.read_text(encoding="utf-8") +
                      "masters: {dark_convention: bias-subtracted}\n", encoding="utf-8")
    res = run_cli(capsys, "library", "match", light, "--library", library, "--config", config,
                  "--json")
    assert res.code == 0, res.err
    got = {m["kind"]: m for m in json.loads(res.out)["masters"]}
    assert got["dark"]["path"] is None
    assert any("1 master dark(s) of the other convention ignored" in r
               for r in got["dark"]["reasons"])
    strict = run_cli(capsys, "library", "match", light2, "--library", library, "--strict")
    assert strict.code == 1


def test_library_match_reads_the_light_like_from_lights_does(
        capsys: pytest.CaptureFixture[str], library: Path, tmp_path: Path) -> None:
    """One reader for a light: compressed FITS, other programs' keywords, hostile cards."""
    (dark,) = masters(library, "dark")
    h = fits.getheader(library / dark.path)
    hdr = fits.Header()
    for key in ("GAIN", "OFFSET", "XBINNING", "READOUTM", "CAMERAID", "BITDEPTH", "SET-TEMP"):
        hdr[key] = h[key]
    hdr["IMAGETYP"], hdr["EXPTIME"], hdr["FILTER"] = "LIGHT", 600.0, "L"
    data = np.zeros((8, 8), np.uint16)

    def with_cards(header: fits.Header, **cards: Any) -> fits.Header:
        out = header.copy()
        out.update(cards)
        return out

    def chosen(light: Path) -> dict[str, Any]:
        res = run_cli(capsys, "library", "match", light, "--library", library, "--json")
        assert res.code == 0, res.err
        out: dict[str, Any] = json.loads(res.out)
        return out

    # Tile-compressed (the image and its keywords in the extension after an empty primary).
    packed = tmp_path / "packed.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, hdr)]).writeto(packed)
    got = chosen(packed)
    assert {m["kind"]: m["path"] for m in got["masters"]}["dark"] == dark.path
    assert got["settings"].startswith("gain 100, offset 50, bin 1, 600 s")
    # Sequence Generator Pro writes the binning as CCDXBIN: a 2x2 light gets no 1x1 masters.
    sgp = tmp_path / "sgp.fits"
    binned = hdr.copy()
    del binned["XBINNING"]
    binned["CCDXBIN"] = 2
    fits.PrimaryHDU(data, binned).writeto(sgp)
    got = chosen(sgp)
    assert "bin 2" in got["settings"]
    assert all(m["path"] is None for m in got["masters"]), got["masters"]
    # A card no FITS reader can parse (an ANSI escape): said, not echoed, no traceback.
    hostile = tmp_path / "hostile.fits"
    fits.PrimaryHDU(data, with_cards(hdr, FILTER="LZZZZ")).writeto(hostile)
    hostile.write_bytes(hostile.read_bytes().replace(b"LZZZZ", b"L\x1b[2J"))
    for args in (("library", "match", hostile), ("masters", "export", tmp_path / "siril",
                                                 "--to", "siril", "--light", hostile)):
        res = run_cli(capsys, *args, "--library", library)
        assert res.code == 0, res.err
        assert "\x1b" not in res.out + res.err and "Traceback" not in res.err
    for args in (("library", "match", hostile), ("masters", "export", tmp_path / "siril2",
                                                 "--to", "siril", "--light", hostile)):
        text = run_cli(capsys, *args, "--library", library).out
        assert "problem: FILTER is malformed or unprintable: not read" in text, text
    assert "filter ?" in (tmp_path / "siril" / "calibrate_lights.ssf").read_text()
    assert run_cli(capsys, "library", "match", hostile, "--library", library,
                   "--strict").code == 1
    # A byte outside ASCII in a comment (a degree sign) costs nothing but that card's text.
    degree = tmp_path / "degree.fits"
    fits.PrimaryHDU(data, with_cards(hdr, FILTER="HZ", **{"SET-TEMP": (-10.0, "ZZ")})).writeto(
        degree)
    degree.write_bytes(degree.read_bytes().replace(b"/ ZZ", b"/ \xb0C").replace(b"'HZ", b"'H\xe1"))
    got = chosen(degree)
    assert got["problems"] == ["FILTER is malformed or unprintable: not read"], got["problems"]
    assert "-10 °C" in got["settings"]
    # gzip is not read, and says so.
    gz = tmp_path / "light.fits.gz"
    gz.write_bytes(gzip.compress(packed.read_bytes()))
    res = run_cli(capsys, "library", "match", gz, "--library", library)
    assert res.code == 2 and "gunzip" in res.err
    # A dark given as the light: refused with the reason (exit 2).
    not_light = tmp_path / "dark.fits"
    fits.PrimaryHDU(data, with_cards(hdr, IMAGETYP="Dark Frame")).writeto(not_light)
    res = run_cli(capsys, "library", "match", not_light, "--library", library)
    assert res.code == 2 and "not a light" in res.err


def test_master_build_without_a_master_bias_for_flats_says_so(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.yaml", textwrap.dedent("""
        defaults: {offset: 50}
        cooling: {dwell_s: 20}
        sets:
          - kind: flat
            source: panel
            filters: [R]
            gains: [150]
            setpoints_c: [-10]
            count: 5
            panel: {mode: exposure, brightness: 600}
    """))
    config = write_config(tmp_path / "c.yaml", flats=True)
    res = run_cli(capsys, "run", plan, "--config", config, "--library", tmp_path / "lib")
    assert res.code == 0
    assert "masters: 0 master(s) built" in res.out and "1 failed" in res.out
    assert "no master dark flat or master bias" in res.err


def test_bias_subtracted_darks_without_a_master_bias_are_not_built_with_the_bias_in(
        capsys: pytest.CaptureFixture[str], library: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    (bias,) = masters(lib, "bias")
    (lib / bias.path).unlink()
    assert run_cli(capsys, "library", "rescan", "--library", lib).code == 0
    config = write_config(tmp_path / "c.yaml")
    config.write_text(config.read_text(encoding="utf-8") +
                      "masters: {dark_convention: bias-subtracted}\n", encoding="utf-8")
    res = run_cli(capsys, "masters", "build", "--kind", "dark", "--force", "--library", lib,
                  "--config", config)
    assert res.code == 1
    assert "dark_convention is bias-subtracted but there is no master bias" in res.out
    (dark,) = masters(lib, "dark")  # the with-bias one stays as it was: nothing mixed in
    assert fits.getheader(lib / dark.path)["DARKCONV"] == "with-bias"


def test_rescan_restores_the_masters_index(capsys: pytest.CaptureFixture[str],
                                           library: Path) -> None:
    before = run_cli(capsys, "masters", "list", "--library", library, "--json")
    for name in ("calibd.sqlite", "calibd.sqlite-wal", "calibd.sqlite-shm"):
        (library / name).unlink(missing_ok=True)
    assert run_cli(capsys, "library", "rescan", "--library", library).code == 0
    after = run_cli(capsys, "masters", "list", "--library", library, "--json")
    keys = ("path", "kind", "gain", "offset", "binning", "setpoint_c", "filter", "ncombine")
    assert [{k: m[k] for k in keys} for m in json.loads(after.out)] == \
        [{k: m[k] for k in keys} for m in json.loads(before.out)]
    res = run_cli(capsys, "masters", "build", "--library", library)
    assert res.code == 0 and res.out.splitlines()[-1].startswith("0 master(s) built")


def test_master_flat_recovers_vignetting_dust_and_response(library: Path) -> None:
    from calibd.simulators.optics import OpticalTrain

    (flat,) = masters(library, "flat")
    master = fits.getdata(library / flat.path).astype(np.float64)
    profile = get_profile("small")
    sensor = SensorModel(profile)
    truth = sensor.response_map().astype(np.float64) * OpticalTrain(
        profile.width, profile.height, seed=profile.seed + 1).pattern("L")
    h, w = truth.shape
    truth /= np.median(truth[h // 4: -h // 4, w // 4: -w // 4])
    good = truth > 0.5  # dead and cold pixels aside
    ratio = master[good] / truth[good]
    # 12 flats of ~19,500 e-: ~0.3 % shot noise per pixel in the master.
    assert abs(float(np.median(ratio)) - 1.0) < 0.003
    assert float(np.std(ratio)) < 0.006, np.std(ratio)
    # The vignetting really is in it: corners ~20 % darker than the centre.
    assert float(np.median(master[:20, :20])) < 0.85


def test_every_float_master_states_its_range_and_flats_hold_no_value_below_zero(
        library: Path, tmp_path: Path) -> None:
    for kind in ("bias", "dark"):  # 16-bit ADU: Siril must not take them for [0, 1] data
        (m,) = masters(library, kind)
        h = fits.getheader(library / m.path)
        data = fits.getdata(library / m.path)
        assert h["DATAMAX"] == 65535.0 and h["DATAMIN"] == min(0.0, float(data.min()))
    (flat,) = masters(library, "flat")
    fh = fits.getheader(library / flat.path)
    data = fits.getdata(library / flat.path)
    dead = SensorModel(get_profile("small")).dead_pixels_rc()
    assert float(data.min()) > 0 and fh["DATAMIN"] == float(data.min())
    assert fh["DATAMAX"] == float(data.max()) and fh["FLATFILL"] >= len(dead)
    # Dead pixels sit at half the cold threshold: still in the bad pixel map.
    local = local_level(data, MastersConfig().bpm_block_px)
    ratio = data[dead[:, 0], dead[:, 1]] / local[dead[:, 0], dead[:, 1]]
    assert np.allclose(ratio, MastersConfig().cold_fraction / 2, rtol=0.05)
    # A caller's stated range is widened to the values written, never narrowed.
    header = fits.Header()
    header["DATAMIN"], header["DATAMAX"] = 0.0, 65535.0
    write_master(tmp_path / "m.fits", np.array([[-2.5, 1.0], [3.0, 7.0]]), header)
    h = fits.getheader(tmp_path / "m.fits")
    assert (h["DATAMIN"], h["DATAMAX"]) == (-2.5, 65535.0)
    write_master(tmp_path / "n.fits", np.array([[0.5, 1.25]]))
    h = fits.getheader(tmp_path / "n.fits")
    assert (h["DATAMIN"], h["DATAMAX"]) == (0.5, 1.25)


def bias_path(lib: Path) -> str:
    (bias,) = masters(lib, "bias")
    path: str = bias.path
    return path


def test_one_current_master_per_conditions_used_by_match_and_export(
        capsys: pytest.CaptureFixture[str], library: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    (dark,) = masters(lib, "dark")
    src = lib / dark.path
    older = src.with_name(src.name.replace("_r1.fits", "_r0.fits"))
    with fits.open(src) as hdul:
        header, data = hdul[0].header.copy(), np.asarray(hdul[0].data)
    header["SRCRUN"], header["SRCCELL"] = 0, "an earlier run"
    header["DATE-OBS"] = "2020-01-01T00:00:00.000"
    write_master(older, data, header)
    assert run_cli(capsys, "library", "rescan", "--library", lib).code == 0
    listed = json.loads(run_cli(capsys, "masters", "list", "--library", lib, "--kind", "dark",
                                "--json").out)
    assert {Path(m["path"]).name: m["current"] for m in listed} == \
        {src.name: True, older.name: False}
    assert all(m["dark_convention"] == "with-bias" for m in listed)
    text = run_cli(capsys, "masters", "list", "--library", lib, "--kind", "dark").out
    (row,) = [line for line in text.splitlines() if older.name in line]
    assert "superseded" in row
    light = tmp_path / "light.fits"
    hdr = fits.Header()
    for key in ("GAIN", "OFFSET", "XBINNING", "READOUTM", "CAMERAID", "SET-TEMP", "EXPTIME"):
        hdr[key] = header[key]
    hdr["FILTER"] = "L"
    fits.PrimaryHDU(np.zeros((4, 4), np.uint16), hdr).writeto(light)
    got = {m["kind"]: m for m in json.loads(run_cli(
        capsys, "library", "match", light, "--library", lib, "--json").out)["masters"]}
    assert got["dark"]["path"] == dark.path
    # Export: the current masters only, linked, under the names each program groups by.
    res = run_cli(capsys, "masters", "export", tmp_path / "wbpp", "--to", "wbpp",
                  "--library", lib)
    assert res.code == 0, res.err
    exported = sorted((tmp_path / "wbpp" / "sim").iterdir())
    assert [p.name for p in exported] == ["BIAS_G100_O50_bin1.fits",
                                          "DARK_600s_G100_O50_T-10C_bin1.fits",
                                          "FLAT_L_G100_O50_bin1.fits"]
    assert exported[1].samefile(src)
    assert [fits.getheader(p)["IMAGETYP"] for p in exported] == \
        ["Master Bias", "Master Dark", "Master Flat"]
    res = run_cli(capsys, "masters", "export", tmp_path / "all", "--to", "folder",
                  "--library", lib)
    assert res.code == 0 and older.name not in res.out and "Master_BPM_g100_bin1.fits" in res.out
    res = run_cli(capsys, "masters", "export", tmp_path / "x", "--to", "wbpp", "--light", light,
                  "--library", lib)
    assert res.code == 2 and "only with --to siril" in res.err
    # A master file gone from under the index: said, with the way out (no traceback).
    (lib / bias_path(lib)).unlink()
    res = run_cli(capsys, "masters", "export", tmp_path / "gone", "--to", "folder",
                  "--library", lib)
    assert res.code == 2 and "missing" in res.err and "library rescan" in res.err, res.err
