"""The base of the Alpaca devices whose commands finish later (a wheel or dome moving, a mount
slewing, a panel's light settling or its cover moving): how they wait, and for how long."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import ClassVar
from typing import TypeVar
from typing import Unpack

from calibd.drivers.alpaca._base import AlpacaDevice
from calibd.drivers.alpaca._base import Endpoint
from calibd.drivers.alpaca._base import positive_seconds
from calibd.drivers.errors import DeviceUnavailable

S = TypeVar("S", bound=enum.Enum)


class AlpacaMover(AlpacaDevice):
    """An Alpaca device whose commands are waited for: :meth:`_wait` polls every :attr:`_poll_s`
    clock seconds for at most ``wait_timeout_s`` clock seconds unless the call gives its own
    ``timeout_s`` (``wait_timeout_s`` None: the device type's :attr:`_wait_default_s`), and
    ends at once when :attr:`_abort_wait` is set (the mount's ``abort()`` sets it, and the mount
    clears it before a park, unpark or slew; nothing sets it on the other devices). Raises
    ValueError at construction for a ``wait_timeout_s`` that is not a positive finite number."""

    #: Clock seconds a wait may take by default (a move, a slew, a light settling).
    _wait_default_s: ClassVar[float] = 60.0
    #: Clock seconds between two polls of :meth:`_wait`.
    _poll_s: ClassVar[float] = 0.2

    def __init__(
        self,
        *,
        wait_timeout_s: float | None = None,
        **endpoint: Unpack[Endpoint],
    ) -> None:
        super().__init__(**endpoint)
        self.wait_timeout_s = positive_seconds(
            "wait_timeout_s", self._wait_default_s if wait_timeout_s is None else wait_timeout_s
        )
        self._abort_wait = threading.Event()

    def _wait(
        self,
        what: str,
        done: Callable[[], bool],
        timeout_s: float | None,
        detail: Callable[[], str] | None = None,
    ) -> None:
        """Call ``done`` every :attr:`_poll_s` clock seconds until it returns True. Blocks at most
        ``timeout_s`` clock seconds (None: :attr:`wait_timeout_s`); past it calls
        :meth:`_give_up` and raises DeviceUnavailable ("``what``: not done within ...", followed
        by ``detail()`` in brackets, e.g. where the device got to, when given). Raises
        DeviceUnavailable ("``what`` aborted") once :attr:`_abort_wait` is set, and whatever
        ``done`` raises."""
        timeout = self.wait_timeout_s if timeout_s is None else timeout_s
        clock = self._clock
        deadline = clock.monotonic() + timeout
        while not done():
            if self._abort_wait.is_set():
                break
            if clock.monotonic() >= deadline:
                self._give_up()
                state = f" ({detail()})" if detail is not None else ""
                raise DeviceUnavailable(f"{what}: not done within {timeout:g} s{state}",
                                        device=self.label)
            clock.wait(self._abort_wait, self._poll_s)
        if self._abort_wait.is_set():
            raise DeviceUnavailable(f"{what} aborted", device=self.label)

    def _give_up(self) -> None:
        """What a :meth:`_wait` past its deadline does before it raises: nothing here (the mount
        stops its slew). Must not raise."""

    def _command_until(self, method: str, thing: str, read: Callable[[], S], target: S,
                       error: S, timeout_s: float | None) -> None:
        """Call the argument-less alpyca method ``method``, then :meth:`_wait` until ``read()``
        (the state of ``thing``, e.g. "shutter") is ``target``. Raises DeviceUnavailable when it
        reads ``error`` ("the ``thing`` reports Error") or past the deadline, and what
        :meth:`_call` raises."""
        self._call(getattr(self._dev, method), what=f"{method}()", context="setting")

        def reached() -> bool:
            state = read()
            if state is error:
                raise DeviceUnavailable(f"the {thing} reports Error", device=self.label)
            return state is target

        self._wait(f"{thing} {target.name.lower()}", reached, timeout_s)
