"""Alpaca FilterWheel and CoverCalibrator over the simulated filter wheel and flat panel.

The simulators block for their moves and warm-up (in clock time); here those calls run in
background threads and the HTTP calls return at once, as on real Alpaca devices: Position reads -1
while the wheel moves, CoverState reads Moving until the cover is Open/Closed, CalibratorState reads
NotReady until the light is stable. Connection state is kept by
:class:`~.device.SimulatorDevice` (the simulated accessories do not expose theirs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar

from calibd.drivers.alpaca.panel import CalibratorStatus
from calibd.drivers.contracts import CoverState
from calibd.drivers.errors import DeviceError
from calibd.simulators.accessories import SimulatedFilterWheel
from calibd.simulators.accessories import SimulatedFlatPanel
from calibd.simulators.alpaca_server.device import SimulatorDevice
from calibd.simulators.alpaca_server.device import in_background
from calibd.simulators.alpaca_server.protocol import Params
from calibd.simulators.alpaca_server.protocol import invalid_value
from calibd.simulators.alpaca_server.protocol import not_implemented

log = logging.getLogger(__name__)


class FilterWheelDevice(SimulatorDevice[SimulatedFilterWheel]):
    """Alpaca FilterWheel (interface version 3)."""

    type_name = "FilterWheel"
    interface_version = 3
    sim_name = "calibd simulated filter wheel"
    _target = 0  # the slot asked for last

    def _description(self, sim: SimulatedFilterWheel) -> str:
        return f"{len(sim.names)}-slot filter wheel (simulated)"

    def _device_state(self) -> Sequence[tuple[str, Any]]:
        return (("Position", self._position()),)

    def get_names(self, p: Params) -> list[str]:
        return list(self.sim.names)

    def get_focusoffsets(self, p: Params) -> list[int]:
        return [0] * len(self.sim.names)

    def _position(self) -> int:
        current = None if self._moving else self.sim.position()
        return -1 if current is None else self.sim.names.index(current)

    def get_position(self, p: Params) -> int:
        """The slot in the beam, -1 while moving."""
        return self._position()

    def put_position(self, p: Params) -> None:
        """Move to slot ``Position`` (0-based) and return at once. A new target given while
        moving is taken over when the current move ends."""
        slot, names = p.integer("Position"), self.sim.names
        if not 0 <= slot < len(names):
            raise invalid_value(f"filter position {slot} outside 0..{len(names) - 1}")
        with self._lock:
            self._target = slot
            if self._moving or self.sim.position() == names[slot]:
                return
            self._moving = True
        in_background(f"alpaca-{self.label}-move", self._move)

    def _move(self) -> None:
        names = self.sim.names
        while True:
            with self._lock:
                target = self._target
            try:
                self.sim.select(names[target])
            except DeviceError as err:
                log.warning("%s: move to %s failed: %s", self.label, names[target], err)
            with self._lock:
                if self._target == target or not self._connected:
                    self._moving = False
                    return


class CoverCalibratorDevice(SimulatorDevice[SimulatedFlatPanel]):
    """Alpaca CoverCalibrator (interface version 2): a flat panel with a motorised cover.

    HaltCover is NotImplemented: the simulated cover cannot stop mid-move (the specification's
    answer for such covers).
    """

    type_name = "CoverCalibrator"
    interface_version = 2
    sim_name = "calibd simulated flat panel"
    sim_description = "flat panel with a motorised cover (simulated flip-flat)"
    attributes: ClassVar[Mapping[str, str]] = {
        "maxbrightness": "sim.max_brightness",
        "covermoving": "_cover_moving",
    }
    _calibrator = CalibratorStatus.OFF
    _light_generation = 0  # a newer CalibratorOn/Off supersedes a settling one
    _cover_moving = False
    _cover_target = CoverState.CLOSED

    def _device_state(self) -> Sequence[tuple[str, Any]]:
        return (
            ("Brightness", self.sim.brightness()),
            ("CalibratorState", int(self._calibrator)),
            ("CalibratorChanging", self._calibrator == CalibratorStatus.NOT_READY),
            ("CoverState", self._cover_state()),
            ("CoverMoving", self._cover_moving),
        )

    # -- calibrator ------------------------------------------------------------------------------

    def get_brightness(self, p: Params) -> int:
        return self.sim.brightness()

    def get_calibratorstate(self, p: Params) -> int:
        return int(self._calibrator)

    def get_calibratorchanging(self, p: Params) -> bool:
        return self._calibrator == CalibratorStatus.NOT_READY

    def put_calibratoron(self, p: Params) -> None:
        """Switch on at ``Brightness`` (0..MaxBrightness); NotReady until stable, then Ready."""
        brightness, top = p.integer("Brightness"), self.sim.max_brightness
        if not 0 <= brightness <= top:
            raise invalid_value(f"brightness {brightness} outside 0..{top}")
        with self._lock:
            self._light_generation += 1
            generation = self._light_generation
            self._calibrator = CalibratorStatus.NOT_READY
        in_background(f"alpaca-{self.label}-light", lambda: self._light(brightness, generation))

    def _light(self, brightness: int, generation: int) -> None:
        try:
            self.sim.light(brightness)
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
            self.sim.off()
            self._calibrator = CalibratorStatus.OFF

    # -- cover -----------------------------------------------------------------------------------

    def _cover_state(self) -> int:
        if self._cover_moving:
            return CoverState.MOVING.value
        return self.sim.cover_state().value

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
        if not self.sim.has_cover:
            raise not_implemented("this flat panel has no cover")
        with self._lock:
            self._cover_target = target
            if self._cover_moving or self.sim.cover_state() is target:
                return
            self._cover_moving = True
        in_background(f"alpaca-{self.label}-cover", self._move_cover)

    def _move_cover(self) -> None:
        while True:
            with self._lock:
                target = self._cover_target
            try:
                if target is CoverState.OPEN:
                    self.sim.open_cover()
                else:
                    self.sim.close_cover()
            except DeviceError as err:
                log.warning("%s: cover move to %s failed: %s", self.label, target.name, err)
            with self._lock:
                if self._cover_target is target or not self._connected:
                    self._cover_moving = False
                    return
