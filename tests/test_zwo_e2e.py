"""End to end over the ZWO driver: unmodified ``zwoasi`` on the C double of the ASI SDK, the real
``calibd`` CLI, the sequencer and the library, with the SDK double's faults injected during runs.

``zwoasi.init`` binds one library per process, so in-process runs use the session's double
(tests/zwo_fixtures.py) and set faults on it at chosen moments; the subprocess run configures a
fresh double through ``$ASI_DOUBLE_CONFIG`` (count-based faults only). The client runs on the real
clock (a simulated clock only works with simulated cameras); the double runs its sensor and cooler
100x faster, so cooling takes a second or two while exposures take their real length. The double's
ambient is set to -2 °C so the set-point ramp (at most 60 °C/min) is short.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from calibd.simulators.asi_sdk import AsiDouble
from tests.support import REPO
from tests.support import assert_library_exact
from tests.support import finish
from tests.support import headers
from tests.support import journal
from tests.support import planned_cells
from tests.support import run_cli
from tests.support import run_state
from tests.support import skip_or_fail
from tests.support import start_calibd
from tests.support import wait_until
from tests.support import watch
from tests.support import write_plan
from tests.support import write_real_config
from tests.zwo_fixtures import TIME_SCALE

pytest_plugins = ("tests.zwo_fixtures",)
pytestmark = [pytest.mark.zwo, pytest.mark.timeout(180)]

SERIAL0 = b"DBL00001".hex().upper()  # the double's first camera
AMBIENT_C = -2.0

PLAN = """
name: zwo-e2e
defaults: {offset: 30}
cooling: {tolerance_c: 0.3, dwell_s: 1, poll_s: 0.2, ramp_c_per_min: 60, timeout_s: 60}
warmup: {enabled: false}
sets:
  - kind: bias
    gains: [0, 100]
    setpoints_c: [-5, -8]
    count: 2
  - kind: dark
    gains: [100]
    setpoints_c: [-5, -8]
    exposures_s: [0.3]
    count: 3
"""
PLAN_FRAMES = 2 * 2 * 2 + 2 * 3


def zwo_config(path: Path, sdk_path: Path | None, **extra: object) -> Path:
    camera: dict[str, object] = {"driver": "zwo", "camera_id": SERIAL0, "offset": 30,
                                 "call_timeout_s": 1.0, **extra}
    if sdk_path is not None:
        camera["sdk_path"] = str(sdk_path)
    return write_real_config(path, camera, name="asi")


@pytest.fixture
def double(zwo_double: AsiDouble) -> AsiDouble:
    """The session's double, reset, with the sensor at a cold ambient (short set-point ramps)."""
    zwo_double.reset(time_scale=TIME_SCALE, ambient_c=AMBIENT_C)
    return zwo_double


def _run(capsys: pytest.CaptureFixture[str], tmp_path: Path, sdk: Path) -> Path:
    config = zwo_config(tmp_path / "calibd.yaml", sdk)
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
    assert res.code == 0, res.err
    assert "complete" in res.out
    return lib


def _exact(lib: Path) -> None:
    planned = planned_cells(lib)
    assert sum(planned.values()) == PLAN_FRAMES and len(planned) == 6
    assert_library_exact(lib, planned)
    assert run_state(lib)["state"] == "complete"
    assert {h["CAMERAID"] for h in headers(lib)} == {SERIAL0}  # always the same camera, by serial


def test_devices_list_names_the_camera_by_serial(capsys: pytest.CaptureFixture[str],
                                                 double: AsiDouble) -> None:
    res = run_cli(capsys, "devices", "list", "--driver", "zwo", "--timeout", "5")
    assert res.code == 0, res.err
    assert SERIAL0 in res.out and "ASI640MM" in res.out


def test_double_replugs_a_removed_camera_after_reattach_after_s(double: AsiDouble) -> None:
    """The double's ``reattach_after_s``: a removed camera comes back by itself after that many
    real seconds, with a new SDK handle (as after a USB re-enumeration), every time."""
    for _ in range(2):
        handle = double.stat("id")
        double.configure(reattach_after_s=0.3, remove=1)
        assert double.stat("present") == 0
        assert wait_until(lambda: double.stat("present") == 1, 5.0)
        assert double.stat("id") != handle
    assert double.stat("removed") == 2
    double.configure(reattach_after_s=0, remove=1)  # 0: stays unplugged until "reattach"
    time.sleep(0.5)
    assert double.stat("present") == 0


def test_bias_and_darks_at_two_setpoints(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         double: AsiDouble, asi_double_path: Path) -> None:
    lib = _run(capsys, tmp_path, asi_double_path)
    _exact(lib)
    for h in headers(lib):
        kind, gain, offset, *_ = h["CELLKEY"].split("|")
        assert h["GAIN"] == int(gain[1:]) and h["OFFSET"] == int(offset[1:]) == 30
        assert (h["NAXIS1"], h["NAXIS2"]) == (640, 480)
        assert abs(h["CCD-TEMP"] - h["SET-TEMP"]) <= 0.3
        # e-/ADU the driver derived from the SDK's ElecPerADU: unity gain 100 -> 1.0.
        assert h["EGAIN"] == pytest.approx(10 ** ((100 - h["GAIN"]) / 200), rel=1e-3)
        if kind == "bias":
            assert h["IMAGETYP"] == "Bias Frame" and h["EXPTIME"] == pytest.approx(32e-6)
        else:
            assert h["IMAGETYP"] == "Dark Frame" and h["EXPTIME"] == pytest.approx(0.3)
    assert double.stat("downloads") == PLAN_FRAMES  # nothing taken twice, nothing dropped
    assert double.stat("open") == 0  # the run closed the camera


def test_failing_exposures_are_retaken(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                       double: AsiDouble, asi_double_path: Path) -> None:
    double.configure(fail_every=5)
    lib = _run(capsys, tmp_path, asi_double_path)
    _exact(lib)
    failed = [m for kind, m in journal(lib) if kind == "exposure-failed"]
    assert len(failed) == double.stat("failed") >= 2
    assert all("failed" in m for m in failed)
    assert double.stat("downloads") == PLAN_FRAMES


def test_hang_in_stop_exposure_is_survived(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           double: AsiDouble, asi_double_path: Path) -> None:
    """After 5 frames the next exposure never ends and ASIStopExposure then blocks for 3 s: the
    exposure deadline passes, the stop call is abandoned after its 1 s deadline, the camera is
    refused while the call is stuck and found again by its serial once it returns; the frame is
    retaken and the run completes."""

    def stall_and_hang() -> None:
        double.configure(stall_next=1, hang_stop_s=3.0)

    with watch(lambda: double.stat("downloads") >= 5, stall_and_hang) as watcher:
        lib = _run(capsys, tmp_path, asi_double_path)
    watcher.check()
    _exact(lib)
    events = journal(lib)
    kinds = [kind for kind, _ in events]
    lost = [m for kind, m in events if kind == "device-lost"]
    assert lost and "ASIStopExposure" in lost[0] and "did not return" in lost[0], events
    assert kinds.index("device-lost") < kinds.index("reconnected")
    assert double.stat("hangs") == 1 and double.stat("stopped") == 1
    assert double.stat("opens") >= 2  # opened again after the stuck call returned
    assert double.stat("downloads") == PLAN_FRAMES


def test_camera_removed_and_replugged_in_a_separate_process(tmp_path: Path,
                                                            asi_double_path: Path) -> None:
    """``calibd run`` in its own process on a fresh double configured through the environment:
    every 6th exposure fails, and the camera drops off the bus after 330 SDK calls (a clean run
    makes ~590 and has its first frame at ~220, so this lands mid-capture) and comes back 1.5 s
    later with a new handle. The run reconnects it by serial and ends exact."""
    config = zwo_config(tmp_path / "calibd.yaml", None)
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    lib = tmp_path / "lib"
    log = tmp_path / "calibd.log"
    env = {
        "ZWO_ASI_LIB": str(asi_double_path),
        # "cameras=1" rebuilds the camera, so its sensor starts at the ambient given here.
        "ASI_DOUBLE_CONFIG": (f"cameras=1;time_scale={TIME_SCALE:g};ambient_c={AMBIENT_C:g};"
                              "fail_every=6;remove_after=330;reattach_after_s=1.5"),
    }
    proc = start_calibd("run", plan, "--config", config, "--library", lib, env=env, log=log)
    code = finish(proc, 150.0, log)
    text = log.read_text(errors="replace")
    assert code == 0, text[-3000:]
    assert "ASI_DOUBLE_CONFIG rejected" not in text
    _exact(lib)
    kinds = [kind for kind, _ in journal(lib)]
    assert kinds.count("device-lost") >= 1 and kinds.count("reconnected") >= 1, kinds
    assert kinds.count("exposure-failed") >= 1, kinds


def _real_sdk_env(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """Reach ZWO's real SDK: $CALIBD_REAL_ASI_SDK (a .so, or a pyzwoasi wheel that is unpacked
    and put on the path, where discovery finds it), else an installed pyzwoasi."""
    from calibd.drivers.zwo import ENV_VARS
    from calibd.drivers.zwo.sdk import _pyzwoasi_library

    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env["PYTHONPATH"] = str(REPO)
    given = os.environ.get("CALIBD_REAL_ASI_SDK")
    if given:
        path = Path(given)
        if not path.exists():
            skip_or_fail("zwo", f"CALIBD_REAL_ASI_SDK={given} does not exist")
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as wheel:
                wheel.extractall(tmp_path / "site")
            env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), str(REPO)])
            return [], env
        return ["--sdk-path", str(path)], env
    if _pyzwoasi_library() is not None:
        return [], env
    skip_or_fail("zwo", "real ASI SDK not available: set CALIBD_REAL_ASI_SDK to libASICamera2.so "
                 "or a pyzwoasi wheel, or pip install --no-deps pyzwoasi")


def test_devices_list_with_the_real_sdk_and_no_camera(tmp_path: Path) -> None:
    """``calibd devices list --driver zwo`` through ZWO's real SDK with nothing plugged in."""
    args, env = _real_sdk_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "calibd", "devices", "list", "--driver", "zwo", *args],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no ZWO cameras found", done.stdout
