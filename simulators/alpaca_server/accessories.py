"""Alpaca FilterWheel and CoverCalibrator over the simulated filter wheel and flat panel.

The simulators block for their moves and warm-up (in clock time); here those calls run in
background threads and the HTTP calls return at once, as on real Alpaca devices: Position reads -1
while the wheel moves, CoverState reads Moving until the cover is Open/Closed, CalibratorState reads
NotReady until the light is stable. Connection state is kept here (the simulated accessories do not
expose theirs) and passed on to the simulators.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from calibd.drivers.alpaca.panel import CalibratorStatus
from calibd.drivers.clock import Clock
from calibd.drivers.contracts import CoverState
from calibd.drivers.errors import DeviceError
from calibd.simulators.accessories import (
    SimulatedFilterWheel,
    SimulatedFlatPanel,
    SimulatedSafetyMonitor,
)
from calibd.simulators.alpaca_server.device import AlpacaDevice
from calibd.simulators.alpaca_server.protocol import (
    Params,
    invalid_value,
    not_implemented,
)

log = logging.getLogger(__name__)


def _background(name: str, work: Callable[[], None]) -> None:
    threading.Thread(target=work, name=name, daemon=True).start()


class Switchable(AlpacaDevice):
    """A device whose connection flag lives here (the simulated accessories do not report
    theirs); ``_device``, when set, gets connect()/disconnect() too."""

    _device: SimulatedFilterWheel | SimulatedFlatPanel | SimulatedSafetyMonitor | None = None
    _connected = False

    def _is_connected(self) -> bool:
        return self._connected

    def _connect(self) -> None:
        if self._device is not None:
            self._device.connect()
        self._connected = True

    def _disconnect(self) -> None:
        self._connected = False
        if self._device is not None:
            self._device.disconnect()


class FilterWheelDevice(Switchable):
    """Alpaca FilterWheel (interface version 3)."""

    device_type = "filterwheel"
    type_name = "FilterWheel"
    interface_version = 3

    def __init__(
        self, wheel: SimulatedFilterWheel, clock: Clock, *, unique_id: str, number: int = 0
    ) -> None:
        super().__init__(
            number,
            name="calibd simulated filter wheel",
            description=f"{len(wheel.names)}-slot filter wheel (simulated)",
            unique_id=unique_id,
            clock=clock,
        )
        self._device = self._wheel = wheel
        self._moving = False
        self._target = 0

    def _device_state(self) -> Sequence[tuple[str, Any]]:
        return (("Position", self._position()),)

    def get_names(self, p: Params) -> list[str]:
        return list(self._wheel.names)

    def get_focusoffsets(self, p: Params) -> list[int]:
        return [0] * len(self._wheel.names)

    def _position(self) -> int:
        current = None if self._moving else self._wheel.position()
        return -1 if current is None else self._wheel.names.index(current)

    def get_position(self, p: Params) -> int:
        """The slot in the beam, -1 while moving."""
        return self._position()

    def put_position(self, p: Params) -> None:
        """Move to slot ``Position`` (0-based) and return at once. A new target given while
        moving is taken over when the current move ends."""
        slot, names = p.integer("Position"), self._wheel.names
        if not 0 <= slot < len(names):
            raise invalid_value(f"filter position {slot} outside 0..{len(names) - 1}")
        with self._lock:
            self._target = slot
            if self._moving or self._wheel.position() == names[slot]:
                return
            self._moving = True
        _background(f"alpaca-{self.label}-move", self._move)

    def _move(self) -> None:
        names = self._wheel.names
        while True:
            with self._lock:
                target = self._target
            try:
                self._wheel.select(names[target])
            except DeviceError as err:
                log.warning("%s: move to %s failed: %s", self.label, names[target], err)
            with self._lock:
                if self._target == target or not self._connected:
                    self._moving = False
                    return


class CoverCalibratorDevice(Switchable):
    """Alpaca CoverCalibrator (interface version 2): a flat panel with a motorised cover.

    HaltCover is NotImplemented: the simulated cover cannot stop mid-move (the specification's
    answer for such covers).
    """

    device_type = "covercalibrator"
    type_name = "CoverCalibrator"
    interface_version = 2
    attributes: ClassVar[Mapping[str, str]] = {
        "maxbrightness": "_panel.max_brightness",
        "covermoving": "_cover_moving",
    }

    def __init__(
        self, panel: SimulatedFlatPanel, clock: Clock, *, unique_id: str, number: int = 0
    ) -> None:
        super().__init__(
            number,
            name="calibd simulated flat panel",
            description="flat panel with a motorised cover (simulated flip-flat)",
            unique_id=unique_id,
            clock=clock,
        )
        self._device = self._panel = panel
        self._calibrator = CalibratorStatus.OFF
        self._light_generation = 0  # a newer CalibratorOn/Off supersedes a settling one
        self._cover_moving = False
        self._cover_target = CoverState.CLOSED

    def _device_state(self) -> Sequence[tuple[str, Any]]:
        return (
            ("Brightness", self._panel.brightness()),
            ("CalibratorState", int(self._calibrator)),
            ("CalibratorChanging", self._calibrator == CalibratorStatus.NOT_READY),
            ("CoverState", self._cover_state()),
            ("CoverMoving", self._cover_moving),
        )

    # -- calibrator ------------------------------------------------------------------------------

    def get_brightness(self, p: Params) -> int:
        return self._panel.brightness()

    def get_calibratorstate(self, p: Params) -> int:
        return int(self._calibrator)

    def get_calibratorchanging(self, p: Params) -> bool:
        return self._calibrator == CalibratorStatus.NOT_READY

    def put_calibratoron(self, p: Params) -> None:
        """Switch on at ``Brightness`` (0..MaxBrightness); NotReady until stable, then Ready."""
        brightness, top = p.integer("Brightness"), self._panel.max_brightness
        if not 0 <= brightness <= top:
            raise invalid_value(f"brightness {brightness} outside 0..{top}")
        with self._lock:
            self._light_generation += 1
            generation = self._light_generation
            self._calibrator = CalibratorStatus.NOT_READY
        _background(f"alpaca-{self.label}-light", lambda: self._light(brightness, generation))

    def _light(self, brightness: int, generation: int) -> None:
        try:
            self._panel.light(brightness)
            outcome = CalibratorStatus.READY
        except DeviceError as err:
            log.warning("%s: light at %d failed: %s", self.label, brightness, err)
            outcome = CalibratorStatus.ERROR
        with self._lock:
            if generation == self._light_generation:
                self._calibrator = outcome

    def put_calibratoroff(self, p: Params) -> None:
        with self._lock:
            self._light_generation += 1
            self._panel.off()
            self._calibrator = CalibratorStatus.OFF

    # -- cover -----------------------------------------------------------------------------------

    def _cover_state(self) -> int:
        if self._cover_moving:
            return CoverState.MOVING.value
        return self._panel.cover_state().value

    def get_coverstate(self, p: Params) -> int:
        return self._cover_state()

    def put_opencover(self, p: Params) -> None:
        self._start_cover(CoverState.OPEN)

    def put_closecover(self, p: Params) -> None:
        self._start_cover(CoverState.CLOSED)

    def put_haltcover(self, p: Params) -> None:
        raise not_implemented("the simulated cover cannot be halted mid-move")

    def _start_cover(self, target: CoverState) -> None:
        """Move the cover to ``target`` and return at once; a new target given while moving is
        taken over when the current move ends."""
        if not self._panel.has_cover:
            raise not_implemented("this flat panel has no cover")
        with self._lock:
            self._cover_target = target
            if self._cover_moving or self._panel.cover_state() is target:
                return
            self._cover_moving = True
        _background(f"alpaca-{self.label}-cover", self._move_cover)

    def _move_cover(self) -> None:
        while True:
            with self._lock:
                target = self._cover_target
            try:
                if target is CoverState.OPEN:
                    self._panel.open_cover()
                else:
                    self._panel.close_cover()
            except DeviceError as err:
                log.warning("%s: cover move to %s failed: %s", self.label, target.name, err)
            with self._lock:
                if self._cover_target is target or not self._connected:
                    self._cover_moving = False
                    return
