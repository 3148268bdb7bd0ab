"""What the local HTTP API may ask of the running daemon (implemented by the daemon core).

Every method is called from an API request thread, returns quickly (never waits for a run) and
raises :class:`ControlError` for requests that cannot be honoured (unknown camera, plan or
schedule; bad arguments).
"""

from __future__ import annotations

from typing import Any
from typing import Protocol


class ControlError(Exception):
    """A command the daemon refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class DaemonControl(Protocol):
    def status(self) -> dict[str, Any]:
        """JSON-able snapshot: ``{"daemon": {...}, "cameras": {name: {...}},
        "schedules": [{name, trigger, next_run_utc, ...}], "library": {...}}``."""
        ...

    def start(self, *, camera: str | None, plan: str | None, schedule: str | None) -> str:
        """Queue a run (a plan file, or a configured schedule's plan) now; returns a message."""
        ...

    def pause(self, camera: str) -> str:
        """Stop the camera's current run cleanly (resumable) and hold its queue."""
        ...

    def resume(self, camera: str) -> str:
        """Release a paused camera: its queue (and the interrupted run) continue."""
        ...

    def stop(self, camera: str) -> str:
        """Stop the current run cleanly and drop the camera's queued runs."""
        ...
