"""Live progress for ``calibd run``: one redrawn line on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from calibd.capture.plans.estimate import human_duration
from calibd.capture.sequencer.status import RunStatus

log = logging.getLogger("calibd.progress")


def _line(s: RunStatus) -> str:
    pct = 100.0 * s.frames_done / s.frames_total if s.frames_total else 100.0
    parts = [f"[{s.frames_done:>{len(str(s.frames_total))}}/{s.frames_total} {pct:5.1f}%]"]
    if s.phase in ("exposing", "reconnecting") and s.cell:
        parts.append(f"{s.cell} ({s.cell_done}/{s.cell_total})")
    else:
        parts.append(s.message or s.phase)
    if s.temperature_c is not None:
        cooler = f"sensor {s.temperature_c:.1f} °C"
        if s.power_pct is not None:
            cooler += f" {s.power_pct:.0f}%"
        parts.append(cooler)
    if s.rejected:
        parts.append(f"{s.rejected} rejected")
    if s.eta_s is not None and s.phase == "exposing":
        parts.append(f"ETA {human_duration(s.eta_s)}")
    return " | ".join(parts)


class TerminalProgress:
    """Redraws one status line (at most every ``interval_s``); a phase or cell change keeps the
    finished line and starts a new one. Log records are printed above the status line
    (:meth:`log_handler`), never in the middle of it."""

    def __init__(self, stream: TextIO = sys.stderr, interval_s: float = 0.2) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self._last = 0.0
        self._phase = ""
        self._cell: str | None = None
        self._lock = threading.RLock()
        self._text = ""

    def __call__(self, status: RunStatus) -> None:
        with self._lock:
            now = time.monotonic()
            changed = status.phase != self._phase or status.cell != self._cell
            if not changed and now - self._last < self.interval_s:
                return
            self._last = now
            if changed and self._text:
                self.stream.write("\n")  # keep the finished line
                self._text = ""
            self._phase, self._cell = status.phase, status.cell
            self._draw(_line(status))

    def _draw(self, text: str) -> None:
        pad = max(0, len(self._text) - len(text))
        self.stream.write("\r" + text + " " * pad + "\r" + text)
        self._text = text
        self.stream.flush()

    def log_handler(self, inner: logging.Handler) -> logging.Handler:
        """Wrap ``inner`` so each record clears the status line, prints, and redraws it."""
        progress = self

        class Above(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                with progress._lock:
                    text = progress._text
                    if text:
                        progress.stream.write("\r" + " " * len(text) + "\r")
                        progress.stream.flush()
                    inner.emit(record)
                    if text:
                        progress._text = ""
                        progress._draw(text)

        handler = Above(inner.level)
        handler.setFormatter(inner.formatter)
        return handler

    def finish(self) -> None:
        with self._lock:
            if self._text:
                self.stream.write("\n")
                self.stream.flush()
                self._text = ""


class LogProgress:
    """Plain log lines: each phase or cell change, and every ``step_pct`` of progress."""

    def __init__(self, step_pct: float = 10.0) -> None:
        self.step_pct = step_pct
        self._phase = ""
        self._cell: str | None = None
        self._next_pct = step_pct
        self._lock = threading.Lock()

    def __call__(self, status: RunStatus) -> None:
        with self._lock:
            pct = 100.0 * status.frames_done / status.frames_total if status.frames_total else 0
            changed = status.phase != self._phase or status.cell != self._cell
            if changed or pct >= self._next_pct:
                self._phase, self._cell = status.phase, status.cell
                while self._next_pct <= pct:
                    self._next_pct += self.step_pct
                log.info("%s", _line(status))

    def finish(self) -> None:
        """Nothing to clean up for log lines."""
