"""The library policy: ages per kind, invalidations (recorded by the user, a camera's serial
changing, a flat set replaced), and ``library status --json`` saying age, validity and the
reason per cell and per master. The index is the real SQLite one, filled through its named
methods and the one header <-> row mapping, with frames dated relative to now."""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from calibd.capture.library.headermap import frame_row
from calibd.capture.library.headermap import master_row
from calibd.capture.library.index import Index
from calibd.capture.library.policy import session_end
from calibd.capture.plans.cells import Cell
from tests.support import run_cli

NOW = datetime.now(UTC)


def _iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S")


def add_run(index: Index, cells: list[tuple[Cell, float]], *, camera_id: str = "SN1") -> int:
    """A run of camera "main" whose cells each have 2 frames, the newest ``days_ago`` old."""
    run = index.create_run("p", None, None, "main", "")
    index.upsert_cells(run, [c for c, _ in cells])
    for cell, days in cells:
        for seq, extra in enumerate((0.1, 0.0), start=1):
            h = {"IMAGETYP": {"bias": "Bias Frame", "dark": "Dark Frame",
                              "flat": "Flat Frame"}[cell.kind],
                 "RUNID": run, "CELLKEY": cell.key, "FRAMESEQ": seq, "CAMNAME": "main",
                 "CAMERAID": camera_id, "GAIN": cell.gain, "OFFSET": cell.offset,
                 "XBINNING": cell.binning, "READOUTM": cell.readout_mode,
                 "SET-TEMP": cell.setpoint_c, "EXPTIME": cell.exposure_s,
                 "DATE-OBS": _iso(days + extra)}
            if cell.filter:
                h["FILTER"] = cell.filter
            index.add_frame({**frame_row(h, shape=(4, 6)), "bytes": 100,
                             "path": f"r{run}/{cell.key.replace('|', '_')}_{seq}.fits"})
    return run


def cell(kind: str, *, exposure: float = 0.001, filt: str | None = None) -> Cell:
    return Cell(kind, 100, 50, 1, "default", -10.0, exposure, 2, filter=filt)  # type: ignore[arg-type]


def add_master(index: Index, c: Cell, run: int, days: float) -> None:
    h = {"IMAGETYP": f"Master {c.kind.capitalize()}", "CAMNAME": "main", "CAMERAID": "SN1",
         "GAIN": c.gain, "OFFSET": c.offset, "XBINNING": 1, "SET-TEMP": c.setpoint_c,
         "EXPTIME": c.exposure_s, "DATE-OBS": _iso(days), "SRCRUN": run, "SRCCELL": c.key}
    if c.filter:
        h["FILTER"] = c.filter
    index.upsert_master(master_row(h, path=f"Masters/{c.kind}-{c.filter}-{run}.fits",
                                   inputs_digest=None))


def status(capsys: pytest.CaptureFixture[str], lib: Path, *extra: str | Path) -> dict[str, Any]:
    res = run_cli(capsys, "-q", "library", "status", "--library", lib, "--json", *extra)
    assert res.code == 0, res.err
    data: dict[str, Any] = json.loads(res.out)
    return data


def cells_by(data: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    return {(r["id"], c["key"]): c for r in data["runs"] for c in r["cells"]}


def config(tmp_path: Path, policy: str) -> Path:
    path = tmp_path / f"c{abs(hash(policy))}.yaml"
    path.write_text(f"cameras:\n  sim: {{driver: simulator}}\nlibrary:\n  policy:\n{policy}")
    return path


def test_status_json_says_age_validity_and_reason_per_cell_and_master(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    index = Index(lib)
    bias, dark = cell("bias"), cell("dark", exposure=300.0)
    flat_l, flat_ha = cell("flat", filt="L"), cell("flat", filt="Ha")
    r1 = add_run(index, [(bias, 200.0), (dark, 10.0), (flat_l, 40.0), (flat_ha, 5.0)])
    add_master(index, bias, r1, 200.0)
    add_master(index, flat_ha, r1, 5.0)
    add_master(index, flat_l, r1, 40.0)
    r2 = add_run(index, [(flat_l, 2.0)])  # new L flats: run 1's are replaced
    add_master(index, flat_l, r2, 2.0)
    add_master(index, dark, r1, 10.0)
    add_master(index, dark, 99, 1.0)  # rebuilt later from other frames: the current one
    index.close()

    data = status(capsys, lib)
    cells = cells_by(data)
    b = cells[(r1, bias.key)]
    assert b["valid"] is False and 199.5 < b["age_days"] < 200.5
    assert "expired: 200 days old, the policy keeps bias 180 days" in b["invalid_reason"]
    d = cells[(r1, dark.key)]
    assert d["valid"] is True and d["invalid_reason"] is None and 9.5 < d["age_days"] < 10.5
    assert d["expires_utc"] > data["now_utc"]
    assert cells[(r1, flat_l.key)]["valid"] is False
    assert f"replaced by run {r2}" in cells[(r1, flat_l.key)]["invalid_reason"]
    assert cells[(r2, flat_l.key)]["valid"] is True
    assert cells[(r1, flat_ha.key)]["valid"] is True
    assert {r["id"]: r["invalid_cells"] for r in data["runs"]} == {r1: 2, r2: 0}
    masters = {(m["kind"], m["filter"], m["run_id"]): m for m in data["masters"]}
    bias_m, ha_m = masters[("bias", None, r1)], masters[("flat", "Ha", r1)]
    assert bias_m["valid"] is False and "expired" in bias_m["invalid_reason"]
    assert ha_m["valid"] is True and 4.5 < ha_m["age_days"] < 5.5
    # A newer master of the same conditions replaces the older one.
    assert masters[("flat", "L", r2)]["valid"] is True and masters[("flat", "L", r2)]["current"]
    assert masters[("flat", "L", r1)]["valid"] is False
    assert "replaced" in masters[("flat", "L", r1)]["invalid_reason"]
    assert masters[("dark", None, 99)]["valid"] is True
    assert masters[("dark", None, r1)]["current"] is False
    assert masters[("dark", None, r1)]["invalid_reason"] == \
        "replaced by a newer master of the same conditions"

    # The policy comes from the configuration: a year for bias, flats per imaging session.
    longer = config(tmp_path, "    max_age_days: {bias: 365, flat: session}\n")
    data = status(capsys, lib, "--config", longer)
    cells = cells_by(data)
    assert cells[(r1, bias.key)]["valid"] is True
    assert "its imaging session ended" in cells[(r1, flat_ha.key)]["invalid_reason"]
    bad = run_cli(capsys, "library", "status", "--library", lib,
                  "--config", config(tmp_path, "    max_age_days: {flat: weekly}\n"))
    assert bad.code == 2 and "flat" in bad.err

    # The user invalidates the Ha flats: the cell and its master, not the L flats.
    res = run_cli(capsys, "library", "invalidate", "--kind", "flats", "--filter", "Ha",
                  "--reason", "filter cleaned", "--library", lib)
    assert res.code == 0, res.err
    data = status(capsys, lib)
    cells = cells_by(data)
    assert "filter cleaned" in cells[(r1, flat_ha.key)]["invalid_reason"]
    assert cells[(r2, flat_l.key)]["valid"] is True and cells[(r1, dark.key)]["valid"] is True
    masters = {(m["kind"], m["filter"], m["run_id"]): m for m in data["masters"]}
    assert "filter cleaned" in masters[("flat", "Ha", r1)]["invalid_reason"]
    hostile = run_cli(capsys, "library", "invalidate", "--kind", "flats", "--filter",
                      "H\x1b[2J", "--library", lib)
    assert hostile.code == 2 and "\x1b" not in hostile.err

    # The camera is replaced (another serial under the same name): everything before it goes.
    index = Index(lib)
    r3 = add_run(index, [(cell("dark", exposure=60.0), 0.5)], camera_id="SN2")
    index.close()
    data = status(capsys, lib)
    cells = cells_by(data)
    assert "camera main changed" in cells[(r1, dark.key)]["invalid_reason"]
    assert cells[(r3, cell("dark", exposure=60.0).key)]["valid"] is True
    text = run_cli(capsys, "library", "status", "--library", lib)
    assert text.code == 0 and "INVALID: camera main changed" in text.out


def test_an_imaging_session_ends_at_the_next_local_noon() -> None:
    t = datetime(2024, 3, 1, 22, 0, tzinfo=UTC)  # 22:00 UTC
    assert session_end(t, None) == datetime(2024, 3, 2, 12, 0, tzinfo=UTC)
    # 90 degrees east: local noon is 06:00 UTC; at 22:00 UTC it is 04:00 local.
    assert session_end(t, 90.0) == datetime(2024, 3, 2, 6, 0, tzinfo=UTC)
    assert session_end(datetime(2024, 3, 1, 11, 0, tzinfo=UTC), None) == \
        datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
