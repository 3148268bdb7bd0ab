"""Plans: expansion, named gains, plan check figures, and broken plans (exit 2, located errors)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from calibd.capture.errors import PlanError
from calibd.capture.plans.load import load_plan
from calibd.capture.plans.resolve import CameraContext
from calibd.capture.plans.resolve import resolve
from calibd.capture.plans.resolve import resolve_gain
from calibd.drivers.contracts import CameraInfo
from tests.support import PLANS
from tests.support import calibd_subprocess
from tests.support import run_cli
from tests.support import write_config
from tests.support import write_plan

INFO = CameraInfo(model="ZWO ASI2600MM Pro", camera_id="x", width=100, height=80, bit_depth=16,
                  pixel_size_um=3.76, gain_min=0, gain_max=460, offset_min=0, offset_max=100,
                  min_exposure_s=32e-6, max_exposure_s=2000, has_cooler=True,
                  readout_modes=("normal",), binnings=(1, 2))


def test_dark_library_plan_check_reports_1840_frames_and_72_7_hours(
        capsys: pytest.CaptureFixture[str]) -> None:
    res = run_cli(capsys, "plan", "check", PLANS / "dark-library.yaml", "--json")
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert data["frames"] == 1840
    assert data["frames_by_kind"] == {"bias": 400, "dark": 1440}
    assert data["exposure_h"] == pytest.approx(72.7, abs=0.05)
    assert data["cell_count"] == 4 * 2 + 4 * 2 * 9
    # Run order: warmest set-point first, bias before darks, short darks before long ones.
    setpoints = [c["setpoint_c"] for c in data["cells"]]
    assert setpoints == sorted(setpoints, reverse=True)
    first = data["cells"][: 4 + 4 * 9]
    assert [c["kind"] for c in first[:4]] == ["bias"] * 4
    assert {c["gain"] for c in data["cells"]} == {0, 75, 100, 200}  # unity resolved to 100
    assert data["estimate"]["wall_s"] > data["exposure_s"]
    assert data["disk_bytes"] > 1840 * 320 * 240 * 2
    text = run_cli(capsys, "plan", "check", PLANS / "dark-library.yaml")
    assert text.code == 0
    assert "1,840" in text.out and "72.7 h" in text.out


@pytest.mark.parametrize("plan", ["demo.yaml", "bias.yaml", "dark-library.yaml", "colour.yaml"])
def test_shipped_plans_check(capsys: pytest.CaptureFixture[str], plan: str) -> None:
    assert run_cli(capsys, "plan", "check", PLANS / plan).code == 0


def test_named_gains_resolve_from_config_camera_or_table() -> None:
    assert resolve_gain("unity", CameraContext(info=INFO)) == (100, "unity")  # model table
    assert resolve_gain("unity", CameraContext(info=INFO, unity_gain=111))[0] == 111
    assert resolve_gain("max", CameraContext(info=INFO))[0] == 460
    unknown = CameraInfo(**{**INFO.__dict__, "model": "Mystery Cam"})
    with pytest.raises(ValueError, match="unity gain of 'Mystery Cam' is unknown"):
        resolve_gain("unity", CameraContext(info=unknown))
    listed = CameraInfo(**{**INFO.__dict__, "gain_names": ("Low", "High")})
    assert resolve_gain("High", CameraContext(info=listed))[0] == 1


def test_expansion_counts_every_axis(tmp_path: Path) -> None:
    path = write_plan(tmp_path / "p.yaml", textwrap.dedent("""
        defaults: {offset: 50}
        sets:
          - kind: dark
            gains: [0, unity]
            offsets: [10, 50]
            binnings: [1, 2]
            setpoints_c: [-10, -20]
            exposures_s: [60, 120, 300]
            count: 3
    """))
    plan, located = load_plan(path)
    resolved = resolve(plan, located, CameraContext(info=INFO))
    assert len(resolved.cells) == 2 * 2 * 2 * 2 * 3
    assert resolved.frames == 48 * 3
    assert len({c.key for c in resolved.cells}) == 48


# (name, plan text, expected line, expected key, words in the message)
BROKEN: list[tuple[str, str, int, str, str]] = [
    ("yaml-syntax", """
        sets:
          - kind: bias
            gains: [0, 100
            setpoints_c: [-10]
            count: 5
     """, 4, "gains", "YAML syntax error"),
    ("unknown-key", """
        sets:
          - kind: dark
            gains: [100]
            setpoints_c: [-10]
            exposures_s: [60]
            exposure_time_s: 60
            count: 5
     """, 7, "sets[0].exposure_time_s", "unknown key"),
    ("wrong-type", """
        sets:
          - kind: bias
            gains: [100]
            setpoints_c: [-10]
            count: many
     """, 6, "sets[0].count", "valid integer"),
    ("zero-exposure", """
        sets:
          - kind: dark
            gains: [100]
            setpoints_c: [-10]
            exposures_s: [0]
            count: 5
     """, 6, "sets[0].exposures_s[0]", "greater than 0"),
    ("negative-exposure", """
        sets:
          - kind: dark
            gains: [100]
            setpoints_c: [-10]
            exposures_s: [30,
                          -60]
            count: 5
     """, 7, "sets[0].exposures_s[1]", "greater than 0"),
    ("unknown-named-gain", """
        sets:
          - kind: bias
            gains: [0, unit]
            setpoints_c: [-10]
            count: 5
     """, 4, "sets[0].gains[1]", "unknown named gain 'unit'"),
    ("gain-out-of-range", """
        sets:
          - kind: bias
            gains:
              - 100
              - 5000
            setpoints_c: [-10]
            count: 5
     """, 6, "sets[0].gains[1]", "outside the camera's range"),
    ("empty-matrix", """
        sets:
          - kind: bias
            gains: []
            setpoints_c: [-10]
            count: 5
     """, 4, "sets[0].gains", "at least 1"),
    ("duplicate-cells", """
        sets:
          - kind: bias
            gains: [100]
            setpoints_c: [-10]
            count: 5
          - kind: bias
            gains: [0, 100]
            setpoints_c: [-10]
            count: 5
     """, 7, "sets[1]", "duplicate cell"),
    ("count-zero", """
        sets:
          - kind: bias
            gains: [100]
            setpoints_c: [-10]
            count: 0
     """, 6, "sets[0].count", "greater than or equal to 1"),
    ("folder-escapes-library", """
        folder: ../../elsewhere
        sets:
          - kind: bias
            gains: [100]
            setpoints_c: [-10]
            count: 5
     """, 2, "folder", "inside the library"),
    ("absolute-folder", """
        folder: /etc/calibd
        sets:
          - kind: bias
            gains: [100]
            setpoints_c: [-10]
            count: 5
     """, 2, "folder", "relative path"),
    ("unreachable-setpoint", """
        sets:
          - kind: bias
            gains: [100]
            setpoints_c: [-10, -30]
            count: 5
     """, 5, "sets[0].setpoints_c[1]", "cannot be reached"),
    ("duplicate-yaml-key", """
        sets:
          - kind: bias
            gains: [100]
            setpoints_c: [-10]
            count: 5
            count: 6
     """, 7, "sets[0].count", "duplicate key"),
    ("unknown-kind", """
        sets:
          - kind: lights
            gains: [100]
            setpoints_c: [-10]
            count: 5
     """, 3, "sets[0].kind", "bias"),
    ("dark-shorter-than-camera-minimum", """
        sets:
          - kind: dark
            gains: [100]
            setpoints_c: [-10]
            exposures_s: [0.00001]
            count: 5
     """, 6, "sets[0].exposures_s[0]", "shorter than the camera's minimum"),
    ("exposure-above-maximum", """
        sets:
          - kind: dark
            gains: [100]
            setpoints_c: [-10]
            exposures_s: [5000]
            count: 5
     """, 6, "sets[0].exposures_s[0]", "outside the camera's range"),
    ("binning-not-offered", """
        sets:
          - kind: bias
            gains: [100]
            binnings: [5]
            setpoints_c: [-10]
            count: 5
     """, 5, "sets[0].binnings[0]", "binning 5 is not offered"),
    ("offset-out-of-range", """
        sets:
          - kind: bias
            gains: [100]
            offsets: [500]
            setpoints_c: [-10]
            count: 5
     """, 5, "sets[0].offsets[0]", "offset 500"),
    ("unknown-readout-mode", """
        sets:
          - kind: bias
            gains: [100]
            readout_modes: [turbo]
            setpoints_c: [-10]
            count: 5
     """, 5, "sets[0].readout_modes[0]", "read-out mode 'turbo' unknown"),
    ("scalar-instead-of-list", """
        sets:
          - kind: bias
            gains: 100
            setpoints_c: [-10]
            count: 5
     """, 4, "sets[0].gains", "valid list"),
    ("no-sets", """
        name: nothing
     """, 2, "sets", "required"),
    ("unknown-camera", """
        camera: observatory-2
        sets:
          - kind: bias
            gains: [100]
            setpoints_c: [-10]
            count: 5
     """, 2, "camera", "no camera named 'observatory-2'"),
    ("bool-count", """
        sets:
          - kind: bias
            gains: [100]
            setpoints_c: [-10]
            count: yes
     """, 6, "sets[0].count", "valid integer"),
]


def _values(n: int, f: str = "{}") -> str:
    return ", ".join(f.format(i) for i in range(n))


_DARKS = "".join(f"""
          - kind: dark
            gains: [{g}]
            setpoints_c: [{_values(45, "-{}")}]
            exposures_s: [{_values(200, "1{}")}]
            count: 1""" for g in range(6))
BROKEN += [
    # A few short lines that multiply to 64,000 cells (before the bound, 150-long lists took
    # minutes and gigabytes to expand).
    ("too-many-cells", f"""
        sets:
          - kind: dark
            gains: [{_values(40)}]
            setpoints_c: [{_values(40, "-{}")}]
            exposures_s: [{_values(40, "1{}")}]
            count: 1
     """, 3, "sets[0]", "expands to 64,000 cells (its lists multiplied); at most 10,000"),
    ("too-many-cells-in-all", f"""
        sets:{_DARKS}
     """, 2, "sets", "the plan expands to 54,000 cells; at most 50,000"),
    ("list-too-long", f"""
        sets:
          - kind: bias
            gains: [{_values(65)}]
            setpoints_c: [-10]
            count: 5
     """, 4, "sets[0].gains", "at most 64 items"),
]


@pytest.mark.parametrize(("name", "text", "line", "key", "words"), BROKEN,
                         ids=[b[0] for b in BROKEN])
def test_broken_plan_exits_2_naming_file_line_and_key(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, text: str, line: int,
        key: str, words: str) -> None:
    body = textwrap.dedent(text).lstrip("\n")
    plan = write_plan(tmp_path / f"{name}.yaml", "\n" + body)
    config = write_config(tmp_path / "calibd.yaml")
    library = tmp_path / "library"
    for command in (["plan", "check"], ["run"]):
        res = run_cli(capsys, *command, plan, "--config", config, "--library", library)
        assert res.code == 2, (command, res.out, res.err)
        assert "Traceback" not in res.err
        first = res.err.splitlines()[0]
        assert f"{plan}:{line}:" in first, first
        assert f" {key}:" in first, first
        assert words in res.err, res.err
        assert not library.exists(), "nothing may be written for a broken plan"


def test_at_least_fifteen_broken_plans() -> None:
    assert len(BROKEN) >= 15


def test_broken_plan_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "bad.yaml", "sets:\n  - kind: dark\n    gains: [100]\n"
                      "    setpoints_c: [-10]\n    exposures_s: [-5]\n    count: 3\n")
    proc = calibd_subprocess("run", plan, "--library", tmp_path / "lib")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{plan}:5: sets[0].exposures_s[0]:" in proc.stderr
    assert not (tmp_path / "lib").exists()


def test_empty_and_non_mapping_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = write_plan(tmp_path / "empty.yaml", "")
    res = run_cli(capsys, "plan", "check", empty)
    assert res.code == 2 and "empty" in res.err
    listy = write_plan(tmp_path / "list.yaml", "- kind: bias\n")
    res = run_cli(capsys, "plan", "check", listy)
    assert res.code == 2 and "mapping" in res.err
    missing = run_cli(capsys, "plan", "check", tmp_path / "nope.yaml")
    assert missing.code == 2 and "cannot read" in missing.err


def test_flat_sets_need_their_devices(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "flats.yaml", textwrap.dedent("""
        defaults: {offset: 50}
        sets:
          - kind: flat
            source: panel
            filters: [L, R]
            gains: [100]
            setpoints_c: [-10]
            count: 20
    """))
    bare = write_config(tmp_path / "bare.yaml")  # no wheel, no panel, no site
    res = run_cli(capsys, "run", plan, "--config", bare, "--library", tmp_path / "lib")
    assert res.code == 2
    assert f"{plan}:5: sets[0].source:" in res.err and "need a flat panel" in res.err
    assert "sets[0].filters:" in res.err and "no filter wheel" in res.err
    assert not (tmp_path / "lib").exists()
    equipped = write_config(tmp_path / "equipped.yaml", flats=True)
    check = run_cli(capsys, "plan", "check", plan, "--config", equipped, "--json")
    assert check.code == 0
    assert json.loads(check.out)["frames"] == 40
    wrong = write_plan(tmp_path / "wrong.yaml", plan.read_text().replace("[L, R]", "[L, Hb]"))
    res = run_cli(capsys, "plan", "check", wrong, "--config", equipped)
    assert res.code == 2 and "sets[0].filters[1]:" in res.err and "no filter named 'Hb'" \
        in res.err


def test_plan_error_type_carries_all_problems(tmp_path: Path) -> None:
    path = write_plan(tmp_path / "two.yaml", "sets:\n  - kind: bias\n    gains: [100]\n"
                      "    setpoints_c: [-10]\n    count: 0\n    colour: red\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    keys = {p.key for p in info.value.problems}
    assert keys == {"sets[0].count", "sets[0].colour"}
