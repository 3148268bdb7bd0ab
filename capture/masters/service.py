"""Build what is missing or stale: ``calibd masters build`` and the automatic builder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from calibd.capture.config import MastersConfig
from calibd.capture.errors import LibraryError
from calibd.capture.library.index import Index
from calibd.capture.library.rescan import check_frames
from calibd.capture.masters.bpm import bpm_keys
from calibd.capture.masters.bpm import build_bpm
from calibd.capture.masters.build import MasterBuildError
from calibd.capture.masters.build import MasterGroup
from calibd.capture.masters.build import build_master
from calibd.capture.masters.build import frame_groups
from calibd.capture.masters.build import needs_build
from calibd.capture.masters.inputs import MasterInputError

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    built: list[Path] = field(default_factory=list)
    current: int = 0  # masters already up to date
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{len(self.built)} master(s) built, {self.current} up to date"
        if self.failed:
            text += f", {len(self.failed)} failed"
        return text


def _forget_missing_frames(index: Index, run_id: int | None, cell_key: str | None) -> None:
    """Drop index rows whose file the user deleted, so masters are built from what exists.
    Only the frames of the run and cell about to be built are looked at (one stat each)."""
    gone = sorted(p for p in index.frame_paths(run_id, cell_key)
                  if not (index.root / p).exists())
    if gone:
        log.warning("%d indexed frame(s) no longer on disk: forgotten", len(gone))
        index.remove_frames(gone)


def _check_inputs(index: Index, group: MasterGroup) -> str | None:
    """Verify every input of ``group`` (checksums, size, shape) before it is combined. Damaged
    frames are quarantined and dropped from the index; a master is then not built from what is
    left of a cell (returns why), so the next run of the plan refills the cell exactly."""
    report = check_frames(index, run_id=group.run_id, cell_key=group.cell_key, full=True)
    lost = len(report.quarantined) + len(report.excluded)
    if not lost:
        return None
    left = len(index.frame_checks(group.run_id, group.cell_key))
    planned = next((int(r["planned"]) for r in index.cell_rows(group.run_id)
                    if r["cell_key"] == group.cell_key), None)
    of = f" of {planned}" if planned is not None else ""
    return (f"{lost} damaged frame(s) set aside ({', '.join(report.quarantined + report.excluded)}"
            f"); the cell now has {left}{of} frames: run its plan again to capture the missing "
            "ones, then the master is built")


def build_missing(index: Index, cfg: MastersConfig, *, kinds: Sequence[str] | None = None,
                  force: bool = False, run_id: int | None = None,
                  cell_key: str | None = None, bpm: bool = True) -> BuildReport:
    """Build every missing or stale master (all with ``force``), then the bad pixel maps whose
    inputs changed. Blocks. Failures are collected, not raised."""
    report = BuildReport()
    _forget_missing_frames(index, run_id, cell_key)
    wanted = [k for k in (kinds or ("bias", "darkflat", "dark", "flat"))]
    touched: set[tuple[str, int, int]] = set()
    for group in frame_groups(index, kinds=wanted, run_id=run_id, cell_key=cell_key):
        reason = "forced" if force else needs_build(index, group)
        if reason is None:
            report.current += 1
            continue
        refused = _check_inputs(index, group)
        if refused is not None:
            log.error("master %s not built: %s", group.describe(), refused)
            report.failed.append(f"{group.describe()}: {refused}")
            continue
        try:
            report.built.append(build_master(index, group, cfg))
            if group.kind in ("dark", "flat"):  # what bad pixel maps are made from
                touched.add((group.camera, group.gain, group.binning))
        except MasterBuildError as err:  # its message names the group already
            log.error("master not built: %s", err)
            report.failed.append(str(err))
        except MasterInputError as err:
            log.error("master %s not built: %s", group.describe(), err)
            report.failed.append(f"{group.describe()}: {err}")
        except (OSError, LibraryError) as err:  # a full or failing disk: frames are safe
            log.error("master %s not built: %s", group.describe(), err)
            report.failed.append(f"{group.describe()}: {err}")
    if bpm and (kinds is None or "bpm" in kinds or touched):
        # A map without DATE-OBS (from before maps carried it) is built again: undated, the
        # library policy cannot judge it.
        have = {(m.camera, m.gain, m.binning) for m in index.masters("bpm") if m.date_obs}
        for key in bpm_keys(index):
            if force or key in touched or key not in have or (kinds and "bpm" in kinds):
                try:
                    path = build_bpm(index, *key, cfg)
                except (OSError, LibraryError) as err:
                    log.error("bad pixel map %s not built: %s", key, err)
                    report.failed.append(f"bad pixel map {key}: {err}")
                    continue
                if path is not None:
                    report.built.append(path)
    return report
