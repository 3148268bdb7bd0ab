"""The per-camera SDK worker thread: every SDK call runs there, and the caller waits for it with a
deadline (real seconds). A call past its deadline abandons the worker; see :class:`_SdkWorker`."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from calibd.drivers.errors import DeviceUnavailable


class _SdkDeadline(DeviceUnavailable):
    """An SDK call did not return in time (the worker that ran it is abandoned)."""


class _CallTimeout(Exception):
    def __init__(self, what: str, timeout_s: float) -> None:
        super().__init__(f"{what} did not return within {timeout_s:.1f} s")
        self.what = what
        self.timeout_s = timeout_s


_Job = tuple[str, Callable[..., Any], tuple[Any, ...], "Future[Any]"]


class _SdkWorker:
    """One daemon thread that runs SDK calls in submission order; callers wait with a deadline.

    A call past its deadline *abandons* the worker: the thread finishes the stuck call whenever the
    SDK lets it, runs nothing else, and exits. It is never joined.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._abandoned = threading.Event()
        self.current: str | None = None
        self.current_since = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()

    @property
    def stuck(self) -> bool:
        """Abandoned and still inside an SDK call."""
        return self._abandoned.is_set() and self._thread.is_alive()

    def run(self, what: str, fn: Callable[..., Any], *args: Any, timeout_s: float) -> Any:
        """Run ``fn(*args)`` on the worker; blocks at most ``timeout_s`` real seconds.

        Returns its result or re-raises its exception; raises _CallTimeout past the deadline (the
        worker is then abandoned) or at once if it already is.
        """
        if self._abandoned.is_set():
            raise _CallTimeout(what, 0.0)
        fut: Future[Any] = Future()
        self._queue.put((what, fn, args, fut))
        try:
            return fut.result(timeout=max(timeout_s, 0.0))
        except FutureTimeout:
            if fut.cancel():  # never started: the worker is busy with an earlier stuck call
                what = f"{what} (queued behind {self.current or 'another call'})"
            self.abandon()
            raise _CallTimeout(what, timeout_s) from None

    def abandon(self) -> None:
        self._abandoned.set()
        self._queue.put(None)

    def stop(self) -> None:
        """Let the thread exit after queued calls (never blocks)."""
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._abandoned.is_set():
                return
            what, fn, args, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            self.current, self.current_since = what, time.monotonic()
            try:
                result = fn(*args)
            except BaseException as err:  # handed to the caller through the future
                fut.set_exception(err)
            else:
                fut.set_result(result)
            finally:
                self.current = None
            if self._abandoned.is_set():
                return

