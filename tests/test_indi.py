"""The INDI driver against a real indiserver running the INDI simulators.

The simulators' pixels are not physical: these tests check the protocol (settings applied and
read back by the device, FITS header values, temperatures reached, frame sizes, errors and
reconnects), not physics. See tests/indi_server.py for how the server is isolated.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from calibd.drivers.clock import RealClock
from calibd.drivers.contracts import Camera
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import CoverState
from calibd.drivers.contracts import FilterWheel
from calibd.drivers.contracts import FlatPanel
from calibd.drivers.contracts import SafetyMonitor
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import ExposureTimeout
from calibd.drivers.errors import NotSupported
from calibd.drivers.errors import SettingRejected
from calibd.drivers.indi import IndiCamera
from calibd.drivers.indi import IndiFilterWheel
from calibd.drivers.indi import IndiFlatPanel
from calibd.drivers.indi import IndiSafetyMonitor
from calibd.drivers.indi import list_devices
from calibd.drivers.indi._conn import IndiConnection
from calibd.drivers.indi._state import PropSnapshot
from tests.camera_contract import CameraContract
from tests.camera_contract import ContractTarget
from tests.indi_server import CCD
from tests.indi_server import DOME
from tests.indi_server import FLIPFLAT
from tests.indi_server import INDI_POLL_MS
from tests.indi_server import PANEL
from tests.indi_server import TELESCOPE
from tests.indi_server import WEATHER
from tests.indi_server import WHEEL
from tests.indi_server import IndiTestServer
from tests.indi_server import running_indi_server
from tests.support import wait_for

pytestmark = [pytest.mark.indi, pytest.mark.timeout(120)]

POLL_MS = INDI_POLL_MS
GAIN, OFFSET = 30, 10


@pytest.fixture(scope="module")
def server(indi_server: IndiTestServer) -> IndiTestServer:
    """The session's indiserver."""
    return indi_server


@pytest.fixture
def fresh_server() -> Iterator[IndiTestServer]:
    """A server of its own, for tests that kill it."""
    with running_indi_server(polling_ms=POLL_MS) as srv:
        yield srv


def make_camera(srv: IndiTestServer) -> IndiCamera:
    return IndiCamera(host=srv.host, port=srv.port, device=CCD, polling_ms=POLL_MS)


@pytest.fixture(scope="module")
def camera(server: IndiTestServer) -> Iterator[IndiCamera]:
    cam = make_camera(server)
    cam.connect()
    yield cam
    cam.disconnect()


# ---------------------------------------------------------------------- the shared contract


class TestIndiContract(CameraContract):
    @pytest.fixture
    def target(self, camera: IndiCamera) -> ContractTarget:
        camera.connect()
        return ContractTarget(
            camera=camera,
            clock=RealClock(),
            gain=GAIN,
            offset=OFFSET,
            cool_to_c=-3.0,  # the simulator starts at 0 °C and cools 0.5 °C per 50 ms poll
            cool_tolerance_c=0.5,
            cool_timeout_s=20.0,
            short_exposure_s=0.1,
            long_exposure_s=20.0,
            abort_within_real_s=5.0,
        )


# ---------------------------------------------------------------------- camera details


def test_camera_satisfies_protocol_and_reads_limits(camera: IndiCamera) -> None:
    assert isinstance(camera, Camera)
    info = camera.info
    # From CCD_INFO and the number limits of CCD_EXPOSURE / CCD_GAIN / CCD_OFFSET.
    assert (info.width, info.height, info.bit_depth) == (1280, 1024, 16)
    assert info.pixel_size_um == pytest.approx(5.2, abs=0.01)
    assert info.min_exposure_s == pytest.approx(0.01)
    assert info.max_exposure_s == pytest.approx(3600)
    assert (info.gain_min, info.gain_max) == (0, 100)
    assert (info.offset_min, info.offset_max) == (0, 6000)
    assert info.binnings == (1, 2, 3, 4)
    assert info.has_cooler
    assert info.camera_id == f"indi:{CCD}"


def test_bias_uses_the_device_minimum(camera: IndiCamera, server: IndiTestServer) -> None:
    camera.configure(CaptureSettings(gain=GAIN, offset=OFFSET))
    frame = camera.expose(camera.info.min_exposure_s, dark=True)
    header = camera.last_header
    assert header["EXPTIME"] == pytest.approx(0.01)
    assert header["IMAGETYP"] == "Bias Frame"
    assert frame.exposure_s == pytest.approx(0.01)
    assert frame.extra_header["INDIFRAM"] == "BIAS"
    assert (
        server.getprop(f"{CCD}.CCD_FRAME_TYPE.FRAME_BIAS")[f"{CCD}.CCD_FRAME_TYPE.FRAME_BIAS"]
        == "On"
    )
    dark = camera.expose(0.05, dark=True)
    assert camera.last_header["IMAGETYP"] == "Dark Frame"
    assert dark.exposure_s == pytest.approx(0.05)


def test_dark_shorter_than_the_minimum_is_refused_before_sending(camera: IndiCamera) -> None:
    with pytest.raises(SettingRejected, match=r"shorter than the device minimum 0\.01 s"):
        camera.expose(0.005, dark=True)
    with pytest.raises(SettingRejected, match="longer than the device maximum"):
        camera.expose(4000.0, dark=True)
    assert camera.expose(0.02, dark=True).data.size > 0


def test_device_alert_on_exposure_is_exposure_failed_with_its_message(camera: IndiCamera) -> None:
    # Pretend the device allows 1 ms so the request reaches the simulator, which refuses it.
    real = camera.info
    camera._info = replace(real, min_exposure_s=0.001)
    try:
        with pytest.raises(ExposureFailed, match="out of bounds"):
            camera.expose(0.005, dark=True)
    finally:
        camera._info = real
    assert camera.expose(0.02, dark=True).data.size > 0


def test_device_refusal_is_setting_rejected_with_its_message(camera: IndiCamera) -> None:
    # Bypass the local range check: the simulator itself refuses with state Alert + a message,
    # and restores state Ok in the very next report. Sleeping after the send lets both reports
    # arrive before the wait starts (as a loaded machine does), so a look at the latest report
    # alone would take the refusal for an Ok.
    def send_then_lag(conn: IndiConnection, dev: str, snap: PropSnapshot) -> None:
        conn.send_number(dev, "CCD_GAIN", {"GAIN": 1000})
        time.sleep(1.0)

    latest = camera._require().prop(CCD, "CCD_GAIN")
    with pytest.raises(SettingRejected, match="Valid range is from 0 to 100"):
        camera._set("CCD_GAIN", "number", send_then_lag, {"device": CCD, "timeout_s": 5.0})
    after = camera._require().prop(CCD, "CCD_GAIN")
    assert latest is not None and after is not None
    assert after.state == "Ok" and after.alerted_since(latest.version)


def test_out_of_range_values_are_rejected_locally(camera: IndiCamera) -> None:
    with pytest.raises(SettingRejected, match="offset 7000"):
        camera.configure(CaptureSettings(gain=GAIN, offset=7000))
    with pytest.raises(SettingRejected, match="binning 5"):
        camera.configure(CaptureSettings(gain=GAIN, offset=OFFSET, binning=5))
    with pytest.raises(SettingRejected, match="read-out mode"):
        camera.configure(CaptureSettings(gain=GAIN, offset=OFFSET, readout_mode="fast"))
    with pytest.raises(SettingRejected, match=r"\[-50, 50\]"):
        camera.set_cooler(True, -80.0)


def test_an_unknown_set_option_is_a_type_error(camera: IndiCamera) -> None:
    with pytest.raises(TypeError, match="acept_busy"):
        camera._set_switch("CCD_COOLER", "COOLER_ON", acept_busy=True)  # type: ignore[call-arg]


def test_header_carries_applied_gain_exposure_and_binning(
    camera: IndiCamera, server: IndiTestServer
) -> None:
    applied = camera.configure(CaptureSettings(gain=42, offset=25, binning=2))
    assert applied == CaptureSettings(gain=42, offset=25, binning=2)
    # Read back from the device by another client, not from our own copy.
    props = server.getprop(f"{CCD}.*.*")
    assert float(props[f"{CCD}.CCD_GAIN.GAIN"]) == 42
    assert float(props[f"{CCD}.CCD_OFFSET.OFFSET"]) == 25
    assert float(props[f"{CCD}.CCD_BINNING.HOR_BIN"]) == 2
    assert float(props[f"{CCD}.CCD_FRAME.WIDTH"]) == 1280  # full frame, unbinned units
    frame = camera.expose(0.2, dark=True)
    header = camera.last_header
    assert header["GAIN"] == pytest.approx(42)
    assert header["EXPTIME"] == pytest.approx(0.2)
    assert (header["XBINNING"], header["YBINNING"]) == (2, 2)
    assert header["ROWORDER"] == "TOP-DOWN"
    assert header["INSTRUME"] == CCD
    assert frame.settings == CaptureSettings(gain=42, offset=25, binning=2)
    assert frame.shape == (512, 640)
    assert frame.data.dtype == np.uint16
    assert frame.start_utc.tzinfo is not None
    camera.configure(CaptureSettings(gain=GAIN, offset=OFFSET, binning=1))


def test_binning_four_and_back(camera: IndiCamera) -> None:
    camera.configure(CaptureSettings(gain=GAIN, offset=OFFSET, binning=4))
    assert camera.expose(0.05, dark=True).shape == (256, 320)
    camera.configure(CaptureSettings(gain=GAIN, offset=OFFSET, binning=1))
    assert camera.expose(0.05, dark=True).shape == (1024, 1280)


def test_compressed_images_are_decoded(camera: IndiCamera) -> None:
    # The driver turns CCD_COMPRESSION off at connect; a device that compresses anyway sends
    # fpack'd FITS (.fits.fz), which must neither crash the callback nor the decoder.
    camera._set_switch("CCD_COMPRESSION", "INDI_ENABLED")
    try:
        frame = camera.expose(0.05, dark=True)
    finally:
        camera._set_switch("CCD_COMPRESSION", "INDI_DISABLED")
    assert frame.shape == (1024, 1280)
    assert frame.data.dtype == np.uint16
    assert frame.exposure_s == pytest.approx(0.05)
    assert 0 < float(frame.data.mean()) < 1000  # offset + noise, as uncompressed


def test_flat_frames_use_frame_flat(camera: IndiCamera) -> None:
    frame = camera.expose(0.05, dark=False)
    assert not frame.dark
    assert camera.last_header["IMAGETYP"] == "Flat Frame"


def test_timeout_aborts_and_the_camera_stays_usable(camera: IndiCamera) -> None:
    started = time.monotonic()
    with pytest.raises(ExposureTimeout):
        camera.expose(3.0, dark=True, timeout_s=0.5)
    assert time.monotonic() - started < 2.0
    assert camera.expose(0.05, dark=True).data.size > 0


def test_an_exposure_another_client_stops_at_once_fails_without_waiting_out_the_deadline(
    camera: IndiCamera, server: IndiTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another client aborts the exposure as soon as it has started: the simulator reports
    # CCD_EXPOSURE Busy, then Idle. Holding the send until the Idle is in (as a loaded machine
    # may) leaves the wait only the Idle to see; it must still end the exposure after the Idle
    # grace, not run to the deadline. (The abort goes once the Busy is in: sent at once, it
    # can reach the driver before the request, over its own connection.)
    conn = camera._require()
    send = conn.send_number

    def send_then_stopped_elsewhere(device: str, name: str, values: Mapping[str, float]) -> None:
        before = conn.version()
        send(device, name, values)
        if name == "CCD_EXPOSURE":
            assert conn.wait_until(lambda st: _busy_since(st.prop(CCD, "CCD_EXPOSURE"), before),
                                   5.0)
            server.setprop(f"{CCD}.CCD_ABORT_EXPOSURE.ABORT=On")
            assert conn.wait_until(lambda st: _idle_since(st.prop(CCD, "CCD_EXPOSURE"), before),
                                   5.0)

    monkeypatch.setattr(conn, "send_number", send_then_stopped_elsewhere)
    started = time.monotonic()
    with pytest.raises(ExposureFailed, match="ended without an image"):
        camera.expose(5.0, dark=True, timeout_s=6.0)
    assert time.monotonic() - started < 5.0
    monkeypatch.undo()
    assert camera.expose(0.05, dark=True).data.size > 0


def test_a_late_idle_from_an_earlier_abort_does_not_end_a_slow_starting_exposure(
    camera: IndiCamera, server: IndiTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Idle that answers an abort (ours at a timeout, say) can arrive after the next
    # exposure's request, and a driver whose StartExposure takes seconds (a sensor flush, a
    # DSLR) reports that exposure Busy only later. That Idle follows no Busy since the request:
    # it must not end the exposure after the Idle grace.
    conn = camera._require()
    send = conn.send_number
    starter: list[threading.Timer] = []

    def late_idle_then_slow_start(device: str, name: str, values: Mapping[str, float]) -> None:
        if name != "CCD_EXPOSURE":
            send(device, name, values)
            return
        before = conn.version()
        server.setprop(f"{CCD}.CCD_ABORT_EXPOSURE.ABORT=On")
        assert conn.wait_until(lambda st: _idle_since(st.prop(CCD, "CCD_EXPOSURE"), before),
                               5.0)
        starter.append(threading.Timer(3.0, send, (device, name, values)))
        starter[0].start()

    monkeypatch.setattr(conn, "send_number", late_idle_then_slow_start)
    started = time.monotonic()
    try:
        frame = camera.expose(0.5, dark=True, timeout_s=10.0)
    finally:
        for timer in starter:
            timer.join()
    assert frame.data.size > 0 and time.monotonic() - started > 3.0


def _idle_since(snap: PropSnapshot | None, version: int) -> bool | None:
    return True if snap is not None and snap.version > version and snap.state == "Idle" else None


def _busy_since(snap: PropSnapshot | None, version: int) -> bool | None:
    return True if snap is not None and snap.busy_since(version) else None


def test_callback_errors_are_contained(camera: IndiCamera, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = camera._conn
    assert conn is not None

    def broken(*args: object) -> None:
        raise RuntimeError("boom in a callback")

    with monkeypatch.context() as patch:
        patch.setattr(conn, "_cb_message", broken)
        before = conn.read(lambda st: st.callback_errors)
        camera.expose(0.05, dark=True)  # the simulator sends messages with every exposure
        assert conn.read(lambda st: st.callback_errors) > before
    # The listener thread survived: the next exposure still arrives.
    assert camera.expose(0.05, dark=True).data.size > 0


def test_connect_to_an_unknown_device_names_what_is_offered(server: IndiTestServer) -> None:

    cam = IndiCamera(host=server.host, port=server.port, device="Nope", connect_timeout_s=1.0)
    with pytest.raises(DeviceUnavailable, match=r"offered: .*CCD Simulator"):
        cam.connect()
    cam.disconnect()


# ---------------------------------------------------------------------- other devices


def test_list_devices(server: IndiTestServer) -> None:

    found = {(d.kind, d.name) for d in list_devices(server.host, server.port, timeout_s=5)}
    assert {
        ("camera", CCD),
        ("filterwheel", WHEEL),
        ("flatpanel", PANEL),
        ("weather", WEATHER),
    } <= found


def test_list_mount_and_dome(indi_mount_server: IndiTestServer) -> None:
    srv = indi_mount_server
    found = {(d.kind, d.name) for d in list_devices(srv.host, srv.port, timeout_s=5)}
    assert {("mount", TELESCOPE), ("dome", DOME)} <= found


def test_list_devices_on_a_dead_port_is_unavailable() -> None:

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeviceUnavailable):
        list_devices("127.0.0.1", port, timeout_s=2)


def test_local_socket_connection(server: IndiTestServer) -> None:

    def run() -> tuple[set[str], tuple[int, int]]:
        names = {d.name for d in list_devices(socket_path=server.inner_socket_path)}
        cam = IndiCamera(device=CCD, socket_path=server.inner_socket_path)
        try:
            cam.connect()
            return names, (cam.info.width, cam.info.height)
        finally:
            cam.disconnect()

    try:
        names, size = server.in_namespace(run)
    except PermissionError as err:
        pytest.skip(f"cannot join the server's network namespace: {err}")
    assert CCD in names
    assert size == (1280, 1024)


def test_filter_wheel(server: IndiTestServer) -> None:

    wheel = IndiFilterWheel(host=server.host, port=server.port, device=WHEEL)
    wheel.connect()
    try:
        assert isinstance(wheel, FilterWheel)
        assert wheel.names == ("Red", "Green", "Blue", "H_Alpha", "SII", "OIII", "LPR", "Luminance")
        wheel.select("H_Alpha")
        assert wheel.position() == "H_Alpha"
        assert server.getprop(f"{WHEEL}.FILTER_SLOT.FILTER_SLOT_VALUE") == {
            f"{WHEEL}.FILTER_SLOT.FILTER_SLOT_VALUE": "4"
        }
        wheel.select("Red")
        assert wheel.position() == "Red"
        with pytest.raises(SettingRejected, match="no filter named 'Halpha'"):
            wheel.select("Halpha")
    finally:
        wheel.disconnect()


def test_flat_panel(server: IndiTestServer) -> None:

    panel = IndiFlatPanel(host=server.host, port=server.port, device=PANEL)
    panel.connect()
    try:
        assert isinstance(panel, FlatPanel)
        assert panel.max_brightness == 255
        assert not panel.has_cover
        assert panel.cover_state() is CoverState.NOT_PRESENT
        panel.light(100)
        assert panel.brightness() == 100
        props = server.getprop(f"{PANEL}.*.*")
        assert props[f"{PANEL}.FLAT_LIGHT_CONTROL.FLAT_LIGHT_ON"] == "On"
        assert float(props[f"{PANEL}.FLAT_LIGHT_INTENSITY.FLAT_LIGHT_INTENSITY_VALUE"]) == 100
        panel.off()
        assert panel.brightness() == 0
        assert server.getprop(f"{PANEL}.FLAT_LIGHT_CONTROL.FLAT_LIGHT_ON") == {
            f"{PANEL}.FLAT_LIGHT_CONTROL.FLAT_LIGHT_ON": "Off"
        }
        with pytest.raises(SettingRejected):
            panel.light(256)
        with pytest.raises(NotSupported):
            panel.open_cover()
    finally:
        panel.disconnect()


@pytest.fixture(scope="module")
def flipflat_server() -> Iterator[IndiTestServer]:
    with running_indi_server(drivers=("indi_flipflat",), polling_ms=100) as srv:
        yield srv


def test_dust_cap_and_light_of_a_simulated_flip_flat(flipflat_server: IndiTestServer) -> None:
    srv = flipflat_server
    panel = IndiFlatPanel(
        host=srv.host, port=srv.port, device=FLIPFLAT, dust_cap_device=FLIPFLAT, polling_ms=100
    )
    panel.connect()
    try:
        assert panel.has_cover
        assert panel.cover_state() in (CoverState.OPEN, CoverState.CLOSED)
        panel.close_cover(timeout_s=15)
        assert panel.cover_state() is CoverState.CLOSED
        assert srv.getprop(f"{FLIPFLAT}.CAP_PARK.PARK") == {f"{FLIPFLAT}.CAP_PARK.PARK": "On"}
        panel.light(120)
        assert panel.brightness() == 120
        props = srv.getprop(f"{FLIPFLAT}.*.*")
        assert props[f"{FLIPFLAT}.FLAT_LIGHT_CONTROL.FLAT_LIGHT_ON"] == "On"
        assert float(props[f"{FLIPFLAT}.FLAT_LIGHT_INTENSITY.FLAT_LIGHT_INTENSITY_VALUE"]) == 120
        panel.off()
        assert panel.brightness() == 0
        panel.open_cover(timeout_s=15)
        assert panel.cover_state() is CoverState.OPEN
    finally:
        panel.disconnect()


def _flipflat_disconnected(srv: IndiTestServer) -> None:
    """Disconnect the Flip Flat from a second client and wait until the server says so."""
    connect = f"{FLIPFLAT}.CONNECTION.CONNECT"
    srv.setprop(f"{FLIPFLAT}.CONNECTION.DISCONNECT=On")
    wait_for(lambda: srv.getprop(connect) == {connect: "Off"}, 10.0, "the Flip Flat disconnected")


def _flipflat_speaks_once(srv: IndiTestServer, monkeypatch: pytest.MonkeyPatch,
                          when: Callable[[PropSnapshot], bool]) -> list[IndiConnection]:
    """Once a connection wait of this process returns the Flip Flat's CONNECTION snapshot that
    ``when`` accepts, make the device say something (CONFIG_SAVE from a second client) and wait
    until the waiting connection has all it said. Returns the list that gets that connection."""
    wait_until = IndiConnection.wait_until
    spoke: list[IndiConnection] = []

    def then_spoken(conn: IndiConnection, predicate: Any, timeout_s: float,
                    **kwargs: Any) -> Any:
        result = wait_until(conn, predicate, timeout_s, **kwargs)
        if (isinstance(result, PropSnapshot) and result.device == FLIPFLAT
                and result.name == "CONNECTION" and when(result) and not spoke):
            spoke.append(conn)
            after = conn.version()
            srv.setprop(f"{FLIPFLAT}.CONFIG_PROCESS.CONFIG_SAVE=On")
            assert wait_until(conn, lambda st: _saved(st.messages_since(FLIPFLAT, after)), 10.0)
        return result

    monkeypatch.setattr(IndiConnection, "wait_until", then_spoken)
    return spoke


def _saved(messages: list[str]) -> bool | None:
    """True once the last of the driver's two CONFIG_SAVE messages ("Saving device
    configuration...", "Device configuration saved.") is among ``messages``."""
    return True if any("configuration saved" in m for m in messages) else None


def test_a_refused_connect_names_the_devices_reason_not_a_later_message(
    flipflat_server: IndiTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """indi_flipflat without its simulation mode and without hardware refuses CONNECT: the
    message "[ERROR] Failed to connect to port (/dev/ttyUSB0) ...", then CONNECTION Alert. The
    error must name that message even when the device has said something else since (forced
    here: it speaks after the Alert is in, before the connect looks at what it said)."""
    srv = flipflat_server
    _flipflat_disconnected(srv)
    srv.setprop(f"{FLIPFLAT}.SIMULATION.DISABLE=On")
    panel = IndiFlatPanel(host=srv.host, port=srv.port, device=FLIPFLAT, connect_timeout_s=10.0)
    spoke = _flipflat_speaks_once(srv, monkeypatch, lambda snap: snap.state == "Alert")
    try:
        with pytest.raises(DeviceUnavailable, match=r"did not connect: .*Failed to connect"):
            panel.connect()
        assert spoke
    finally:
        monkeypatch.undo()
        panel.disconnect()
        srv.setprop(f"{FLIPFLAT}.SIMULATION.ENABLE=On")


def test_a_connect_without_answer_names_no_older_message(
    flipflat_server: IndiTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device that does not answer CONNECT within the connect timeout (its driver stopped
    here with SIGSTOP) is reported as such, not by something it said before the request
    (forced here: it speaks once found, before it is asked to connect)."""
    srv = flipflat_server
    _flipflat_disconnected(srv)
    panel = IndiFlatPanel(host=srv.host, port=srv.port, device=FLIPFLAT, connect_timeout_s=2.0)
    spoke = _flipflat_speaks_once(srv, monkeypatch, lambda snap: not snap.is_on("CONNECT"))
    send_switch = IndiConnection.send_switch
    stopped: list[int] = []

    def stopped_first(conn: IndiConnection, device: str, name: str,
                      states: Mapping[str, bool]) -> None:
        pid = srv.driver_pid("indi_flipflat")
        assert pid is not None and spoke
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
        send_switch(conn, device, name, states)

    monkeypatch.setattr(IndiConnection, "send_switch", stopped_first)
    try:
        with pytest.raises(DeviceUnavailable, match=r"did not connect: no answer within 2 s$"):
            panel.connect()
    finally:
        monkeypatch.undo()
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        panel.disconnect()


def test_weather_safety_follows_the_station(server: IndiTestServer) -> None:

    weather = IndiSafetyMonitor(host=server.host, port=server.port, device=WEATHER)
    weather.connect()
    try:
        assert isinstance(weather, SafetyMonitor)
        assert weather.is_safe()
        assert weather.cloud_cover_pct() is None  # the simulator reports no cloud cover
        server.setprop(f"{WEATHER}.WEATHER_CONTROL.Precip=10")
        server.setprop(f"{WEATHER}.WEATHER_REFRESH.REFRESH=On")
        wait_for(lambda: not weather.is_safe(), 5.0, "rain to make the weather unsafe")
        server.setprop(f"{WEATHER}.WEATHER_CONTROL.Precip=0")
        server.setprop(f"{WEATHER}.WEATHER_REFRESH.REFRESH=On")
        wait_for(weather.is_safe, 5.0, "the weather to turn safe again")
    finally:
        weather.disconnect()


# ---------------------------------------------------------------------- reconnects


def _expose_in_thread(cam: IndiCamera, exposure_s: float) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(cam.expose(exposure_s, dark=True))
        except BaseException as err:  # collected for the assertion
            outcome.append(err)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return worker, outcome


def _assert_reapplied(cam: IndiCamera, srv: IndiTestServer, setpoint: float) -> None:
    props = srv.getprop(f"{CCD}.*.*")
    assert float(props[f"{CCD}.CCD_GAIN.GAIN"]) == 42
    assert float(props[f"{CCD}.CCD_OFFSET.OFFSET"]) == 20
    assert float(props[f"{CCD}.CCD_BINNING.HOR_BIN"]) == 2
    assert float(props[f"{CCD}.POLLING_PERIOD.PERIOD_MS"]) == POLL_MS
    assert cam.cooler_state().on  # CCD_COOLER as the device reports it (indi_getprop omits it)
    wait_for(
        lambda: abs(cam.cooler_state().temperature_c - setpoint) <= 0.5,
        10.0,
        "the re-sent set-point to be reached",
    )
    assert cam.cooler_state().setpoint_c == setpoint
    frame = cam.expose(0.1, dark=True)
    assert frame.shape == (512, 640)
    assert frame.settings == CaptureSettings(gain=42, offset=20, binning=2)


def test_server_killed_during_exposure_then_reconnect(fresh_server: IndiTestServer) -> None:

    srv = fresh_server
    cam = make_camera(srv)
    wheel = IndiFilterWheel(host=srv.host, port=srv.port, device=WHEEL)
    cam.connect()
    wheel.connect()
    try:
        cam.configure(CaptureSettings(gain=42, offset=20, binning=2))
        cam.set_cooler(True, -4.0)
        wait_for(lambda: cam.cooler_state().temperature_c <= -3.5, 10.0, "cooling to -4 °C")
        old_pid = srv.server_pid

        worker, outcome = _expose_in_thread(cam, 5.0)
        time.sleep(0.5)
        killed_at = time.monotonic()
        srv.kill()
        worker.join(10.0)
        assert not worker.is_alive(), "expose() did not return after the server died"
        assert time.monotonic() - killed_at < 3.0
        assert outcome and isinstance(outcome[0], DeviceUnavailable | ExposureFailed), outcome
        assert not cam.connected

        started = time.monotonic()
        with pytest.raises(DeviceUnavailable):
            cam.connect()  # nothing to reconnect to yet: fails, within its timeout
        assert time.monotonic() - started < cam.connect_timeout_s + 2

        srv.start()
        assert srv.server_pid != old_pid
        cam.connect()
        _assert_reapplied(cam, srv, -4.0)
        # Another device on the same (re-opened) connection recovers with its own connect().
        with pytest.raises(DeviceUnavailable):
            wheel.position()
        wheel.connect()
        wheel.select("Blue")
        assert wheel.position() == "Blue"
    finally:
        wheel.disconnect()
        cam.disconnect()


def test_camera_driver_restarted_during_exposure_then_reconnect(
    fresh_server: IndiTestServer,
) -> None:
    srv = fresh_server
    cam = make_camera(srv)
    cam.connect()
    try:
        cam.configure(CaptureSettings(gain=42, offset=20, binning=2))
        cam.set_cooler(True, -4.0)
        old = srv.driver_pid("indi_simulator_ccd")
        worker, outcome = _expose_in_thread(cam, 5.0)
        time.sleep(0.5)
        srv.kill_driver("indi_simulator_ccd")
        worker.join(10.0)
        assert not worker.is_alive()
        assert outcome and isinstance(outcome[0], DeviceUnavailable), outcome
        # indiserver restarts the driver; the new instance starts disconnected with defaults.
        wait_for(lambda: srv.driver_pid("indi_simulator_ccd") not in (None, old), 10.0, "restart")
        wait_for(lambda: _try_connect(cam), 15.0, "the camera to reconnect")
        _assert_reapplied(cam, srv, -4.0)
    finally:
        cam.disconnect()


def _try_connect(cam: IndiCamera) -> bool:
    try:
        cam.connect()
    except DeviceUnavailable:
        return False
    return True
