"""The library goal: which cells of a plan the library lacks now, under the library policy.

A cell is *held* when some run of the camera has it complete (every planned frame) and valid
(:func:`capture.library.policy.judge`). Every other cell of the plan is *needed*: never
captured, not finished, or stale (expired, invalidated, replaced, another camera serial). The
daemon's upkeep runs (schedules with ``upkeep: true``) capture exactly the needed cells.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from typing import Protocol

from calibd.capture.library.index import Index
from calibd.capture.library.policy import Item
from calibd.capture.library.policy import LibraryPolicy
from calibd.capture.library.policy import Verdict
from calibd.capture.library.status import Judge
from calibd.capture.plans.cells import Cell


class Keyed(Protocol):
    @property
    def key(self) -> str: ...


@dataclass(frozen=True)
class Need:
    key: str
    reason: str  # "never captured", "unfinished", or the policy's reason
    since_utc: str | None  # when the held copy expired (None: never held)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "reason": self.reason, "since_utc": self.since_utc}


@dataclass(frozen=True)
class Holding:
    """The state of one cell key in the library."""

    held: bool
    verdict: Verdict | None  # of the newest complete capture
    unfinished: bool


def holdings(index: Index, camera: str, policy: LibraryPolicy, now: datetime, *,
             longitude_deg: float | None = None) -> dict[str, Holding]:
    """Per cell key captured on ``camera``: held (complete and valid) or not, and why."""
    judge = Judge(index, policy, now, longitude_deg)
    out: dict[str, Holding] = {}
    for r in index.cell_captures(camera):
        key = str(r["cell_key"])
        complete = int(r["done"]) >= int(r["planned"])
        prev = out.get(key)
        if not complete:
            if prev is None:
                out[key] = Holding(False, None, int(r["done"]) > 0)
            elif not prev.held:
                out[key] = Holding(False, prev.verdict, prev.unfinished or int(r["done"]) > 0)
            continue
        v = judge(Item(kind=r["kind"], camera=camera, camera_id=r["camera_id"], gain=r["gain"],
                       offset=r["offset"], binning=r["binning"], filter=r["filter"],
                       date_obs=r["newest"], run_id=r["run_id"]))
        if v.valid:
            out[key] = Holding(True, v, False)
        elif prev is None or not prev.held:
            out[key] = Holding(False, v, prev.unfinished if prev else False)
    return out


def needs(cells: Sequence[Cell | Keyed], held: dict[str, Holding],
          rank: Callable[[Any], int] | None = None) -> list[Need]:
    """The cells of a plan the library lacks, most valuable first: ``rank`` (lower first,
    e.g. cells the recent lights need), then never captured, then the longest expired."""
    out: list[tuple[tuple[Any, ...], Need]] = []
    for i, c in enumerate(cells):
        h = held.get(c.key)
        if h is not None and h.held:
            continue
        if h is None or h.verdict is None:
            need = Need(c.key, "unfinished" if h is not None and h.unfinished
                        else "never captured", None)
        else:
            need = Need(c.key, h.verdict.reason or "invalid", h.verdict.expires_utc)
        out.append(((rank(c) if rank else 0, need.since_utc or "", i), need))
    return [n for _, n in sorted(out, key=lambda t: t[0])]
