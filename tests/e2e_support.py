"""Helpers for the end-to-end tests that run real device drivers (INDI, Alpaca, ZWO) through the
real ``calibd`` CLI into a library: configuration files for real devices, library checks, the
run journal, and a background watcher that injects a fault at a chosen moment of a run.

Every wait here has a deadline (real seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from astropy.io import fits

from capture.cli.main import main
from capture.library.index import Index
from tests.conftest import REPO
from tests.test_run import assert_library_exact, fits_files

__all__ = [
    "Watcher",
    "assert_library_exact",
    "cli_json",
    "finish",
    "fits_files",
    "frames_on_disk",
    "headers",
    "journal",
    "planned_cells",
    "run_state",
    "start_calibd",
    "wait_until",
    "watch",
    "write_real_config",
]


def write_real_config(path: Path, camera: dict[str, Any], *, name: str = "cam",
                      wheel: dict[str, Any] | None = None,
                      panel: dict[str, Any] | None = None) -> Path:
    """A configuration with one real-driver camera on the real clock (a simulated clock only
    works with simulated cameras), optionally with a filter wheel and a flat panel, fsync on and
    automatic masters off (these tests are about capture)."""
    cam = dict(camera)
    data: dict[str, Any] = {
        "clock": {"kind": "real"},
        "library": {"fsync": True, "min_free_mb": 0},
        "masters": {"auto": False},
        "cameras": {name: cam},
    }
    if wheel is not None:
        cam["filter_wheel"] = "wheel"
        data["filter_wheels"] = {"wheel": wheel}
    if panel is not None:
        cam["flat_panel"] = "panel"
        data["flat_panels"] = {"panel": panel}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def cli_json(*args: str | Path) -> Any:
    """Run ``calibd ... --json`` in-process and decode its standard output (capture with
    ``capsys`` in the caller is not needed: this redirects by itself)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    assert code == 0, f"calibd {' '.join(map(str, args))} exited {code}"
    return json.loads(out.getvalue())


def planned_cells(library: Path, run_id: int | None = None) -> dict[str, int]:
    """``{cell key: planned frames}`` of a run (default: the newest) from ``library status``."""
    runs = cli_json("library", "status", "--library", library, "--json")["runs"]
    run = runs[-1] if run_id is None else next(r for r in runs if r["id"] == run_id)
    return {c["key"]: c["planned"] for c in run["cells"]}


def run_state(library: Path) -> dict[str, Any]:
    """The newest run as ``library status --json`` reports it (state, cells with reasons)."""
    runs: list[dict[str, Any]] = cli_json("library", "status", "--library", library,
                                          "--json")["runs"]
    return runs[-1]


def journal(library: Path, run_id: int = 1) -> list[tuple[str, str]]:
    """The run's events as (kind, message), oldest first."""
    index = Index(library)
    try:
        return [(r["kind"], r["message"]) for r in index.events(run_id)]
    finally:
        index.close()


def headers(library: Path) -> list[fits.Header]:
    """The primary headers of every captured frame (masters excluded)."""
    return [fits.getheader(p) for p in fits_files(library)]


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    """Poll ``predicate`` for up to ``timeout_s`` real seconds; its last value."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()


class Watcher:
    """A background thread that waits (up to ``timeout_s``) for ``when()`` and then runs
    ``action()`` once. :attr:`fired` tells whether it ran; an exception in either is kept in
    :attr:`error` and re-raised by :meth:`check`."""

    def __init__(self, when: Callable[[], bool], action: Callable[[], None],
                 timeout_s: float) -> None:
        self.fired = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._when, self._action, self._timeout_s = when, action, timeout_s
        self._thread = threading.Thread(target=self._run, name="e2e-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            end = time.monotonic() + self._timeout_s
            while not self._stop.is_set() and time.monotonic() < end:
                if self._when():
                    self._action()
                    self.fired.set()
                    return
                self._stop.wait(0.02)
        except BaseException as err:  # handed to the test thread by check()
            self.error = err

    def close(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the fault injector failed: {self.error!r}") from self.error
        assert self.fired.is_set(), "the fault was never injected (its moment never came)"


@contextmanager
def watch(when: Callable[[], bool], action: Callable[[], None],
          timeout_s: float = 120.0) -> Iterator[Watcher]:
    """Run ``action`` once ``when()`` turns true, in the background, for the ``with`` body."""
    watcher = Watcher(when, action, timeout_s)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.close()


def frames_on_disk(library: Path, kind: str | None = None) -> int:
    """Complete frames in the library (optionally of one folder kind: Bias, Darks, Flats)."""
    files = fits_files(library) if library.exists() else []
    if kind is None:
        return len(files)
    return sum(1 for p in files if kind in p.parts)


def start_calibd(*args: str | Path, env: dict[str, str] | None = None,
                 log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m capture ARGS`` (a real calibd process) with its output going to ``log``
    (default: discarded). The caller waits for it with a deadline (``proc.wait(timeout)``)."""
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "capture", *map(str, args)], cwd=REPO,
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    finally:
        if log is not None and not isinstance(out, int):
            out.close()


def finish(proc: subprocess.Popen[bytes], timeout_s: float, log: Path | None = None) -> int:
    """Wait up to ``timeout_s`` real seconds for ``proc``; on timeout kill it and fail with the
    end of its log. Returns the exit code."""
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
        raise AssertionError(f"calibd did not finish within {timeout_s} s:\n{tail}") from None
