"""ASCOM Alpaca filter wheel driver (:class:`drivers.contracts.FilterWheel`)."""

from __future__ import annotations

import logging

from calibd.drivers.alpaca._mover import AlpacaMover
from calibd.drivers.errors import SettingRejected

logger = logging.getLogger(__name__)


class AlpacaFilterWheel(AlpacaMover):
    """A filter wheel behind an Alpaca server: ``Names`` in slot order, ``Position`` (-1 while
    moving). ``wait_timeout_s`` (clock seconds, default 60) bounds :meth:`select` unless it gets
    its own."""

    _ascom_type = "FilterWheel"
    _poll_s = 0.1
    _names: tuple[str, ...] = ()  # read at connect

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
        (unreachable, or not in place within ``timeout_s`` / ``wait_timeout_s``).
        """
        self._require()
        if name not in self._names:
            raise SettingRejected(
                f"no filter {name!r} (the wheel has {self._names})", device=self.label
            )
        slot = self._names.index(name)
        if int(self._get("Position")) == slot:
            return
        self._set("Position", slot)

        current = -1

        def in_place() -> bool:
            nonlocal current
            current = int(self._get("Position"))
            if 0 <= current != slot:
                logger.debug("%s: wheel at slot %d while moving to %d", self.label, current, slot)
            return current == slot

        self._wait(f"move to filter {name!r}", in_place, timeout_s,
                   detail=lambda: f"Position {current}")
        logger.info("%s: filter %s in place", self.label, name)
