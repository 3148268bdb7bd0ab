"""The two narrow contracts between the sequencer and the flats (capture/flats).

:class:`CapturePort` is what the flats capture through; the sequencer implements it (cooling,
retries, reconnects, checks, the writer and the journal stay behind it). :class:`FlatCapture` is
what the sequencer asks of the flats runner. Neither side imports the other: both import this
module, and ``capture.runner`` wires them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from calibd.capture.plans.cells import Cell
from calibd.capture.sequencer.checks import FrameStats
from calibd.drivers.contracts import CoolerState
from calibd.drivers.contracts import Frame

Extra = dict[str, str | int | float | bool]  # additional FITS cards of a kept frame


@dataclass(frozen=True)
class Shot:
    """One captured frame with its statistics and the cooler state just before it."""

    frame: Frame
    stats: FrameStats
    cooler: CoolerState
    pattern: str | None = None  # Bayer pattern of the mosaic as written (BAYERPAT); None: mono


class CellFailed(Exception):
    """The cell cannot go on (already recorded through ``fail_cell``); the run continues with
    the next cell."""


@dataclass(frozen=True)
class Levels:
    """What the sensor reads at a cell's settings, in ADU (raw, bias included)."""

    bias_adu: float  # at zero light
    saturation_adu: float  # where it clips: the ADC's full scale, or the full well if lower
    full_scale_adu: float  # the ADC's full scale


class CapturePort(Protocol):
    """What the flats use to capture. Every method may block on the camera; those that capture
    raise RunPaused (stop requested, camera gone, repeated failures) and LibraryError."""

    def done(self, cell: Cell) -> int:
        """Frames of ``cell`` in the library for this run (earlier sessions included)."""
        ...

    def configure(self, cell: Cell) -> bool:
        """Apply the cell's settings. False (and the cell failed) if the camera refuses them."""
        ...

    def levels(self, cell: Cell) -> Levels:
        """Bias and clipping levels at the cell's settings: known ones, or one bias frame (not
        kept) when this run has no bias level or the camera's e-/ADU at this gain is unknown."""
        ...

    def shoot(self, cell: Cell, exposure_s: float) -> Shot:
        """Take one frame of ``cell`` (not yet kept) at ``exposure_s`` with the set-point held,
        retries and reconnects."""
        ...

    def keep(self, shot: Shot, cell: Cell, extra: Extra) -> bool:
        """Check the frame with the run's per-frame checks and write it (True), or journal it as
        rejected (False). Raises CellFailed when the camera took it with other settings than
        the cell's."""
        ...

    def reject(self, cell: Cell, reason: str, check: str, stats: FrameStats) -> None:
        """Journal a frame the caller refused (it is not written)."""
        ...

    def fail_cell(self, cell: Cell, reason: str, *, state: str = "failed") -> None:
        """Give up on ``cell`` for this run: ``failed`` or ``skipped`` with the reason."""
        ...

    def capture_dark_flats(self, cells: list[Cell]) -> None:
        """Add these dark-flat cells to the run and capture them (fixed exposures, after the
        flats runner's ``prepare_dark_flats``)."""
        ...

    def kept_exposures(self, cell: Cell) -> list[float]:
        """Exposures (s) of the frames kept for ``cell`` in this run, oldest first (waits for
        the writer)."""
        ...

    def progress(self, message: str, *, phase: str | None = None,
                 cell: Cell | None = None) -> None:
        """Show what is happening (run status); ``cell`` becomes the current cell."""
        ...

    def event(self, level: str, kind: str, message: str, cell: Cell | None = None,
              data: dict[str, object] | None = None) -> None:
        """Journal an event of the run (``level``: info, warning or error) and log it."""
        ...


class FlatCapture(Protocol):
    """What the sequencer asks of the flats runner (capture/flats)."""

    def pending_dark_flats(self, port: CapturePort, cells: list[Cell]) -> list[Cell]:
        """Dark-flat cells already decided in an earlier session and not yet complete."""
        ...

    def capture(self, port: CapturePort, cells: list[Cell]) -> None:
        """Capture these flat cells (one set-point), then their dark flats."""
        ...

    def prepare_dark_flats(self, port: CapturePort, cell: Cell) -> None:
        """Before dark flats: panel off, cover closed, and a bias level to check them against."""
        ...
