"""The shared accessory contract suite: filter wheel, flat panel (cover calibrator), safety monitor.

Every accessory driver (the simulator, INDI, Alpaca against our server and alpaca-simulators) runs
these same tests, like :mod:`tests.camera_contract` for cameras. A transport's test class mixes in
:class:`FilterWheelContract`, :class:`FlatPanelContract` and :class:`SafetyMonitorContract` and
provides the fixtures ``wheel_target``, ``panel_target`` and ``safety_target`` around *connected*
devices. The tests check the protocols of :mod:`drivers.contracts` — names and moves, the
brightness range, a cover or NotSupported, safe and unsafe, errors of a disconnected device, and
that every device is usable again after an error or a reconnect — not a device's own extras.

Waits are bounded: device calls get the target's ``timeout_s`` (clock seconds), a change of
weather must reach the driver within ``settle_s`` real seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from calibd.drivers.contracts import CoverState
from calibd.drivers.contracts import FilterWheel
from calibd.drivers.contracts import FlatPanel
from calibd.drivers.contracts import SafetyMonitor
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import NotSupported
from calibd.drivers.errors import SettingRejected
from tests.support import wait_for


@dataclass
class WheelTarget:
    """A connected filter wheel with at least two slots."""

    wheel: FilterWheel
    timeout_s: float = 60.0  # clock seconds for one move


@dataclass
class PanelTarget:
    """A connected flat panel, light off."""

    panel: FlatPanel
    timeout_s: float = 60.0  # clock seconds for the light to settle or the cover to move


@dataclass
class SafetyTarget:
    """A connected safety monitor that says safe, and a side channel that changes the weather:
    ``make_unsafe(True)`` turns it bad (cloudy, raining), ``make_unsafe(False)`` good again."""

    monitor: SafetyMonitor
    make_unsafe: Callable[[bool], None]
    reports_cloud_cover: bool
    settle_s: float = 10.0  # real seconds for a change of weather to reach the driver


class FilterWheelContract:
    """Mix into a test class that defines a ``wheel_target`` fixture."""

    def test_slots_have_unique_names(self, wheel_target: WheelTarget) -> None:
        wheel = wheel_target.wheel
        assert isinstance(wheel, FilterWheel)
        names = wheel.names
        assert isinstance(names, tuple) and len(names) >= 2
        assert all(isinstance(n, str) and n for n in names)
        assert len(set(names)) == len(names)

    def test_connect_is_idempotent(self, wheel_target: WheelTarget) -> None:
        wheel = wheel_target.wheel
        names = wheel.names
        wheel.connect()
        assert wheel.names == names
        assert wheel.position() in names

    def test_select_moves_and_position_reports_the_slot(self, wheel_target: WheelTarget) -> None:
        wheel, timeout = wheel_target.wheel, wheel_target.timeout_s
        first, last = wheel.names[0], wheel.names[-1]
        for name in (last, first, first):  # the last one is already in place
            wheel.select(name, timeout_s=timeout)
            assert wheel.position() == name

    def test_an_unknown_filter_is_rejected_and_the_wheel_stays_usable(
            self, wheel_target: WheelTarget) -> None:
        wheel, timeout = wheel_target.wheel, wheel_target.timeout_s
        wheel.select(wheel.names[0], timeout_s=timeout)
        unknown = "no-such-filter"
        assert unknown not in wheel.names
        with pytest.raises(SettingRejected, match=unknown):
            wheel.select(unknown, timeout_s=timeout)
        assert wheel.position() == wheel.names[0]
        wheel.select(wheel.names[1], timeout_s=timeout)
        assert wheel.position() == wheel.names[1]

    def test_a_disconnected_wheel_refuses_then_reconnects(self, wheel_target: WheelTarget) -> None:
        wheel, timeout = wheel_target.wheel, wheel_target.timeout_s
        names = wheel.names
        wheel.disconnect()
        wheel.disconnect()  # never raises
        with pytest.raises(DeviceUnavailable):
            wheel.select(names[0], timeout_s=timeout)
        with pytest.raises(DeviceUnavailable):
            wheel.position()
        wheel.connect()
        assert wheel.names == names
        wheel.select(names[-1], timeout_s=timeout)
        assert wheel.position() == names[-1]


class FlatPanelContract:
    """Mix into a test class that defines a ``panel_target`` fixture."""

    def test_range_and_cover_are_reported(self, panel_target: PanelTarget) -> None:
        panel = panel_target.panel
        assert isinstance(panel, FlatPanel)
        assert panel.max_brightness >= 1
        assert (panel.cover_state() is CoverState.NOT_PRESENT) == (not panel.has_cover)

    def test_light_holds_its_brightness_until_off(self, panel_target: PanelTarget) -> None:
        panel, timeout = panel_target.panel, panel_target.timeout_s
        top = panel.max_brightness
        try:
            for level in sorted({max(1, top // 2), top}):
                panel.light(level, timeout_s=timeout)
                assert panel.brightness() == level
        finally:
            panel.off(timeout_s=timeout)
        assert panel.brightness() == 0
        panel.off(timeout_s=timeout)  # already off
        assert panel.brightness() == 0

    def test_brightness_above_the_maximum_is_rejected(self, panel_target: PanelTarget) -> None:
        panel, timeout = panel_target.panel, panel_target.timeout_s
        with pytest.raises(SettingRejected):
            panel.light(panel.max_brightness + 1, timeout_s=timeout)
        try:
            panel.light(1, timeout_s=timeout)  # still usable
            assert panel.brightness() == 1
        finally:
            panel.off(timeout_s=timeout)

    def test_the_cover_moves_or_is_not_supported(self, panel_target: PanelTarget) -> None:
        panel, timeout = panel_target.panel, panel_target.timeout_s
        if not panel.has_cover:
            with pytest.raises(NotSupported):
                panel.open_cover(timeout_s=timeout)
            with pytest.raises(NotSupported):
                panel.close_cover(timeout_s=timeout)
            assert panel.cover_state() is CoverState.NOT_PRESENT
            return
        panel.close_cover(timeout_s=timeout)
        assert panel.cover_state() is CoverState.CLOSED
        panel.open_cover(timeout_s=timeout)
        assert panel.cover_state() is CoverState.OPEN
        panel.close_cover(timeout_s=timeout)
        assert panel.cover_state() is CoverState.CLOSED

    def test_a_disconnected_panel_refuses_then_reconnects(self, panel_target: PanelTarget) -> None:
        panel, timeout = panel_target.panel, panel_target.timeout_s
        panel.disconnect()
        panel.disconnect()  # never raises
        with pytest.raises(DeviceUnavailable):
            panel.light(1, timeout_s=timeout)
        with pytest.raises(DeviceUnavailable):
            panel.brightness()
        panel.connect()
        panel.off(timeout_s=timeout)
        assert panel.brightness() == 0


class SafetyMonitorContract:
    """Mix into a test class that defines a ``safety_target`` fixture."""

    def test_clear_weather_is_safe(self, safety_target: SafetyTarget) -> None:
        monitor = safety_target.monitor
        assert isinstance(monitor, SafetyMonitor)
        assert monitor.is_safe() is True
        cover = monitor.cloud_cover_pct()
        if safety_target.reports_cloud_cover:
            assert cover is not None and 0.0 <= cover <= 100.0
        else:
            assert cover is None

    def test_bad_weather_is_unsafe_until_it_clears(self, safety_target: SafetyTarget) -> None:
        monitor, settle = safety_target.monitor, safety_target.settle_s
        clear_cover = monitor.cloud_cover_pct()
        try:
            safety_target.make_unsafe(True)
            wait_for(lambda: not monitor.is_safe(), settle, "the weather to turn unsafe")
            cloudy_cover = monitor.cloud_cover_pct()
            if safety_target.reports_cloud_cover:
                assert clear_cover is not None and cloudy_cover is not None
                assert 0.0 <= cloudy_cover <= 100.0 and cloudy_cover > clear_cover
        finally:
            safety_target.make_unsafe(False)
        wait_for(monitor.is_safe, settle, "the weather to turn safe again")

    def test_a_disconnected_monitor_refuses_then_reconnects(
            self, safety_target: SafetyTarget) -> None:
        monitor = safety_target.monitor
        monitor.disconnect()
        monitor.disconnect()  # never raises
        with pytest.raises(DeviceUnavailable):
            monitor.is_safe()
        monitor.connect()
        assert monitor.is_safe() is True
