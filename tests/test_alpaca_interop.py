"""The Alpaca driver against someone else's server (alpaca-simulators), plus its transport-level
parts (ImageBytes, download deadline, discovery) against small in-test servers.

alpaca-simulators deviates from the Alpaca specification in ways the driver copes with (see
``drivers/alpaca/_base.py``, :class:`Quirk`): abort does not stop the background exposure, Gain
reads back index + 1 in Gains-list mode, CloudCover is a fraction, bad binning is ValueNotSet
(0x402) and "camera busy" is 0x40C, there is no management API or UDP discovery, and no call ever
answers NotConnected.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calibd.drivers.alpaca import AlpacaCamera
from calibd.drivers.alpaca import AlpacaFilterWheel
from calibd.drivers.alpaca import AlpacaFlatPanel
from calibd.drivers.alpaca import AlpacaSafetyMonitor
from calibd.drivers.alpaca import Quirk
from calibd.drivers.alpaca import device_name
from calibd.drivers.alpaca import discover
from calibd.drivers.alpaca import list_devices
from calibd.drivers.alpaca import parse_device_name
from calibd.drivers.alpaca._base import translate
from calibd.drivers.alpaca.camera import bayer_pattern
from calibd.drivers.alpaca.camera import parse_alpaca_time
from calibd.drivers.alpaca.imagebytes import ImageDownload
from calibd.drivers.alpaca.imagebytes import decode_imagebytes
from calibd.drivers.alpaca.imagebytes import decode_json_imagearray
from calibd.drivers.clock import RealClock
from calibd.drivers.contracts import Camera
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import CoverState
from calibd.drivers.contracts import FilterWheel
from calibd.drivers.contracts import FlatPanel
from calibd.drivers.contracts import SafetyMonitor as SafetyMonitorProtocol
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import ExposureTimeout
from calibd.drivers.errors import NotSupported
from calibd.drivers.errors import SettingRejected
from tests.alpaca_servers import AlpacaSimServer
from tests.alpaca_servers import require_alpaca
from tests.alpaca_servers import stalling_proxy
from tests.camera_contract import CameraContract
from tests.camera_contract import ContractTarget

pytestmark = pytest.mark.alpaca

GAIN = 1  # index into the simulator's Gains list
OFFSET = 1


# --------------------------------------------------------------------------------------------
# Fixtures: one alpaca-simulators server for the session, a second one for the kill tests.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim(alpaca_simulators: AlpacaSimServer) -> AlpacaSimServer:
    return alpaca_simulators


@pytest.fixture
def fault_sim(tmp_path: Path) -> Iterator[AlpacaSimServer]:
    """A server of its own, for tests that kill it."""
    require_alpaca()
    server = AlpacaSimServer(tmp_path / "fault-sim")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sim_camera(alpaca_simulators: AlpacaSimServer) -> Iterator[AlpacaCamera]:
    sim = alpaca_simulators
    cam = AlpacaCamera(host=sim.host, port=sim.port, device_number=0)
    cam.connect()
    try:
        yield cam
    finally:
        cam.disconnect()


@pytest.fixture
def camera(sim_camera: AlpacaCamera) -> AlpacaCamera:
    sim_camera.connect()  # idempotent; reconnects if an earlier test broke the connection
    sim_camera.configure(CaptureSettings(gain=GAIN, offset=OFFSET))
    return sim_camera


def is_connected(device: AlpacaCamera) -> bool:
    """The flag, read through a call so a type checker does not pin it between two asserts."""
    return device.connected


# --------------------------------------------------------------------------------------------
# The shared camera contract against alpaca-simulators
# --------------------------------------------------------------------------------------------


class TestAlpacaSimulatorsContract(CameraContract):
    """Every contract test holds for alpaca-simulators once the driver copes with its quirks;
    none is overridden."""

    @pytest.fixture
    def target(self, camera: AlpacaCamera) -> ContractTarget:
        return ContractTarget(
            camera=camera,
            clock=RealClock(),
            gain=GAIN,
            offset=OFFSET,
            cool_to_c=-10.0,  # the simulator jumps to the set-point (cooling_time: 0)
            cool_timeout_s=10.0,
            short_exposure_s=0.1,
            # Long enough to abort in the middle. The simulator keeps exposing after the abort,
            # so the contract's follow-up frame waits out the rest of it (~1.7 s).
            long_exposure_s=2.0,
            abort_within_real_s=5.0,
        )


# --------------------------------------------------------------------------------------------
# Camera specifics
# --------------------------------------------------------------------------------------------


def test_server_is_recognised_and_quirks_applied(camera: AlpacaCamera) -> None:
    assert isinstance(camera, Camera)
    assert camera.server_kind == "alpaca-simulators"
    assert Quirk.ABORT_KEEPS_EXPOSING in camera.quirks
    info = camera.info
    assert info.gain_names == ("0", "100", "200", "300", "400")
    assert (info.gain_min, info.gain_max) == (0, 4)
    assert (info.offset_min, info.offset_max) == (0, 2)
    assert info.readout_modes == ("Fast", "Normal")
    assert info.binnings == (1, 2, 3, 4)
    assert info.has_cooler


@pytest.mark.parametrize("binning", [1, 2])
def test_bias_and_dark_orientation_matches_numx_numy(
    camera: AlpacaCamera, sim: AlpacaSimServer, binning: int
) -> None:
    applied = camera.configure(CaptureSettings(gain=GAIN, offset=OFFSET, binning=binning))
    assert applied.binning == binning
    numx = sim.http("GET", "/api/v1/camera/0/numx")["Value"]
    numy = sim.http("GET", "/api/v1/camera/0/numy")["Value"]
    assert (numx, numy) == (640 // binning, 480 // binning)
    bias = camera.expose(camera.info.min_exposure_s, dark=True)
    dark = camera.expose(0.3, dark=True)
    for frame in (bias, dark):
        assert frame.data.dtype == np.uint16 and frame.data.flags.c_contiguous
        assert frame.shape == (numy, numx)  # [row, column]: rows are Y
        assert frame.dark and frame.settings.binning == binning
        assert frame.data.mean() > 0
    assert dark.exposure_s == pytest.approx(0.3)
    assert bias.exposure_s == pytest.approx(0.001)
    assert dark.start_utc > bias.start_utc


def test_light_frame_uses_the_local_star_catalogue(
    camera: AlpacaCamera, sim: AlpacaSimServer
) -> None:
    frame = camera.expose(0.2, dark=False)
    assert frame.shape == (480, 640) and not frame.dark
    log = sim.log_path.read_text(errors="replace")
    found = [int(n) for n in re.findall(r"Found (\d+) sources", log)]
    assert found and found[-1] > 0, "the simulator found no stars in the local catalogue"
    assert "Traceback" not in log


def test_out_of_range_settings_carry_the_server_message(camera: AlpacaCamera) -> None:
    with pytest.raises(SettingRejected, match=r"Gain index out of range \(0 to 4\)"):
        camera.configure(CaptureSettings(gain=7, offset=OFFSET))
    with pytest.raises(SettingRejected, match=r"Offset index out of range"):
        camera.configure(CaptureSettings(gain=GAIN, offset=5))
    with pytest.raises(SettingRejected, match=r"out of range"):
        camera.set_cooler(True, 150.0)
    with pytest.raises(SettingRejected, match=r"Exposure duration too long"):
        camera.expose(4000.0, dark=True)
    with pytest.raises(SettingRejected, match=r"read-out mode 'Turbo'"):
        camera.configure(CaptureSettings(gain=GAIN, offset=OFFSET, readout_mode="Turbo"))
    # Still usable.
    assert camera.configure(CaptureSettings(gain=2, offset=0, readout_mode="Normal")) == (
        CaptureSettings(gain=2, offset=0, binning=1, readout_mode="Normal")
    )
    assert camera.expose(0.01, dark=True).settings.gain == 2


def test_cooler_state_reports_power_and_heatsink(camera: AlpacaCamera) -> None:
    camera.set_cooler(True, -5.0)
    state = camera.cooler_state()
    assert state.on and state.setpoint_c == pytest.approx(-5.0)
    assert state.temperature_c == pytest.approx(-5.0, abs=0.2)
    assert state.power_pct is not None and 0 <= state.power_pct <= 100
    assert state.heatsink_c is not None
    frame = camera.expose(0.01, dark=True)
    assert frame.setpoint_c == pytest.approx(-5.0)
    assert frame.temp_start_c == pytest.approx(-5.0, abs=0.2)


def test_disconnected_device_is_a_clear_error_then_reconnects(
    camera: AlpacaCamera, sim: AlpacaSimServer
) -> None:
    camera.configure(CaptureSettings(gain=3, offset=2, binning=2))
    # Another client disconnects the camera behind our back.
    sim.http("PUT", "/api/v1/camera/0/connected", "Connected=false")
    with pytest.raises(DeviceUnavailable, match="not connected"):
        camera.expose(0.01, dark=True)
    assert not is_connected(camera)
    camera.connect()
    assert is_connected(camera)
    frame = camera.expose(0.01, dark=True)
    assert frame.settings == CaptureSettings(gain=3, offset=2, binning=2, readout_mode="Fast")


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


def test_server_killed_mid_exposure_then_restarted(fault_sim: AlpacaSimServer) -> None:
    cam = AlpacaCamera(host=fault_sim.host, port=fault_sim.port, timeout_s=2.0)
    cam.connect()
    wanted = CaptureSettings(gain=2, offset=0, binning=2, readout_mode="Normal")
    cam.configure(wanted)
    cam.set_cooler(True, -7.5)
    outcome: list[BaseException] = []
    finished = threading.Event()

    def run() -> None:
        try:
            cam.expose(5.0, dark=True)
        except BaseException as err:
            outcome.append(err)
        finished.set()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    time.sleep(0.8)
    killed = time.monotonic()
    fault_sim.kill()
    assert finished.wait(cam.default_timeout_s(5.0)), "expose() outlived its deadline"
    noticed_s = time.monotonic() - killed
    assert outcome and isinstance(outcome[0], DeviceUnavailable), outcome
    assert noticed_s < 3.0, f"the dead server was noticed only after {noticed_s:.1f} s"
    assert not cam.connected
    with pytest.raises(DeviceUnavailable):
        cam.connect()  # server still down: a clear error, no hang

    fault_sim.restart()
    cam.connect()  # re-applies the settings and the cooler the fresh server forgot
    frame = cam.expose(0.05, dark=True)
    assert frame.settings == wanted
    assert frame.shape == (240, 320)
    assert cam.cooler_state().setpoint_c == pytest.approx(-7.5)
    cam.disconnect()


def test_stalled_download_times_out_while_other_devices_answer(sim: AlpacaSimServer) -> None:
    with stalling_proxy(sim.host, sim.port) as proxy:
        cam = AlpacaCamera(
            host=sim.host, port=proxy.port, device_number=1, timeout_s=2.0, download_timeout_s=1.5
        )
        other_cam = AlpacaCamera(host=sim.host, port=sim.port, device_number=0)
        wheel = AlpacaFilterWheel(host=sim.host, port=sim.port)
        for device in (cam, other_cam, wheel):
            device.connect()
        cam.configure(CaptureSettings(gain=GAIN, offset=OFFSET))
        other_cam.configure(CaptureSettings(gain=GAIN, offset=OFFSET))

        latencies: list[float] = []
        other_frames: list[tuple[int, int]] = []
        stop = threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                wheel.position()
                latencies.append(time.monotonic() - t0)
                time.sleep(0.05)

        def keep_exposing() -> None:
            while not stop.is_set():
                other_frames.append(other_cam.expose(0.05, dark=True).shape)

        threads = [threading.Thread(target=f, daemon=True) for f in (keep_asking, keep_exposing)]
        proxy.mode = "stall-image"
        t0 = time.monotonic()
        for thread in threads:
            thread.start()
        with pytest.raises(ExposureTimeout, match="download"):
            cam.expose(0.1, dark=True)
        elapsed = time.monotonic() - t0
        stop.set()
        for thread in threads:
            thread.join(10)
        assert proxy.stalled == 1
        assert 1.5 <= elapsed < 3.5, f"stalled download ended after {elapsed:.2f} s"
        assert len(latencies) >= 10 and max(latencies) < 1.0
        assert len(other_frames) >= 2 and set(other_frames) == {(480, 640)}

        proxy.mode = "pass"  # the retake succeeds
        frame = cam.expose(0.1, dark=True)
        assert frame.shape == (240, 320)
        for device in (cam, other_cam, wheel):
            device.disconnect()


def test_unanswered_property_calls_time_out_at_timeout_s(sim: AlpacaSimServer) -> None:
    with stalling_proxy(sim.host, sim.port) as proxy:
        proxy.mode = "stall-all"
        cam = AlpacaCamera(host=sim.host, port=proxy.port, timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(DeviceUnavailable, match="timed out"):
            cam.connect()
        assert time.monotonic() - t0 < 2.5  # fingerprint + InterfaceVersion, 0.5 s each


def test_abort_during_a_long_exposure_and_the_next_frame_is_clean(camera: AlpacaCamera) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            camera.expose(1.5, dark=True)
        except BaseException as err:
            errors.append(err)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    time.sleep(0.3)
    camera.abort()
    worker.join(3)
    assert errors and isinstance(errors[0], ExposureFailed)
    # The simulator's exposure keeps running and will set ImageReady with its 1.5 s frame; the
    # driver waits it out, so the next frame is the 0.02 s one.
    t0 = time.monotonic()
    frame = camera.expose(0.02, dark=True)
    assert frame.exposure_s == pytest.approx(0.02)
    assert time.monotonic() - t0 > 0.8  # it did wait for the abandoned exposure
    camera.abort()  # idle: a no-op


# --------------------------------------------------------------------------------------------
# Filter wheel, cover calibrator, safety monitor, cloud cover
# --------------------------------------------------------------------------------------------


def test_filter_wheel(sim: AlpacaSimServer) -> None:
    wheel = AlpacaFilterWheel(host=sim.host, port=sim.port)
    assert isinstance(wheel, FilterWheel)
    wheel.connect()
    assert wheel.names == ("L", "R", "G", "B", "Ha")
    wheel.select("Ha")
    assert wheel.position() == "Ha"
    wheel.select("L", timeout_s=5)
    assert wheel.position() == "L"
    with pytest.raises(SettingRejected, match="OIII"):
        wheel.select("OIII")
    wheel.disconnect()


def test_cover_calibrator(sim: AlpacaSimServer) -> None:
    panel = AlpacaFlatPanel(host=sim.host, port=sim.port)
    assert isinstance(panel, FlatPanel)
    panel.connect()
    assert panel.max_brightness == 255 and panel.has_cover
    panel.close_cover()
    assert panel.cover_state() is CoverState.CLOSED
    panel.open_cover(timeout_s=5)
    assert panel.cover_state() is CoverState.OPEN
    panel.light(128)
    assert panel.brightness() == 128
    with pytest.raises(SettingRejected, match=r"Brightness out of range \(0-255\)"):
        panel.light(300)
    panel.off()
    assert panel.brightness() == 0
    panel.close_cover()
    panel.disconnect()


def test_safety_monitor_and_cloud_cover(sim: AlpacaSimServer) -> None:
    safety = AlpacaSafetyMonitor(host=sim.host, port=sim.port, conditions_device_number=0)
    assert isinstance(safety, SafetyMonitorProtocol)
    safety.connect()
    assert safety.is_safe()
    assert safety.cloud_cover_pct() == pytest.approx(20.0)  # the server says 0.2 (a fraction)
    try:
        sim.http("PUT", "/api/v1/safetymonitor/0/issafe", "IsSafe=false")  # simulator extension
        sim.http("PUT", "/api/v1/observingconditions/0/cloudcover", "CloudCover=0.9")
        assert not safety.is_safe()
        assert safety.cloud_cover_pct() == pytest.approx(90.0)
    finally:
        sim.http("PUT", "/api/v1/safetymonitor/0/issafe", "IsSafe=true")
        sim.http("PUT", "/api/v1/observingconditions/0/cloudcover", "CloudCover=0.2")
    assert AlpacaSafetyMonitor(host=sim.host, port=sim.port).cloud_cover_pct() is None
    safety.disconnect()


def test_unknown_device_number_is_a_clear_connect_error(sim: AlpacaSimServer) -> None:
    with pytest.raises(DeviceUnavailable, match=r"camera:7 not found"):
        AlpacaCamera(host=sim.host, port=sim.port, device_number=7).connect()
    with pytest.raises(DeviceUnavailable):
        AlpacaCamera(host="127.0.0.1", port=sim.port + 1 if sim.port < 65535 else 1).connect()
    cam = AlpacaCamera(host=sim.host, port=sim.port)
    with pytest.raises(DeviceUnavailable):
        _ = cam.info
    with pytest.raises(DeviceUnavailable):
        cam.expose(0.1, dark=True)


# --------------------------------------------------------------------------------------------
# Discovery and device listing
# --------------------------------------------------------------------------------------------


_REAL_SOCKET = socket.socket  # the responder's own replies are not the driver's traffic


class _UdpResponder:
    """Answers ``alpacadiscovery1`` on 127.0.0.1 with ``{"AlpacaPort": alpaca_port}``."""

    def __init__(self, alpaca_port: int) -> None:
        self.sock = _REAL_SOCKET(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.alpaca_port = alpaca_port
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(1024)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append((data, sender))
            if data == b"alpacadiscovery1":
                self.sock.sendto(json.dumps({"AlpacaPort": self.alpaca_port}).encode(), sender)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@contextlib.contextmanager
def udp_responder(alpaca_port: int) -> Iterator[_UdpResponder]:
    responder = _UdpResponder(alpaca_port)
    try:
        yield responder
    finally:
        responder.close()


MANAGEMENT = {
    "/management/apiversions": [1],
    "/management/v1/description": {
        "ServerName": "stub server",
        "Manufacturer": "calibd tests",
        "ManufacturerVersion": "1.0",
        "Location": "here",
    },
    "/management/v1/configureddevices": [
        {"DeviceName": "Cam", "DeviceType": "Camera", "DeviceNumber": 0, "UniqueID": "cam-uid"},
        {
            "DeviceName": "Panel",
            "DeviceType": "CoverCalibrator",
            "DeviceNumber": 2,
            "UniqueID": "panel-uid",
        },
        {"DeviceName": "Dome", "DeviceType": "Dome", "DeviceNumber": 0, "UniqueID": "d"},
    ],
}


@contextlib.contextmanager
def http_stub(routes: dict[str, Any]) -> Iterator[int]:
    """Tiny HTTP server: GET path (without query) -> Alpaca JSON answer with that Value, or a
    callable(handler) that writes the answer itself."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            route = routes.get(self.path.split("?")[0])
            if callable(route):
                route(self)
                return
            if route is None:
                body, status = b'{"detail":"Not Found"}', 404
            else:
                body = json.dumps(
                    {
                        "Value": route,
                        "ErrorNumber": 0,
                        "ErrorMessage": "",
                        "ClientTransactionID": 0,
                        "ServerTransactionID": 1,
                    }
                ).encode()
                status = 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


class _RecordingSocket(socket.socket):
    """socket.socket that records where it sends datagrams and opens connections."""

    log: list[tuple[str, Any]] = []  # noqa: RUF012 - reset per test

    def sendto(self, data: Any, *args: Any) -> int:
        _RecordingSocket.log.append(("sendto", args[-1]))
        return super().sendto(data, *args)

    def connect(self, address: Any) -> None:
        _RecordingSocket.log.append(("connect", address))
        super().connect(address)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    _RecordingSocket.log = []
    monkeypatch.setattr(socket, "socket", _RecordingSocket)
    return _RecordingSocket.log


def test_discovery_sends_only_where_told(recorded: list[tuple[str, Any]]) -> None:
    with http_stub(MANAGEMENT) as mgmt_port, udp_responder(mgmt_port) as responder:
        servers = discover(["127.0.0.1"], port=responder.port, timeout_s=0.5)
    assert [(s.host, s.port) for s in servers] == [("127.0.0.1", mgmt_port)]
    server = servers[0]
    assert server.has_management_api and server.server_name == "stub server"
    assert server.api_versions == (1,)
    assert [(d.kind, d.name) for d in server.devices] == [
        ("camera", f"alpaca://127.0.0.1:{mgmt_port}/camera/0"),
        ("flatpanel", f"alpaca://127.0.0.1:{mgmt_port}/covercalibrator/2"),
        ("dome", f"alpaca://127.0.0.1:{mgmt_port}/dome/0"),
    ]
    assert "cam-uid" in server.devices[0].details
    assert {data for data, _ in responder.received} == {b"alpacadiscovery1"}
    assert len(responder.received) == 2  # two attempts
    sends = {address for kind, address in recorded if kind == "sendto"}
    connects = {address for kind, address in recorded if kind == "connect"}
    assert sends == {("127.0.0.1", responder.port)}
    assert connects == {("127.0.0.1", mgmt_port)}


def test_discovery_on_an_interface_uses_only_it(recorded: list[tuple[str, Any]]) -> None:
    if not Path("/sys/class/net/lo").exists():
        pytest.skip("no loopback interface named lo")
    with udp_responder(12345) as responder:
        servers = discover(interface="lo", port=responder.port, timeout_s=0.4, describe=False)
    assert [(s.host, s.port) for s in servers] == [("127.0.0.1", 12345)]
    assert {address for kind, address in recorded if kind == "sendto"} == {
        ("127.0.0.1", responder.port)
    }
    assert not [r for r in recorded if r[0] == "connect"]


def test_discovery_refuses_to_guess_where_to_send() -> None:
    with pytest.raises(ValueError, match="only sends where told"):
        discover()
    with pytest.raises(ValueError, match="interface"):
        discover(interface="no-such-if0")


def test_discovery_and_listing_of_a_server_without_management_api(sim: AlpacaSimServer) -> None:
    with udp_responder(sim.port) as responder:
        servers = discover(["127.0.0.1"], port=responder.port, timeout_s=0.5)
    assert len(servers) == 1 and not servers[0].has_management_api
    names = {d.name: d.kind for d in servers[0].devices}
    base = f"alpaca://127.0.0.1:{sim.port}"
    assert names == {
        f"{base}/camera/0": "camera",
        f"{base}/camera/1": "camera",
        f"{base}/filterwheel/0": "filterwheel",
        f"{base}/covercalibrator/0": "flatpanel",
        f"{base}/safetymonitor/0": "safety",
        f"{base}/observingconditions/0": "weather",
        f"{base}/dome/0": "dome",
    }
    assert {d.name for d in list_devices(sim.host, sim.port)} == set(names)
    with pytest.raises(DeviceUnavailable):
        list_devices(sim.host, sim.port, probe=False)


def test_listing_an_unreachable_server_is_device_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(DeviceUnavailable):
            list_devices("127.0.0.1", port, timeout_s=1.0)


def test_device_names_round_trip() -> None:
    assert parse_device_name(device_name("10.0.0.5", 11111, "Camera", 3)) == (
        "10.0.0.5",
        11111,
        "camera",
        3,
    )
    assert parse_device_name(device_name("fe80::1", 80, "filterwheel", 0)) == (
        "fe80::1",
        80,
        "filterwheel",
        0,
    )
    with pytest.raises(ValueError):
        parse_device_name("indi://localhost:7624/CCD")


# --------------------------------------------------------------------------------------------
# ImageBytes, JSON fallback, download deadline (in-test servers; no alpaca-simulators)
# --------------------------------------------------------------------------------------------

ROWS, COLS = 3, 5
GRADIENT = (np.arange(ROWS)[:, None] * 100 + np.arange(COLS)[None, :]).astype(np.uint16)


def imagebytes(
    xy: np.ndarray, *, transmission: int = 8, error: int = 0, message: bytes = b""
) -> bytes:
    """An ImageBytes body for an [x][y] array (last index fastest), as the spec lays it out."""
    dims = xy.shape if not error else (0, 0)
    header = struct.pack("<11i", 1, error, 7, 9, 44, 2, transmission, 2, dims[0], dims[1], 0)
    return header + (message if error else xy.astype(xy.dtype.newbyteorder("<")).tobytes())


def test_imagebytes_is_turned_into_row_column() -> None:
    xy = np.ascontiguousarray(GRADIENT.T)  # what the server holds: [x][y]
    out = decode_imagebytes(imagebytes(xy))
    assert out.shape == (ROWS, COLS) and out.dtype == np.uint16
    assert out[2, 4] == 204 and out[0, 1] == 1 and out[1, 0] == 100
    np.testing.assert_array_equal(out, GRADIENT)
    as_int32 = decode_imagebytes(imagebytes(xy.astype(np.int32), transmission=2))
    np.testing.assert_array_equal(as_int32, GRADIENT)
    with pytest.raises(ExposureFailed, match="Camera not ready"):
        decode_imagebytes(imagebytes(xy, error=0x40B, message=b"Camera not ready"))
    with pytest.raises(ExposureFailed, match="do not fit 16 bits"):
        decode_imagebytes(imagebytes(np.full((2, 2), -5, dtype=np.int32), transmission=2))
    with pytest.raises(ExposureFailed, match="payload"):
        decode_imagebytes(imagebytes(xy)[:-2])


def test_json_imagearray_is_turned_into_row_column() -> None:
    doc = {"Type": 2, "Rank": 2, "Value": GRADIENT.T.tolist(), "ErrorNumber": 0}
    np.testing.assert_array_equal(decode_json_imagearray(doc), GRADIENT)
    with pytest.raises(ExposureFailed, match="boom"):
        decode_json_imagearray({"ErrorNumber": 0x500, "ErrorMessage": "boom"})


def _serve_bytes(
    body: bytes, content_type: str, *, trickle_s: float = 0.0, stall_after: int | None = None
) -> Any:
    def route(handler: BaseHTTPRequestHandler) -> None:
        with contextlib.suppress(OSError):  # the client may hang up mid-body
            _write(handler)

    def _write(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if stall_after is not None:
            handler.wfile.write(body[:stall_after])
            handler.wfile.flush()
            time.sleep(30)
            return
        for i in range(len(body)):
            handler.wfile.write(body[i : i + 1])
            handler.wfile.flush()
            if trickle_s:
                time.sleep(trickle_s)
            else:
                handler.wfile.write(body[i + 1 :])
                return

    return route


def _download(port: int, deadline_s: float) -> ImageDownload:
    return ImageDownload(
        "127.0.0.1",
        port,
        "/api/v1/camera/0/imagearray",
        {"ClientID": "1"},
        deadline=time.monotonic() + deadline_s,
        connect_timeout_s=1.0,
        device="stub",
    )


def test_download_imagebytes_and_json_fallback() -> None:
    xy = np.ascontiguousarray(GRADIENT.T)
    doc = json.dumps({"Type": 2, "Rank": 2, "Value": xy.tolist(), "ErrorNumber": 0}).encode()
    routes = {
        "/api/v1/camera/0/imagearray": _serve_bytes(imagebytes(xy), "application/imagebytes"),
        "/api/v1/camera/1/imagearray": _serve_bytes(doc, "application/json"),
    }
    with http_stub(routes) as port:
        np.testing.assert_array_equal(_download(port, 5).run(), GRADIENT)
        json_download = ImageDownload(
            "127.0.0.1",
            port,
            "/api/v1/camera/1/imagearray",
            {},
            deadline=time.monotonic() + 5,
            connect_timeout_s=1.0,
            device="stub",
        )
        np.testing.assert_array_equal(json_download.run(), GRADIENT)
        assert json_download.content_type == "application/json"


def test_download_deadline_holds_against_a_trickle_and_cancel_is_prompt() -> None:
    big = imagebytes(np.zeros((64, 64), dtype=np.uint16))
    routes = {
        "/api/v1/camera/0/imagearray": _serve_bytes(big, "application/imagebytes", trickle_s=0.01),
        "/api/v1/camera/1/imagearray": _serve_bytes(big, "application/imagebytes", stall_after=100),
    }
    with http_stub(routes) as port:
        t0 = time.monotonic()
        with pytest.raises(ExposureTimeout):
            _download(port, 0.6).run()  # every read gets a byte, the total still ends it
        assert 0.5 < time.monotonic() - t0 < 1.5

        stalled = ImageDownload(
            "127.0.0.1",
            port,
            "/api/v1/camera/1/imagearray",
            {},
            deadline=time.monotonic() + 20,
            connect_timeout_s=1.0,
            device="stub",
        )
        threading.Timer(0.3, stalled.cancel).start()
        t0 = time.monotonic()
        with pytest.raises(ExposureFailed, match="aborted"):
            stalled.run()
        assert time.monotonic() - t0 < 1.5


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def test_error_translation_table() -> None:
    require_alpaca(server=False)
    from alpaca import exceptions as ae

    def cls(err: BaseException, context: Any = "query") -> type:
        return type(translate(err, context=context, what="X", device="d"))

    assert cls(ae.InvalidValueException("bad")) is SettingRejected
    assert cls(ae.ValueNotSetException("Invalid binning value: 9"), "setting") is SettingRejected
    assert cls(ae.NotImplementedException("no")) is NotSupported
    assert cls(ae.NotConnectedException("no")) is DeviceUnavailable
    assert cls(ae.ActionNotImplementedException("Camera is not idle"), "exposure") is (
        ExposureFailed
    )
    assert cls(ae.DriverException(0x500, "hw"), "exposure") is ExposureFailed
    assert cls(ae.DriverException(0x500, "hw")) is DeviceUnavailable
    assert cls(ae.AlpacaRequestException(400, "Device or method not found")) is NotSupported
    assert cls(ae.AlpacaRequestException(400, "Invalid parameters"), "setting") is SettingRejected
    assert cls(ConnectionRefusedError("refused"), "exposure") is DeviceUnavailable
    assert cls(TimeoutError("slow")) is DeviceUnavailable
    err = translate(
        ae.InvalidValueException("Gain index out of range (0 to 4)"),
        context="setting",
        what="Gain = 9",
        device="cam",
    )
    assert "Gain index out of range (0 to 4)" in str(err) and isinstance(err, ValueError)


def test_start_time_and_bayer_helpers() -> None:
    expected = parse_alpaca_time("2026-11-25T08:23:48.667443")
    assert expected.tzinfo is not None
    assert parse_alpaca_time("2026-11-25T08:23:48.667443+00:00") == expected
    assert parse_alpaca_time("2026-11-25T08:23:48.6674430Z") == expected  # .NET: 7 digits
    assert bayer_pattern(2, 0, 0) == "RGGB"
    assert bayer_pattern(2, 1, 0) == "GRBG"
    assert bayer_pattern(2, 0, 1) == "GBRG"
    assert bayer_pattern(2, 1, 1) == "BGGR"
    assert bayer_pattern(0, 0, 0) is None
