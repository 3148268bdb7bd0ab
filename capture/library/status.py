"""Coverage of a library: per run and cell, planned against done, with the age and validity of
each cell and of each master under the library policy (``calibd library status``, the daemon's
status API)."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

from calibd.capture.library.index import Index
from calibd.capture.library.policy import Item
from calibd.capture.library.policy import LibraryPolicy
from calibd.capture.library.policy import Verdict
from calibd.capture.library.policy import judge


class Judge:
    """The policy's verdicts for one look at the index (its invalidations, cameras, flats)."""

    def __init__(self, index: Index, policy: LibraryPolicy | None = None,
                 now: datetime | None = None, longitude_deg: float | None = None) -> None:
        self.policy = policy or LibraryPolicy()
        self.now = now or datetime.now(UTC)
        self.longitude_deg = longitude_deg
        self.invalidations = index.invalidations()
        self.current_ids = index.current_camera_ids()
        self.flat_sets = index.flat_sets()

    def __call__(self, item: Item) -> Verdict:
        return judge(item, self.policy, self.now, invalidations=self.invalidations,
                     current_ids=self.current_ids, flat_sets=self.flat_sets,
                     longitude_deg=self.longitude_deg)


def status_data(root: Path, index: Index, run_filter: int | None = None, *,
                policy: LibraryPolicy | None = None, now: datetime | None = None,
                longitude_deg: float | None = None) -> dict[str, Any]:
    """Runs with their cells (planned, done, state, reason; colour flats: the mean level of each
    CFA channel above the bias, ``channel_levels_adu``; age and validity: ``valid`` is None for
    a cell with no frames yet, ``invalid_reason`` says why an invalid one is), frame and byte
    totals, per run the number of cells with frames but no master (``masters_missing``) and of
    invalid cells, and every master with its age and validity."""
    verdict = Judge(index, policy, now, longitude_deg)
    frames, size = index.frame_totals()
    runs = []
    for run in index.runs():
        if run_filter is not None and run.id != run_filter:
            continue
        cells = []
        spans = index.flat_exposure_spans(run.id)
        colours = index.flat_channel_levels(run.id)
        newest = index.cell_newest(run.id)
        for r in index.cell_rows(run.id):
            done, planned = int(r["done"]), int(r["planned"])
            state = r["state"]
            if done >= planned:
                state = "complete"
            date, camera, camera_id = newest.get(r["cell_key"], (None, None, None))
            v = verdict(Item(kind=r["kind"], camera=camera or run.camera, camera_id=camera_id,
                             gain=r["gain"], offset=r["offset"], binning=r["binning"],
                             filter=r["filter"], date_obs=date, run_id=run.id))
            cells.append({"key": r["cell_key"], "kind": r["kind"], "gain": r["gain"],
                          "offset": r["offset"], "binning": r["binning"],
                          "readout_mode": r["readout_mode"], "setpoint_c": r["setpoint_c"],
                          "exposure_s": r["exposure_s"], "filter": r["filter"],
                          "flat_exposures_s": spans.get(r["cell_key"]),
                          "channel_levels_adu": colours.get(r["cell_key"]),
                          "planned": planned, "done": min(done, planned), "extra": max(0,
                          done - planned), "state": state, "reason": r["reason"],
                          "date_obs": date, **_validity(v)})
        planned = sum(c["planned"] for c in cells)
        done = sum(c["done"] for c in cells)
        runs.append({"id": run.id, "plan": run.plan_name, "camera": run.camera,
                     "folder": run.folder, "state": run.state, "reason": run.reason,
                     "started_utc": run.started_utc, "finished_utc": run.finished_utc,
                     "planned": planned, "done": done,
                     "masters_missing": len(index.cells_without_master(run.id)),
                     "complete_cells": sum(1 for c in cells if c["state"] == "complete"),
                     "invalid_cells": sum(1 for c in cells if c["valid"] is False),
                     "cells": cells})
    masters = []
    for m in index.masters():
        if run_filter is not None and m.run_id != run_filter:
            continue
        v = verdict(Item(kind=m.kind, camera=m.camera, camera_id=m.camera_id, gain=m.gain,
                         offset=m.offset, binning=m.binning, filter=m.filter,
                         date_obs=m.date_obs, run_id=m.run_id))
        if not m.current and v.valid:
            v = Verdict(False, "replaced by a newer master of the same conditions",
                        v.age_days, v.expires_utc)
        masters.append({"path": m.path, "kind": m.kind, "current": m.current,
                        "camera": m.camera, "gain": m.gain,
                        "offset": m.offset, "binning": m.binning, "setpoint_c": m.setpoint_c,
                        "exposure_s": m.exposure_s, "filter": m.filter, "run_id": m.run_id,
                        "cell_key": m.cell_key, "date_obs": m.date_obs, **_validity(v)})
    return {"library": str(root), "frames": frames, "bytes": size,
            "now_utc": verdict.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "policy": verdict.policy.model_dump(), "runs": runs, "masters": masters}


def _validity(v: Verdict) -> dict[str, Any]:
    d = v.to_dict()
    return {"age_days": d["age_days"], "valid": d["valid"],
            "invalid_reason": d["reason"] if v.valid is False else None,
            "expires_utc": d["expires_utc"]}
