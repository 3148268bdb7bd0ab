"""Unattended sky flats on the simulated observatory: the dome opens before the window, the mount
follows the flat spot opposite the sun (re-pointing as it moves), the filters fill, and the dome
is closed and the mount parked afterwards — or as soon as the safety monitor says unsafe, the
next window then resuming the run without duplicates.

The same dawn and dusk runs go through calibd's Alpaca drivers (camera, filter wheel, panel,
mount, dome, safety monitor) over HTTP to our Alpaca server, whose camera sees its own dome,
telescope and twilight sky on the simulated time calibd shares with it.

Every re-point journals a ``sky-point`` event (target and where the mount reports it points);
securing journals ``sky-secure`` (time taken, shutter closed, mount parked).
"""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from astropy.io import fits

from calibd.capture.library.index import Index
from calibd.capture.site import Site
from calibd.capture.site import sun_azimuth_deg
from calibd.drivers.pointing import separation_deg
from tests.alpaca_servers import OurAlpacaServer
from tests.alpaca_servers import require_alpaca
from tests.support import PLANS
from tests.support import run_cli
from tests.support import write_config
from tests.support import write_plan

COUNT = 4
FILTERS = ["L", "R", "Ha"]
CLOSE_TIMEOUT_S = 120.0
SITE = Site(45.0, 7.0, 400.0)


def _plan(tmp_path: Path, stars: str, close_timeout_s: float = CLOSE_TIMEOUT_S) -> Path:
    text = ((PLANS / "sky-flats.yaml").read_text()
            .replace("count: 15", f"count: {COUNT}")
            .replace("count: 30", "count: 3")
            .replace("filters: [L, R, G, B, Ha, OIII, SII]", f"filters: [{', '.join(FILTERS)}]")
            .replace("      sun_altitude_deg: [-2, -10]\n",
                     "      sun_altitude_deg: [-2, -10]\n"
                     f"      pointing: {{stars: {stars}, repoint_s: 120, "
                     f"close_timeout_s: {close_timeout_s:g}}}\n"))
    return write_plan(tmp_path / f"sky-{stars}.yaml", text)


def _config(tmp_path: Path, start: str, *, cloudy: list[dict[str, str]] | None = None,
            scale: float = 500.0) -> Path:
    path = write_config(tmp_path / f"c-{start[:13]}.yaml", flats=True, scale=scale, start=start)
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    data["cameras"]["sim"].update(mount="mount", dome="dome")
    data["mounts"] = {"mount": {"driver": "simulator", "slew_deg_per_s": 3.0}}
    data["domes"] = {"dome": {"driver": "simulator", "shutter_move_s": 30.0}}
    data["safety"] = {"driver": "simulator", "cloudy": cloudy or []}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _events(lib: Path, kind: str) -> list[dict[str, Any]]:
    index = Index(lib)
    try:
        rows = [r for run in (1, 2) for r in index.events(run, kind)]
    finally:
        index.close()
    return [{"time": r["time_utc"], "message": r["message"],
             **(json.loads(r["data"]) if r["data"] else {})} for r in rows]


def _flats(lib: Path) -> list[fits.Header]:
    return [fits.getheader(p) for p in sorted((lib / "sim" / "Flats").rglob("*.fits"))]


@pytest.mark.parametrize(("start", "stars", "scale"),
                         [("2026-11-25T15:30:00Z", "tracking-off", 500.0),
                          ("2026-11-26T05:30:00Z", "dither", 500.0)],
                         ids=["dusk", "dawn"])
def test_a_twilight_run_opens_points_fills_and_secures(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path, start: str,
                                                        stars: str, scale: float) -> None:
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", _plan(tmp_path, stars), "--config",
                  _config(tmp_path, start, scale=scale), "--library", lib)
    assert res.code == 0, res.err
    print({"run": start, **_check_run(lib)})


def _check_run(lib: Path, close_timeout_s: float = CLOSE_TIMEOUT_S, count: int = COUNT
               ) -> dict[str, Any]:
    """A finished run filled every filter with sky flats, pointed within 1° of the flat spot
    opposite the sun at every re-point, and left the dome closed and the mount parked in
    time. Returns the figures."""
    per_filter: dict[str, int] = {}
    for h in _flats(lib):
        assert h["FLATSRC"] == "sky"
        per_filter[h["FILTER"]] = per_filter.get(h["FILTER"], 0) + 1
    assert per_filter == dict.fromkeys(FILTERS, count)
    points = _events(lib, "sky-point")
    assert len(points) >= 2, points  # the spot was computed again as the sun moved
    for p in points:
        assert p["miss_deg"] < 1.0, p
        assert p["alt"] == 75.0
    # the target follows the sun: opposite its azimuth at the time of the event
    for p in points:
        when = datetime.fromisoformat(p["time"])
        sun_az = sun_azimuth_deg(SITE, when)
        assert separation_deg(75.0, p["az"], 75.0, (sun_az + 180.0) % 360.0) < 1.0, p
    secure = _events(lib, "sky-secure")
    assert len(secure) == 1 and secure[0]["closed"] and secure[0]["parked"], secure
    assert not secure[0]["problems"] and secure[0]["seconds"] <= close_timeout_s
    return {"points": len(points), "worst_miss_deg": max(p["miss_deg"] for p in points),
            "secure_s": secure[0]["seconds"], "per_filter": per_filter}


def test_unsafe_mid_run_closes_and_parks_then_the_next_window_resumes(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    plan = _plan(tmp_path, "tracking-off")
    cloudy = [{"start": "2026-11-25T16:04:30Z", "end": "2026-11-25T20:00:00Z"}]
    first = run_cli(capsys, "run", plan, "--config",
                    _config(tmp_path, "2026-11-25T15:45:00Z", cloudy=cloudy, scale=200.0),
                    "--library", lib)
    assert first.code in (0, 1), first.err
    assert _events(lib, "sky-unsafe"), first.err[-3000:]  # the weather turned mid-run
    secure = _events(lib, "sky-secure")
    assert secure and secure[0]["closed"] and secure[0]["parked"], secure
    assert secure[0]["seconds"] <= CLOSE_TIMEOUT_S
    before = len(_flats(lib))
    assert 0 < before < COUNT * len(FILTERS), "stopped part-way"
    second = run_cli(capsys, "run", plan, "--config",
                     _config(tmp_path, "2026-11-26T15:30:00Z"), "--library", lib)
    assert second.code == 0, second.err
    assert "resuming run 1" in second.err
    headers = _flats(lib)
    per_filter: dict[str, int] = {}
    seen: set[tuple[str, int]] = set()
    for h in headers:
        key = (h["FILTER"], h["FRAMESEQ"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        per_filter[h["FILTER"]] = per_filter.get(h["FILTER"], 0) + 1
    assert per_filter == dict.fromkeys(FILTERS, COUNT)
    print({"unsafe_secure_s": secure[0]["seconds"], "flats_before_unsafe": before})


def _dome_fault_config(tmp_path: Path, **dome: Any) -> Path:
    path = _config(tmp_path, "2026-11-25T15:45:00Z", scale=200.0)
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    data["domes"]["dome"].update(dome)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_dome_that_does_not_open_fails_the_set_with_the_reason(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", _plan(tmp_path, "tracking-off"), "--config",
                  _dome_fault_config(tmp_path, fail_open=True), "--library", lib)
    assert res.code != 0
    assert "the observatory did not open" in res.err and "stuck while opening" in res.err
    assert not _flats(lib)
    secure = _events(lib, "sky-secure")
    assert secure and secure[-1]["parked"] and secure[-1]["closed"], secure


def test_a_shutter_that_does_not_close_is_an_alarm(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    res = run_cli(capsys, "run", _plan(tmp_path, "tracking-off"), "--config",
                  _dome_fault_config(tmp_path, fail_close=True), "--library", lib)
    assert res.code != 0
    assert "ALARM" in res.err and "shutter" in res.err
    secure = _events(lib, "sky-secure")
    assert secure and not secure[-1]["closed"] and secure[-1]["problems"], secure


# ---------------------------------------------------------------------- through each driver family


class _Journal:
    """Records the events the observatory journals (the one CapturePort method it uses)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def event(self, level: str, kind: str, message: str, cell: object = None,
              data: dict[str, Any] | None = None) -> None:
        self.events.append((level, kind, dict(data or {})))


class _Cell:
    def describe(self) -> str:
        return "sky flat cell"


def _choreography(mount: Any, dome: Any, site: Site) -> dict[str, Any]:
    """Open, point, two frames' worth of re-point/offset, secure — on the real clock."""
    from calibd.capture.flats.observatory import FlatObservatory
    from calibd.capture.plans.model import SkyPointing
    from calibd.drivers.clock import RealClock

    journal = _Journal()
    obs = FlatObservatory(mount, dome, None, site,
                          SkyPointing(repoint_s=30.0, open_timeout_s=120.0,
                                      close_timeout_s=CLOSE_TIMEOUT_S),
                          RealClock(), journal)  # type: ignore[arg-type]
    cell = _Cell()
    assert obs.open(cell) is None, journal.events  # type: ignore[arg-type]
    obs._pointed_at = -1e9  # the next frame is due a re-point (the sun moved)
    obs.before_frame(cell)  # type: ignore[arg-type]
    obs.secure(cell)  # type: ignore[arg-type]
    points = [d for _, kind, d in journal.events if kind == "sky-point"]
    secure = [d for _, kind, d in journal.events if kind == "sky-secure"]
    return {"points": points, "secure": secure}


def _check(result: dict[str, Any]) -> None:
    points, secure = result["points"], result["secure"]
    assert len(points) == 2, result
    assert all(p["miss_deg"] < 1.0 for p in points), points
    assert len(secure) == 1 and secure[0]["closed"] and secure[0]["parked"], secure
    assert secure[0]["seconds"] <= CLOSE_TIMEOUT_S and not secure[0]["problems"], secure


@pytest.mark.indi
def test_the_choreography_through_indi(indi_mount_server: Any) -> None:
    from calibd.drivers.indi import IndiDome
    from calibd.drivers.indi import IndiMount
    from tests.indi_server import DOME
    from tests.indi_server import TELESCOPE

    srv = indi_mount_server
    mount = IndiMount(host=srv.host, port=srv.port, device=TELESCOPE, latitude_deg=SITE.
                      latitude_deg, longitude_deg=SITE.longitude_deg, elevation_m=SITE.elevation_m)
    dome = IndiDome(host=srv.host, port=srv.port, device=DOME)
    mount.connect()
    dome.connect()
    try:
        result = _choreography(mount, dome, SITE)
    finally:
        mount.disconnect()
        dome.disconnect()
    print({"indi": [round(p["miss_deg"], 5) for p in result["points"]],
           "secure_s": round(result["secure"][0]["seconds"], 1)})
    _check(result)


@pytest.mark.alpaca
def test_the_choreography_through_alpaca(alpaca_simulators: Any) -> None:
    from calibd.drivers.alpaca import AlpacaDome
    from calibd.drivers.alpaca import AlpacaMount

    mount = AlpacaMount(host="127.0.0.1", port=alpaca_simulators.port, device_number=1)
    dome = AlpacaDome(host="127.0.0.1", port=alpaca_simulators.port)
    mount.connect()
    dome.connect()
    try:
        result = _choreography(mount, dome, Site(52.0, 5.0, 10.0))
    finally:
        mount.connect()
        dome.connect()
    print({"alpaca": [round(p["miss_deg"], 5) for p in result["points"]],
           "secure_s": round(result["secure"][0]["seconds"], 1)})
    _check(result)


# ------------------------------------------------------- a whole run through our Alpaca server

ALPACA_SCALE = 100.0  # simulated seconds per real second, shared by calibd and the server
# The server's mount slews 1°/s: from the flat spot to its park about 85 s, plus the shutter's
# 20 s; the plans' default deadline leaves a busy CI machine ~2 s of real time to spare.
ALPACA_CLOSE_TIMEOUT_S = 300.0


def _alpaca_config(tmp_path: Path, port: int, start: datetime, real_start: datetime) -> Path:
    """Every device on our Alpaca server, calibd's clock the server's (same scale, start and
    real start)."""
    endpoint = {"driver": "alpaca", "host": "127.0.0.1", "port": port}
    data = {
        "clock": {"kind": "simulated", "scale": ALPACA_SCALE, "start": start.isoformat(),
                  "real_start": real_start.isoformat()},
        "library": {"fsync": False, "min_free_mb": 0},
        "masters": {"auto": False},
        "site": {"latitude_deg": SITE.latitude_deg, "longitude_deg": SITE.longitude_deg,
                 "elevation_m": SITE.elevation_m},
        "cameras": {"sim": {**endpoint, "filter_wheel": "wheel", "flat_panel": "panel",
                            "mount": "mount", "dome": "dome"}},
        "filter_wheels": {"wheel": dict(endpoint)},
        "flat_panels": {"panel": dict(endpoint)},
        "mounts": {"mount": dict(endpoint)},
        "domes": {"dome": dict(endpoint)},
        "safety": dict(endpoint),
    }
    path = tmp_path / "alpaca.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.alpaca
@pytest.mark.parametrize(("start", "stars"), [("2026-11-25T15:45:00+00:00", "tracking-off"),
                                              ("2026-11-26T05:56:00+00:00", "dither")],
                         ids=["dusk", "dawn"])
def test_a_twilight_run_through_our_alpaca_server(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path, start: str,
                                                  stars: str) -> None:
    """The same run as on the in-process simulator, with calibd's Alpaca camera, filter wheel,
    panel, mount, dome and safety monitor drivers over HTTP: the server's camera sees its own
    dome and telescope under the twilight sky of the shared simulated clock."""
    require_alpaca(server=False)
    lib = tmp_path / "lib"
    at = (datetime.fromisoformat(start), datetime.now(UTC))
    # ambient 0 °C: the set-point ramp is short. The clock starts early enough for a server
    # that takes up to ~8 s to come up on a busy machine (astropy loads its frames) to open
    # before dusk: at the bright end of dusk the narrowband filter has a few minutes only.
    server = OurAlpacaServer(tmp_path / "server.log", scale=ALPACA_SCALE, seed=5, ambient_c=0.0,
                             discovery=False, launch="calibd", clock_at=at)
    server.start()
    try:
        res = run_cli(capsys, "run", _plan(tmp_path, stars, ALPACA_CLOSE_TIMEOUT_S), "--config",
                      _alpaca_config(tmp_path, server.port, *at), "--library", lib)
    finally:
        code = server.stop()
    assert res.code == 0, res.err[-3000:]
    assert code == 0, server.log()
    print({"alpaca": start, **_check_run(lib, ALPACA_CLOSE_TIMEOUT_S)})


# ---------------------------------------------------------------------- a whole run through INDI

INDI_SCALE = 100.0
INDI_COUNT = 3
# Clock seconds to close and park: the moves take about 65 s, and every INDI round trip costs
# INDI_SCALE times its real duration on top.
INDI_CLOSE_TIMEOUT_S = 300.0
INDI_PLAN = f"""
name: indi-sky
defaults: {{offset: 10}}
cooling: {{tolerance_c: 0.5, dwell_s: 1, poll_s: 0.2, ramp_c_per_min: 60, timeout_s: 300}}
warmup: {{enabled: false}}
sets:
  - kind: flat
    source: sky
    filters: [{', '.join(FILTERS)}]
    gains: [100]
    setpoints_c: [0]
    count: {INDI_COUNT}
    target_adu: 20000
    tolerance_pct: 15
    min_exposure_s: 0.1
    max_exposure_s: 30
    sky:
      twilight: next
      sun_altitude_deg: [-2, -10]
      pointing: {{stars: STARS, repoint_s: 120, close_timeout_s: {INDI_CLOSE_TIMEOUT_S:g}}}
"""


@pytest.mark.indi
@pytest.mark.parametrize(("kind", "stars"), [("dusk", "tracking-off"), ("dawn", "dither")],
                         ids=["dusk", "dawn"])
def test_a_twilight_run_through_indi(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     kind: str, stars: str) -> None:
    """The whole run through calibd's INDI camera, wheel, mount and dome drivers under a real
    indiserver: the ZWO camera double serves the simulated observatory's telescope, dome and
    wheel, its sky on the clock this process runs too (same scale, start and real start)."""
    from calibd.capture.site import crossings
    from calibd.simulators.indi_doubles import observatory
    from calibd.simulators.indi_doubles.families import FAMILIES
    from tests.indi_server import observatory_double_args
    from tests.indi_server import running_indi_server

    # start a few simulated minutes before the window: the sun crossing -2° (dusk) or -10° (dawn)
    day = datetime(2026, 11, 25, 12, 0, tzinfo=UTC) if kind == "dusk" else \
        datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    rising = kind == "dawn"
    opens = next(t for t, up in crossings(SITE, day, -10.0 if rising else -2.0) if up is rising)
    start = opens - timedelta(minutes=5)
    real_start = datetime.now(UTC)
    camera = FAMILIES["asi"]
    with running_indi_server(drivers=(camera.executable,), double_scale=INDI_SCALE,
                             double_size=(64, 48),
                             double_args=observatory_double_args(SITE, start, real_start)) as srv:
        endpoint = {"driver": "indi", "host": srv.host, "port": srv.port}
        config = tmp_path / "calibd.yaml"
        config.write_text(yaml.safe_dump({
            "clock": {"kind": "simulated", "scale": INDI_SCALE, "start": start.isoformat(),
                      "real_start": real_start.isoformat()},
            "site": {"latitude_deg": SITE.latitude_deg, "longitude_deg": SITE.longitude_deg,
                     "elevation_m": SITE.elevation_m},
            "library": {"min_free_mb": 0},
            "masters": {"auto": False},
            "cameras": {"sim": {**endpoint, "device": camera.device, "filter_wheel": "wheel",
                                "mount": "mount", "dome": "dome"}},
            "filter_wheels": {"wheel": {**endpoint, "device": observatory.WHEEL}},
            "mounts": {"mount": {**endpoint, "device": observatory.TELESCOPE}},
            "domes": {"dome": {**endpoint, "device": observatory.DOME}},
        }, sort_keys=False))
        lib = tmp_path / "lib"
        plan = write_plan(tmp_path / "plan.yaml", INDI_PLAN.replace("STARS", stars))
        res = run_cli(capsys, "run", plan, "--config", config, "--library", lib)
        assert res.code == 0, res.err[-3000:]
        # what the devices themselves say afterwards, not what calibd journalled
        after = srv.getprop(f"{observatory.TELESCOPE}.TELESCOPE_PARK.PARK")
        after.update(srv.getprop(f"{observatory.DOME}.DOME_SHUTTER.SHUTTER_CLOSE"))
    assert set(after.values()) == {"On"}, after
    print({"run": kind, **_check_run(lib, INDI_CLOSE_TIMEOUT_S, INDI_COUNT)})
