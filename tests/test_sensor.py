"""Sensor characterisation end to end on the simulator: the ready ``sensor`` plan (four gains,
two set-points) runs unattended on the simulated clock, is killed and resumed, its frames are
ordinary library frames, and ``calibd sensor analyze`` recovers the simulated sensor's true
values; the EMVA 1288 reference package agrees on the same frames."""

from __future__ import annotations

import csv
import io
import logging
import math
import signal
import sqlite3
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from calibd.capture.library.headermap import frame_row
from calibd.capture.library.index import Index
from calibd.capture.library.policy import Item
from calibd.capture.library.policy import LibraryPolicy
from calibd.capture.library.status import Judge
from calibd.capture.plans.load import load_plan
from calibd.capture.plans.resolve import CameraContext
from calibd.capture.plans.resolve import resolve
from calibd.capture.sensor.frames import group_frames
from calibd.capture.sensor.frames import left_shift
from calibd.capture.sensor.frames import planes
from calibd.capture.sensor.ptc import centre
from calibd.capture.sensor.ptc import pair_stats
from calibd.simulators.camera import SimulatedCamera
from calibd.simulators.clock import SteppedClock
from calibd.simulators.profiles import get_profile
from calibd.simulators.sensor import SensorModel
from tests.support import PLANS
from tests.support import assert_library_exact
from tests.support import calibd_subprocess
from tests.support import cli_json
from tests.support import finish
from tests.support import frames_on_disk
from tests.support import headers
from tests.support import planned_cells
from tests.support import run_cli
from tests.support import run_state
from tests.support import start_calibd
from tests.support import wait_until
from tests.support import write_config
from tests.support import write_plan

PROFILE = "small"
KILL_AFTER_FRAMES = 150  # of about 430: inside the flat ladder of the second gain


@pytest.fixture(scope="module")
def sensor_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The ready plan on the small simulated sensor: killed once mid-run, then resumed to the
    end. Returns the library, the kill's frame count and the analysis (``--json``)."""
    tmp = tmp_path_factory.mktemp("sensor")
    config = write_config(tmp / "c.yaml", flats=True, profile=PROFILE, scale=5000.0)
    lib = tmp / "lib"
    log = tmp / "run.log"
    proc = start_calibd("-q", "run", PLANS / "sensor.yaml", "--config", config, "--library",
                        lib, log=log)
    try:
        reached = wait_until(lambda: frames_on_disk(lib) >= KILL_AFTER_FRAMES
                             or proc.poll() is not None, 120.0)
        assert reached, log.read_text()[-2000:]
        assert proc.poll() is None, "the run ended before the kill: " + log.read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        finish(proc, 30.0, log)
    at_kill = frames_on_disk(lib)
    done = calibd_subprocess("-q", "run", PLANS / "sensor.yaml", "--config", config,
                             "--library", lib, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = cli_json("sensor", "analyze", "--library", lib, "--json")
    return {"lib": lib, "config": config, "at_kill": at_kill, "result": result}


def test_the_sensor_plan_runs_unattended_resumes_after_a_kill_with_ordinary_frames(
        sensor_run: dict[str, Any]) -> None:
    lib = sensor_run["lib"]
    assert 0 < sensor_run["at_kill"] < frames_on_disk(lib)
    planned = planned_cells(lib)
    assert_library_exact(lib, planned)  # no duplicate, no partial file, index = disk
    kinds = {k.split("|")[0] for k in planned}
    assert kinds == {"bias", "dark", "flat", "darkflat"}
    ladder = [k for k in planned if k.startswith("flat|")]
    assert len(ladder) == 4 * 20 and all(planned[k] == 2 for k in ladder)
    # Frames are ordinary library frames: the usual image types and index rows.
    index = Index(lib)
    try:
        frames = index.sensor_frames()
    finally:
        index.close()
    types = {fits.getheader(lib / f.path)["IMAGETYP"] for f in frames[::25]}
    assert types <= {"Bias Frame", "Dark Frame", "Flat Frame", "Dark Flat"}
    # The ladder goes from a few hundred ADU above the bias to beyond saturation.
    groups, _ = group_frames(frames)
    g = next(g for (_, s), g in groups.items() if s[0] == 0 and g.ladder)
    low = fits.getdata(lib / g.ladder[0][0].path).astype(np.float64)
    high = fits.getdata(lib / g.ladder[19][0].path)
    bias = fits.getdata(lib / g.bias[-10.0][0].path).astype(np.float64)
    assert 150 < float(np.median(low - bias)) < 1000
    model = SensorModel(get_profile(PROFILE))
    clip_adu = get_profile(PROFILE).full_well_e / model.e_per_adu16(0)
    assert float(np.median(high)) > float(np.median(bias)) + 0.99 * clip_adu


def _truth(gain: int, offset: int = 50) -> dict[str, float]:
    profile = get_profile(PROFILE)
    model = SensorModel(profile)
    e_per_adu = model.e_per_adu16(gain)
    adc_e = ((1 << 16) - 1 - model.pedestal_adu16(offset)) * e_per_adu
    return {"e_per_adu": e_per_adu, "read_noise_e": model.read_noise_e(gain),
            "full_well_e": min(profile.full_well_e, adc_e)}


def test_the_analysis_recovers_the_simulated_sensor_for_every_gain(
        sensor_run: dict[str, Any]) -> None:
    result = sensor_run["result"]
    profile = get_profile(PROFILE)
    model = SensorModel(profile)
    transfer = {t["gain"]: t for t in result["transfer"]}
    assert sorted(transfer) == [0, 100, 200, 300], result["problems"]
    for gain, t in transfer.items():
        assert t["left_shift"] == 0 and t["bayer"] is None
        got = t["channels"]["mono"]
        want = _truth(gain)
        assert got["e_per_adu"] == pytest.approx(want["e_per_adu"], rel=0.02), gain
        assert got["read_noise_e"] == pytest.approx(want["read_noise_e"], rel=0.03), gain
        assert got["full_well_e"] == pytest.approx(want["full_well_e"], rel=0.05), gain
        # The EMVA saturation (maximum temporal variance) comes a little before the clip.
        assert 0.8 * got["full_well_e"] < got["saturation_e"] < got["full_well_e"]
        assert got["dynamic_range_db"] == pytest.approx(20 * math.log10(
            got["dynamic_range"]))
        assert got["linearity_error_pct"] < 1.0
    (unity,) = result["unity"]
    assert unity["gain"] == pytest.approx(profile.unity_gain, abs=3)
    # Dark current per set-point, and the doubling temperature across them.
    dark = {d["gain"]: d for d in result["dark"]}
    assert sorted(dark) == [0, 100, 200, 300]
    for gain, d in dark.items():
        assert {round(s["setpoint_c"]) for s in d["setpoints"]} == {-10, -20}
        for sp in d["setpoints"]:
            want = model.dark_scale(sp["temperature_c"])
            assert sp["rate_e_per_s"] == pytest.approx(want, rel=0.05), (gain, sp)
            assert sp["hot_fraction"] == pytest.approx(profile.hot_fraction, rel=0.25)
            # Hot pixels and the glow make the mean of all pixels larger than the typical one.
            assert sp["rate_all_e_per_s"] > 1.5 * sp["rate_e_per_s"]
            (band,) = sp["glow"]["bands"]
            assert band[0] == "right" and 0.05 * profile.width < band[1] < 0.8 * profile.width
            assert sp["glow"]["rate_e_per_s"] > 0
        assert d["doubling_c"] == pytest.approx(profile.dark_doubling_c, abs=0.5), gain
    # Offsets: the recommended one clips (almost) nothing, by the frames and by the model.
    offsets = {o["gain"]: o for o in result["offsets"]}
    assert sorted(offsets) == [0, 100, 200, 300]
    for gain, o in offsets.items():
        rec = o["recommended_offset"]
        assert rec is not None
        row = next(r for r in o["sweep"] if r["offset"] == rec)
        assert row["clipped_fraction"] < 0.001
        lower = [r for r in o["sweep"] if r["offset"] < rec]
        assert lower and all(r["clipped_fraction"] > o["clip_limit"] for r in lower)
        rn_adu = model.read_noise_e(gain) / model.e_per_adu16(gain)
        margin = model.pedestal_adu16(rec) - 3 * profile.column_sigma_adu
        assert 0.5 * math.erfc(margin / rn_adu / math.sqrt(2)) < 0.001, (gain, rec)


def test_emva1288_reference_gives_the_same_gain_and_dark_noise(
        sensor_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    emva = pytest.importorskip("emva1288.process")
    if not hasattr(np, "asfarray"):  # emva1288 1.0.2 still calls it (removed in NumPy 2.0)
        monkeypatch.setattr(np, "asfarray", lambda a, dtype=np.float64: np.asarray(a, dtype),
                            raising=False)
    lib: Path = sensor_run["lib"]
    index = Index(lib)
    try:
        groups, _ = group_frames(index.sensor_frames())
    finally:
        index.close()
    ours = {t["gain"]: t["channels"]["mono"] for t in sensor_run["result"]["transfer"]}
    checked = 0
    for (_, settings), g in sorted(groups.items()):
        if not g.ladder:
            continue
        # Photon counts are synthetic (proportional to the exposure at a steady panel).
        temporal: dict[int, dict[float, list[str]]] = {}
        for fs in g.ladder.values():
            t = fs[0].exposure_s
            temporal[round(t * 1e9)] = {0.0: [str(lib / f.path) for f in g.darkflats[t][:2]],
                                        t * 1e6: [str(lib / f.path) for f in fs[:2]]}
        mid = g.ladder[10]
        t = mid[0].exposure_s
        spatial = {round(t * 1e9): {0.0: [str(lib / f.path) for f in g.darkflats[t][:2]],
                                    t * 1e6: [str(lib / f.path) for f in mid[:2]]}}
        data = emva.LoadImageData({"temporal": temporal, "spatial": spatial},
                                  fload=lambda p: fits.getdata(p).astype(np.uint16),
                                  loglevel=logging.WARNING).data
        ref = emva.Results1288(emva.Data1288(data, loglevel=logging.WARNING).data,
                               loglevel=logging.WARNING)
        mine = ours[settings[0]]
        assert mine["k_dn_per_e"] == pytest.approx(ref.K, rel=0.01), settings
        assert mine["read_noise_e"] == pytest.approx(ref.sigma_d, rel=0.01), settings
        assert mine["read_noise_adu"] == pytest.approx(ref.sigma_y_dark, rel=0.01), settings
        checked += 1
    assert checked == 4


def test_the_result_is_stored_shown_and_exported(sensor_run: dict[str, Any],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lib: Path = sensor_run["lib"]
    shown = cli_json("sensor", "show", "--library", lib, "--json")
    assert [t["gain"] for t in shown["transfer"]] == [0, 100, 200, 300]
    assert shown["transfer"] == sensor_run["result"]["transfer"]
    with fits.open(lib / "Sensor" / "sim" / "sensor.fits", checksum=True) as hdul:
        ptc = hdul["PTC"].data
        assert list(ptc["gain"]) == [0, 100, 200, 300]
        assert np.allclose(ptc["e_per_adu"], [t["channels"]["mono"]["e_per_adu"]
                                              for t in shown["transfer"]])
        assert len(hdul["DARK"].data) == 8 and len(hdul["OFFSETS"].data) == 4 * 7
    res = run_cli(capsys, "sensor", "show", "--library", lib, "--nina")
    assert res.code == 0
    rows = list(csv.DictReader(io.StringIO(res.out)))
    assert [int(r["Gain"]) for r in rows] == [0, 100, 200, 300]
    for r in rows:
        want = _truth(int(r["Gain"]))
        assert float(r["ReadNoise_e"]) == pytest.approx(want["read_noise_e"], rel=0.03)
        assert float(r["FullWell_e"]) == pytest.approx(want["full_well_e"], rel=0.05)
    res = run_cli(capsys, "sensor", "show", "--library", lib)
    assert "Photon transfer" in res.out and "doubling" in res.out and "unity gain" in res.out
    # A rescan of the library leaves the stored result alone and indexes only the frames.
    before = frames_on_disk(lib)
    rescan = cli_json("library", "rescan", "--library", lib, "--json")
    assert (lib / "Sensor" / "sim" / "sensor.fits").is_file(), rescan
    assert not (lib / ".quarantine").exists()
    assert cli_json("library", "status", "--library", lib, "--json")["frames"] == before


def _reference_phase_sums(a: np.ndarray, b: np.ndarray, shift: int) -> list[list[int]]:
    """The pair kernel's sums per 2x2 phase, the slow obvious way."""
    out = []
    for p in range(4):
        x = a[p // 2 :: 2, p % 2 :: 2].astype(np.int64)
        y = b[p // 2 :: 2, p % 2 :: 2].astype(np.int64)
        bits = int(np.bitwise_or.reduce(x | y, axis=None))
        x, y = x >> shift, y >> shift
        d = x - y
        out.append([int(x.sum()), int(y.sum()), int(d.sum()), int((d * d).sum()),
                    int((x == 0).sum()), int((y == 0).sum()), bits])
    return out


@pytest.mark.parametrize("numba", [True, False])
def test_the_pair_kernel_matches_a_numpy_reference(monkeypatch: pytest.MonkeyPatch,
                                                   numba: bool) -> None:
    from calibd.capture.combine.pairs import above_background
    from calibd.capture.combine.pairs import accumulate
    from calibd.capture.combine.pairs import pair_sums
    from calibd.capture.combine.pairs import phase_sums

    if not numba:
        monkeypatch.setenv("CALIBD_NO_NUMBA", "1")
    rng = np.random.default_rng(5)
    a = rng.integers(0, 65536, size=(301, 257), dtype=np.uint16)
    b = rng.integers(0, 65536, size=(301, 257), dtype=np.uint16)
    a[:40] &= np.uint16(0xFFF0)  # some values clip at zero after a 4-bit shift
    b[5, :9] = 0
    for x, y in ((a, b), (a[1::2, 3:250:2], b[1::2, 3:250:2]), (a[7:200, 11:], b[7:200, 11:])):
        for shift in (0, 4):
            want = _reference_phase_sums(x, y, shift)
            assert phase_sums(x, y, shift=shift).tolist() == want
            # The file's raw words (big-endian int16) are decoded in the same pass.
            rx, ry = ((v.astype(np.int32) - 32768).astype(">i2").view(np.uint16)
                      for v in (x, y))
            assert phase_sums(rx, ry, raw=True, shift=shift).tolist() == want
    s = pair_sums(a, b, phases=(1, 2))
    ref = _reference_phase_sums(a, b, 0)
    assert s.n == 151 * 128 + 150 * 129
    assert s[1:7] == tuple(ref[1][f] + ref[2][f] for f in range(6))
    assert s.bits == ref[1][6] | ref[2][6]
    with pytest.raises(ValueError, match="2-D uint16"):
        phase_sums(a, b[:10])
    # The mean image of a few frames less another image, as numpy's float32 arithmetic has it.
    minus = rng.normal(100.0, 30.0, size=a.shape).astype(np.float32)
    want_mean = a.astype(np.float32)
    want_mean += b
    want_mean *= np.float32(1 / 3)
    want_mean -= minus
    raw_a = (a.astype(np.int32) - 32768).astype(">i2").view(np.uint16)
    acc = np.full(a.shape, np.nan, dtype=np.float32)
    accumulate(acc, raw_a, raw=True, first=True)
    accumulate(acc, b, scale=1 / 3, minus=minus)
    assert np.array_equal(acc, want_mean)
    # Hot pixels: above the column and row background (more of them than a first guess holds).
    cols, rows = minus[0] / 2, minus[:, 0] / 2
    for margin in (42000.0, -20.0):  # a few hundred; nearly all
        want_hot = np.flatnonzero(want_mean > (cols[None, :] + rows[:, None] - np.float32(8.5))
                                  + np.float32(margin))
        assert 0 < want_hot.size < want_mean.size
        assert np.array_equal(above_background(want_mean, cols, rows, 8.5, margin), want_hot)


def test_a_raw16_left_shift_is_undone_before_the_statistics() -> None:
    rng = np.random.default_rng(3)
    a = rng.poisson(900.0, size=(64, 64)).astype(np.uint16) + np.uint16(100)
    b = rng.poisson(900.0, size=(64, 64)).astype(np.uint16) + np.uint16(100)
    native = pair_stats(a, b)
    shifted = [a << np.uint16(4), b << np.uint16(4)]
    shift = left_shift(shifted)
    assert shift == 4 and left_shift([a, b]) == 0
    back = pair_stats(*(x >> np.uint16(shift) for x in shifted))
    assert back == native and native.var == pytest.approx(900.0, rel=0.1)
    # CFA: four sub-planes keep their phase inside the centre region.
    mosaic = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16)
    ch = planes(centre(mosaic, 0.5), "RGGB")
    assert set(ch) == {"R", "G1", "G2", "B"} and int(ch["R"][0, 0]) == int(mosaic[4, 4])


@pytest.mark.parametrize(("yaml", "key", "words"), [
    ("dark_exposures_s: [60]", "dark_exposures_s", "at least 2"),
    ("offset_sweep: [0, 5, 5]", "offset_sweep", "listed twice"),
    ("flats: {beyond: 0.9}", "flats.beyond", "greater than 1.1"),
    ("offset_sweep: [0, 5000]", "offset_sweep[1]", "outside the camera's range"),
    ("dark_exposures_s: [60, 5000]", "dark_exposures_s[1]", "outside the camera's range"),
])
def test_a_bad_sensor_set_is_refused_with_file_line_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], yaml: str, key: str,
        words: str) -> None:
    plan = write_plan(tmp_path / "s.yaml", "defaults: {offset: 50}\nsets:\n  - kind: sensor\n"
                      "    gains: [0]\n    setpoints_c: [-10]\n    " + yaml + "\n")
    config = write_config(tmp_path / "c.yaml", flats=True)
    res = run_cli(capsys, "plan", "check", plan, "--config", config)
    assert res.code == 2
    assert "s.yaml" in res.err and key in res.err and words in res.err, res.err


@pytest.mark.parametrize(("profile", "flats", "beyond", "source"), [
    ("small", "{levels: 20}", 1.3, "default for a mono camera"),
    ("small-colour", "{levels: 20}", 4.0, "default for a colour camera, RGGB"),
    ("small-colour", "{levels: 20, beyond: 1.5}", 1.5, "plan"),
    ("small", "{levels: 20, beyond: 4}", 4.0, "plan"),
])
def test_the_ladder_goes_beyond_saturation_as_far_as_the_camera_needs_unless_the_plan_says(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], profile: str, flats: str,
        beyond: float, source: str) -> None:
    """Without ``beyond`` a sensor set's flat ladder tops out at 1.3x saturation on a mono
    camera and at 4x on a colour one (it follows the brightest channel; red and blue saturate
    later); a ``beyond`` in the plan wins; ``plan check`` shows the value and where it came
    from. The ladder's cell keys do not depend on it."""
    plan = write_plan(tmp_path / "s.yaml", "defaults: {offset: 50}\nsets:\n  - kind: sensor\n"
                      f"    gains: [0]\n    setpoints_c: [-10]\n    flats: {flats}\n")
    parsed, located = load_plan(plan)
    info = SimulatedCamera(get_profile(profile), SteppedClock()).info
    cells = resolve(parsed, located, CameraContext(info=info)).cells
    ladder = [c.ladder for c in cells if c.ladder is not None]
    assert [c.key for c in cells if c.ladder is not None] == \
        [f"flat|g0|o50|b1|normal|-10C|lvl{i}" for i in range(20)]
    top = max(ladder, key=lambda lad: lad.index)
    assert top.fraction(60000.0) == pytest.approx(beyond)  # the exposure the run scales to
    config = write_config(tmp_path / "c.yaml", flats=True, profile=profile)
    data = cli_json("plan", "check", plan, "--config", config, "--json")
    assert data["ladders"] == [{"set": 0, "levels": 20, "beyond": beyond, "beyond_from": source,
                                "top_fraction": pytest.approx(beyond)}]
    res = run_cli(capsys, "plan", "check", plan, "--config", config)
    assert res.code == 0, res.err
    assert (f"Flat ladder (set 0): 20 levels up to {beyond:.3g}x saturation (beyond {beyond:g}: "
            f"{source})") in res.out, res.out


def test_a_sensor_set_without_a_flat_panel_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "c.yaml", flats=False)
    res = run_cli(capsys, "plan", "check", PLANS / "sensor.yaml", "--config", config)
    assert res.code == 2 and "flat panel" in res.err, res.err
    lib = tmp_path / "empty"
    lib.mkdir()
    res = run_cli(capsys, "sensor", "analyze", "--library", lib)
    assert res.code != 0 and "Traceback" not in res.err


def test_plan_check_uses_the_measured_unity_gain_and_warns_of_clipping_offsets(
        sensor_run: dict[str, Any], tmp_path: Path) -> None:
    lib: Path = sensor_run["lib"]
    (unity,) = sensor_run["result"]["unity"]
    clipping = next(o for o in sensor_run["result"]["offsets"] if o["gain"] == 300)
    low = next(r["offset"] for r in clipping["sweep"]
               if 0 < r["offset"] < clipping["recommended_offset"])
    plan = write_plan(tmp_path / "p.yaml", "sets:\n  - kind: bias\n    gains: [unity, 300]\n"
                      f"    offsets: [{low}, 50]\n    setpoints_c: [-10]\n    count: 3\n")
    data = cli_json("plan", "check", plan, "--config", sensor_run["config"], "--library", lib,
                    "--json")
    gains = {c["gain"] for c in data["cells"] if c["gain_label"] == "unity"}
    assert gains == {round(unity["gain"])}
    assert any("measured" in w and "unity" in w for w in data["warnings"])
    (warn,) = [w for w in data["warnings"] if w.startswith(f"offset {low} ")]
    assert "gain 300" in warn and f"at least {clipping['recommended_offset']}" in warn
    # Without the stored result neither happens.
    bare = cli_json("plan", "check", plan, "--config", sensor_run["config"], "--library",
                    tmp_path / "other", "--json")
    assert not any("offset" in w or "unity" in w for w in bare["warnings"])


def test_library_match_scales_a_dark_from_another_setpoint_only_with_a_measured_doubling(
        sensor_run: dict[str, Any]) -> None:
    from calibd.capture.library.masters_table import MasterRow
    from calibd.capture.masters.match import Light
    from calibd.capture.masters.match import match_light
    from calibd.capture.sensor.store import doubling_temperatures

    doubling = doubling_temperatures(sensor_run["lib"])
    td = doubling[("sim", 100)]
    assert td == pytest.approx(get_profile(PROFILE).dark_doubling_c, abs=0.5)
    dark = MasterRow(id=1, path="sim/Masters/dark.fits", kind="dark", camera="sim",
                     camera_id=None, run_id=1, cell_key=None, gain=100, offset=50, binning=1,
                     readout_mode="normal", bit_depth=16, setpoint_c=-20.0, exposure_s=300.0,
                     filter=None, ncombine=20, inputs_digest=None, calibration="bias:x",
                     date_obs=None, created_utc=None)
    light = Light(camera_id=None, instrument=None, gain=100, offset=50, readout_mode="normal",
                  binning=1, bit_depth=16, setpoint_c=-10.0, exposure_s=150.0, filter="L",
                  date_obs=None)
    (_, got, _, _) = match_light([dark], light, doubling_c=doubling,
                                 dark_convention="bias-subtracted")
    assert got.master == dark and got.step == 4
    assert got.scale == pytest.approx(0.5 * 2 ** (10.0 / td))
    assert got.reasons[0].startswith("fallback:") and f"{td:.2f} °C" in got.reasons[0]
    (_, none, _, _) = match_light([dark], light, dark_convention="bias-subtracted")
    assert none.master is None and none.step == 0


COLOUR_PLAN = """
defaults: {offset: 50}
cooling: {dwell_s: 30}
sets:
  - kind: sensor
    gains: [0, 200]
    setpoints_c: [-10]
    flats: {levels: 24}  # beyond: 4, the default on a colour camera
    dark_exposures_s: [60, 300]
"""


def test_a_colour_sensor_is_analysed_per_cfa_channel(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = get_profile("small-colour")
    assert profile.bayer == "RGGB"
    config = write_config(tmp_path / "c.yaml", flats=True, profile="small-colour")
    plan = write_plan(tmp_path / "p.yaml", COLOUR_PLAN)
    lib = tmp_path / "lib"
    res = run_cli(capsys, "-q", "run", plan, "--config", config, "--library", lib)
    assert res.code == 0, res.err
    result = cli_json("sensor", "analyze", "--library", lib, "--json")
    model = SensorModel(profile)
    transfer = {t["gain"]: t for t in result["transfer"]}
    assert sorted(transfer) == [0, 200], result["problems"]
    for gain, t in transfer.items():
        assert t["bayer"] == "RGGB" and sorted(t["channels"]) == ["B", "G1", "G2", "R"]
        e_per_adu = model.e_per_adu16(gain)
        adc_e = ((1 << 16) - 1 - model.pedestal_adu16(50)) * e_per_adu
        for name, ch in t["channels"].items():
            where = (gain, name)
            assert ch["e_per_adu"] == pytest.approx(e_per_adu, rel=0.02), where
            assert ch["read_noise_e"] == pytest.approx(model.read_noise_e(gain), rel=0.03), where
            assert ch["full_well_e"] == pytest.approx(min(profile.full_well_e, adc_e),
                                                      rel=0.05), where
        # Under the green-heavy panel the red and blue pixels saturate at longer exposures.
        sat_t = {n: max(p["exposure_s"] for p in ch["points"]
                        if p["mean"] - p["dark_mean"] < 0.95 * ch["full_well_e"] / ch[
                            "e_per_adu"]) for n, ch in t["channels"].items()}
        assert sat_t["R"] > sat_t["G1"] and sat_t["B"] > sat_t["G2"]


# Ordinary bias and darks at -10 °C and a sensor set at the same gain at -20 °C (the same
# set-point would make duplicate cells, which plan check refuses). ``count: 3``: pairs are too
# few for any master, so the old code's 42 attempts only failed; with 3 it built them.
MIXED_PLAN = """
name: mixed
defaults: {offset: 50}
cooling: {dwell_s: 30}
sets:
  - {kind: bias, gains: [0], setpoints_c: [-10], count: 5}
  - {kind: dark, gains: [0], setpoints_c: [-10], count: 5, exposures_s: [60]}
  - kind: sensor
    gains: [0]
    setpoints_c: [-20]
    count: 3
    flats: {levels: 12}
    dark_exposures_s: [60, 120]
    offset_sweep: [0, 50]
"""
ORDINARY = {"bias|g0|o50|b1|normal|-10C": ("bias", 5),
            "dark|g0|o50|b1|normal|-10C|60s": ("dark", 5),
            "bpm|sim|g0|b1": ("bpm", 1)}  # from the one master dark


def _masters(lib: Path) -> dict[str, tuple[str, int]]:
    listed = cli_json("masters", "list", "--library", lib, "--json")
    return {m["cell_key"]: (m["kind"], m["ncombine"]) for m in listed}


def test_a_sensor_sets_frames_feed_no_master_and_hold_no_cell_even_in_a_mixed_plan(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After the run, after `masters build --force` and again after `library rescan`, the
    masters are those of the ordinary sets only. (The old code also built a master bias of the
    bias triple, of the offset sweep, master darks of the dark triples, 12 master dark flats
    and 12 master flats of the ladder into one file: the last one, level 10 of 12, 1.04 x
    saturation; and a bad pixel map from all of them.) A sensor frame says so in its header
    (``SENSSET``), and its cell counts neither as a master missing nor as held for `--upkeep`."""
    config = write_config(tmp_path / "c.yaml", flats=True, profile=PROFILE)
    lib = tmp_path / "lib"
    res = run_cli(capsys, "-q", "run", write_plan(tmp_path / "p.yaml", MIXED_PLAN),
                  "--config", config, "--library", lib)
    assert res.code == 0, res.err
    planned = planned_cells(lib)
    sensor = set(planned) - set(ORDINARY)
    assert {k.split("|")[0] for k in sensor} == {"bias", "dark", "flat", "darkflat"}
    assert len([k for k in sensor if k.startswith("bias|")]) == 2  # -20 °C, offset 0
    assert len([k for k in sensor if "|lvl" in k]) == 12
    assert _masters(lib) == ORDINARY
    for h in headers(lib):
        assert (h.get("SENSSET") is True) == (h["CELLKEY"] in sensor), h["CELLKEY"]
    assert run_state(lib)["masters_missing"] == 0
    for step in ("build", "rescan"):  # the index from the writer, then from the headers
        if step == "rescan":
            assert run_cli(capsys, "library", "rescan", "--library", lib).code == 0
        res = run_cli(capsys, "masters", "build", "--force", "--library", lib,
                      "--config", config)
        assert res.code == 0 and "3 master(s) built" in res.out + res.err, res.err
        assert _masters(lib) == ORDINARY, step
    # The bias triple at -20 °C holds no ordinary bias cell of the same key.
    upkeep = write_plan(tmp_path / "u.yaml", "defaults: {offset: 50}\ncooling: {dwell_s: 30}\n"
                        "sets:\n  - {kind: bias, gains: [0], setpoints_c: [-20], count: 3}\n")
    res = run_cli(capsys, "-q", "run", upkeep, "--upkeep", "--config", config, "--library", lib)
    assert res.code == 0 and "goal met" not in res.out, res.out
    assert planned_cells(lib) == {"bias|g0|o50|b1|normal|-20C": 3}


def _flat_row(path: str, run_id: int, key: str, date: str, **cards: Any) -> dict[str, Any]:
    """An index row made from a flat's header, as the writer and `library rescan` make it."""
    header = {"IMAGETYP": "Flat Frame", "RUNID": run_id, "CELLKEY": key, "FRAMESEQ": 1,
              "CAMNAME": "sim", "GAIN": 0, "OFFSET": 50, "XBINNING": 1, "READOUTM": "normal",
              "SET-TEMP": -10.0, "EXPTIME": 1.0, "DATE-OBS": date, **cards}
    return {**frame_row(header), "path": path}


def test_a_later_ladder_replaces_no_flat_set(tmp_path: Path) -> None:
    """Ordinary flats stay valid when a sensor set's ladder (same camera, filter, gain, offset
    and binning) is taken after them; a later ordinary flat set still replaces them."""
    index = Index(tmp_path)
    try:
        index.add_frame(_flat_row("a.fits", 1, "flat|g0|o50|b1|normal|-10C",
                                  "2026-03-01T20:00:00"))
        index.add_frame(_flat_row("b.fits", 2, "flat|g0|o50|b1|normal|-10C|lvl4",
                                  "2026-03-01T21:00:00", SENSLVL=4, SENSSET=True))
        ours = Item(kind="flat", camera="sim", camera_id=None, gain=0, offset=50, binning=1,
                    filter=None, date_obs="2026-03-01T20:00:00", run_id=1)
        now = datetime(2026, 3, 1, 22, tzinfo=UTC)
        assert Judge(index, LibraryPolicy(), now)(ours).valid is True
        index.add_frame(_flat_row("c.fits", 3, "flat|g0|o50|b1|normal|-10C",
                                  "2026-03-01T21:30:00"))
        verdict = Judge(index, LibraryPolicy(), now)(ours)
        assert verdict.valid is False and "replaced by run 3" in str(verdict.reason)
    finally:
        index.close()


def test_an_older_index_learns_its_ladder_flats_on_opening_and_rescan_from_senslvl(
        tmp_path: Path) -> None:
    """A library indexed before ``SENSSET``: opening it adds the column and marks the ladder's
    flats (cells ``…|lvl<n>``); their headers (``SENSLVL``) say the same to `library rescan`."""
    index = Index(tmp_path)
    ladder = _flat_row("a.fits", 1, "flat|g0|o50|b1|normal|-10C|lvl0", "2026-03-01T20:00:00",
                       SENSLVL=0)
    assert ladder["sensor"] == 1
    try:
        index.add_frame(ladder)
        index.add_frame(_flat_row("b.fits", 1, "flat|g0|o50|b1|normal|-10C|f:lvl0",
                                  "2026-03-01T20:00:00"))
        foreign = _flat_row("c.fits", 1, "", "2026-03-01T20:00:00")  # not from a run of ours
        index.add_frame({**foreign, "run_id": None, "cell_key": None, "seq": None})
        with index.tx() as db:
            db.execute("ALTER TABLE frames DROP COLUMN sensor")
            db.execute("ALTER TABLE frames DROP COLUMN cfa_r_adu")
    finally:
        index.close()
    # Read-only (a library on a read-only share): the same answers, and nothing written.
    index = Index(tmp_path, readonly=True)
    try:
        rows = index.query("SELECT path, sensor, cfa_r_adu FROM frames ORDER BY path")
        assert [tuple(r) for r in rows] == [("a.fits", 1, None), ("b.fits", 0, None),
                                            ("c.fits", 0, None)]
        assert [f.path for f in index.cell_frames()] == ["b.fits"]
    finally:
        index.close()
    with sqlite3.connect(tmp_path / "calibd.sqlite") as raw:
        assert "sensor" not in {r[1] for r in raw.execute("PRAGMA table_info(frames)")}
    index = Index(tmp_path)
    try:
        rows = index.query("SELECT path, sensor FROM frames ORDER BY path")
        assert [(r["path"], r["sensor"]) for r in rows] == [("a.fits", 1), ("b.fits", 0),
                                                            ("c.fits", 0)]
        assert [f.path for f in index.cell_frames()] == ["b.fits"]
    finally:
        index.close()


def test_a_damaged_stored_result_is_a_clear_error_and_never_used(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from calibd.capture.sensor import store

    folder = tmp_path / "lib" / "Sensor" / "sim"
    folder.mkdir(parents=True)
    (folder / "sensor.json").write_text(
        '{"transfer": [{"camera": "sim\\u001b[2J", "channels": 5}], "dark": [], '
        '"offsets": [], "unity": []}', encoding="utf-8")
    res = run_cli(capsys, "sensor", "show", "--library", tmp_path / "lib")
    assert res.code == 2 and "Traceback" not in res.err
    assert "sensor.json" in res.err and "transfer[0].channels" in res.err
    assert "\x1b" not in res.out + res.err
    assert store.stored(tmp_path / "lib", "sim") is None  # plans and match go on without it
    (folder / "sensor.json").write_text("{not json", encoding="utf-8")
    res = run_cli(capsys, "sensor", "show", "--library", tmp_path / "lib", "--nina")
    assert res.code == 2 and "not JSON" in res.err
