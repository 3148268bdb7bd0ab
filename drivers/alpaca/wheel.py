"""ASCOM Alpaca filter wheel driver (:class:`drivers.contracts.FilterWheel`)."""

from __future__ import annotations

import logging
from typing import Unpack

from calibd.drivers.alpaca._base import AlpacaDevice
from calibd.drivers.alpaca._base import Endpoint
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import SettingRejected

logger = logging.getLogger(__name__)

_POLL_S = 0.1


class AlpacaFilterWheel(AlpacaDevice):
    """A filter wheel behind an Alpaca server: ``Names`` in slot order, ``Position`` (-1 while
    moving). ``move_timeout_s`` (clock seconds) bounds :meth:`select` unless it gets its own."""

    _ascom_type = "FilterWheel"

    def __init__(
        self,
        *,
        move_timeout_s: float = 60.0,
        **endpoint: Unpack[Endpoint],
    ) -> None:
        super().__init__(**endpoint)
        self.move_timeout_s = move_timeout_s
        self._names: tuple[str, ...] = ()

    def _after_connect(self) -> None:
        self._names = tuple(str(n) for n in self._get("Names"))

    @property
    def names(self) -> tuple[str, ...]:
        """Slot names in slot order (read at connect; empty before)."""
        return self._names

    def position(self) -> str | None:
        """Name of the filter in the beam; None while moving or unknown. One request; raises
        DeviceUnavailable."""
        self._require()
        slot = int(self._get("Position"))
        if 0 <= slot < len(self._names):
            return self._names[slot]
        return None

    def select(self, name: str, *, timeout_s: float | None = None) -> None:
        """Move to the first slot called ``name`` and block until Position reports it.

        Raises SettingRejected (unknown name, or the device refuses the slot), DeviceUnavailable
        (unreachable, or not in place within ``timeout_s`` / ``move_timeout_s``).
        """
        self._require()
        if name not in self._names:
            raise SettingRejected(
                f"no filter {name!r} (the wheel has {self._names})", device=self.label
            )
        slot = self._names.index(name)
        clock = self._clock
        deadline = clock.monotonic() + (timeout_s if timeout_s is not None else self.move_timeout_s)
        if int(self._get("Position")) == slot:
            return
        self._set("Position", slot)
        while True:
            current = int(self._get("Position"))
            if current == slot:
                logger.info("%s: filter %s in place", self.label, name)
                return
            if current >= 0:
                logger.debug("%s: wheel at slot %d while moving to %d", self.label, current, slot)
            if clock.monotonic() >= deadline:
                raise DeviceUnavailable(
                    f"filter {name!r} not in place by the deadline (Position {current})",
                    device=self.label,
                )
            clock.sleep(_POLL_S)
