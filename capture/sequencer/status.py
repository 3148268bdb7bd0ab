"""What a run is doing right now, as the progress display, the daemon's API and logs see it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any


@dataclass
class RunStatus:
    """A snapshot; the sequencer updates one instance and passes it to its reporter."""

    plan: str
    camera: str
    run_id: int | None = None
    phase: str = "starting"  # starting, cooling, exposing, warming, done, paused, failed, stopped
    message: str = ""
    frames_done: int = 0  # in the library for this run
    frames_total: int = 0
    frames_session: int = 0  # written by this process
    rejected: int = 0
    cell: str | None = None
    cell_done: int = 0
    cell_total: int = 0
    exposure_s: float | None = None
    temperature_c: float | None = None
    setpoint_c: float | None = None
    power_pct: float | None = None
    eta_s: float | None = None  # clock seconds
    skipped_cells: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Reporter = Callable[[RunStatus], None]


def no_report(_: RunStatus) -> None:
    """A reporter that ignores updates."""
