"""Coverage of a library: per run and cell, planned against done (``calibd library status``,
the daemon's status API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibd.capture.library.index import Index


def status_data(root: Path, index: Index, run_filter: int | None = None) -> dict[str, Any]:
    """Runs with their cells (planned, done, state, reason; colour flats: the mean level of each
    CFA channel above the bias, ``channel_levels_adu``), frame and byte totals, and per run the
    number of cells with frames but no master (``masters_missing``)."""
    frames, size = index.frame_totals()
    runs = []
    for run in index.runs():
        if run_filter is not None and run.id != run_filter:
            continue
        cells = []
        spans = index.flat_exposure_spans(run.id)
        colours = index.flat_channel_levels(run.id)
        for r in index.cell_rows(run.id):
            done, planned = int(r["done"]), int(r["planned"])
            state = r["state"]
            if done >= planned:
                state = "complete"
            cells.append({"key": r["cell_key"], "kind": r["kind"], "gain": r["gain"],
                          "offset": r["offset"], "binning": r["binning"],
                          "readout_mode": r["readout_mode"], "setpoint_c": r["setpoint_c"],
                          "exposure_s": r["exposure_s"], "filter": r["filter"],
                          "flat_exposures_s": spans.get(r["cell_key"]),
                          "channel_levels_adu": colours.get(r["cell_key"]),
                          "planned": planned, "done": min(done, planned), "extra": max(0,
                          done - planned), "state": state, "reason": r["reason"]})
        planned = sum(c["planned"] for c in cells)
        done = sum(c["done"] for c in cells)
        runs.append({"id": run.id, "plan": run.plan_name, "camera": run.camera,
                     "folder": run.folder, "state": run.state, "reason": run.reason,
                     "started_utc": run.started_utc, "finished_utc": run.finished_utc,
                     "planned": planned, "done": done,
                     "masters_missing": len(index.cells_without_master(run.id)),
                     "complete_cells": sum(1 for c in cells if c["state"] == "complete"),
                     "cells": cells})
    return {"library": str(root), "frames": frames, "bytes": size,
            "runs": runs}
