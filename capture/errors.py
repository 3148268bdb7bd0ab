"""Errors of the core. Device errors live in :mod:`drivers.errors`.

The CLI maps :class:`InputError` (a broken plan or configuration) to exit code 2 and everything
else to exit code 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located as precisely as known."""

    file: Path | None
    line: int | None
    key: str  # dotted path such as ``sets[1].exposures_s[0]``; "" for the whole file
    message: str

    def __str__(self) -> str:
        where = str(self.file) if self.file else "<input>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class InputError(Exception):
    """Bad input from the user: nothing was done. Carries one or more located problems."""

    kind = "input"

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("an InputError needs at least one problem")
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @property
    def first(self) -> Problem:
        return self.problems[0]


class PlanError(InputError):
    """A capture plan is invalid (syntax, schema, or impossible for the camera)."""

    kind = "plan"


class ConfigError(InputError):
    """The configuration file is invalid."""

    kind = "configuration"


class CoolingTimeout(Exception):
    """The cooler did not settle at a set-point within its timeout (policy ``abort``)."""


class LibraryError(Exception):
    """The library cannot take more frames: disk full, unwritable, or a corrupt index."""


class RunPaused(Exception):
    """A run stopped before finishing for a stated reason (device gone, stop requested); running
    the same plan again resumes it."""


class DaemonError(Exception):
    """The service cannot run (its state folder is locked by another daemon, its API port is
    taken, ...). systemd may restart it later."""
