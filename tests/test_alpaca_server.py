"""Our Alpaca server (simulators.alpaca_server) through the Alpaca client driver (drivers.alpaca)
and raw HTTP/UDP: the shared camera contract, the accessories, management API and discovery,
ImageBytes, spec error codes, and faults (server killed mid-exposure, concurrent clients).

Most tests talk to a real server process (``serve`` or the ``calibd sim serve --alpaca`` handler)
on a fast clock; protocol details use an in-process :class:`SimAlpacaServer`.
"""

from __future__ import annotations

import argparse
import json
import operator
import socket
import struct
import threading
import time
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calibd.drivers.alpaca import AlpacaCamera
from calibd.drivers.alpaca import AlpacaDome
from calibd.drivers.alpaca import AlpacaFilterWheel
from calibd.drivers.alpaca import AlpacaFlatPanel
from calibd.drivers.alpaca import AlpacaMount
from calibd.drivers.alpaca import AlpacaSafetyMonitor
from calibd.drivers.alpaca import describe_server
from calibd.drivers.alpaca import discover
from calibd.drivers.alpaca.imagebytes import decode_imagebytes
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import CoverState
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import SettingRejected
from calibd.drivers.pointing import Place
from calibd.simulators.accessories import DEFAULT_FILTERS
from calibd.simulators.alpaca_server import SimAlpacaServer
from calibd.simulators.alpaca_server.camera import CameraDevice
from calibd.simulators.alpaca_server.imagebytes import ElementType
from calibd.simulators.alpaca_server.imagebytes import encode_imagebytes
from calibd.simulators.clock import ScaledClock
from tests.alpaca_servers import OUR_SCALE
from tests.alpaca_servers import OurAlpacaServer
from tests.alpaca_servers import call
from tests.alpaca_servers import request
from tests.alpaca_servers import require_alpaca
from tests.camera_contract import CameraContract
from tests.camera_contract import ContractTarget

pytestmark = pytest.mark.alpaca

SCALE = OUR_SCALE  # simulated seconds per real second in the server processes

HOST = "127.0.0.1"

@pytest.fixture(scope="module", autouse=True)
def _needs_alpyca() -> None:
    require_alpaca(server=False)


@pytest.fixture(scope="module")
def server(our_alpaca: OurAlpacaServer) -> OurAlpacaServer:
    """The session's server process (``serve`` on a clock SCALE x real time)."""
    return our_alpaca


def new_camera(port: int, *, timeout_s: float = 5.0, client_id: int | None = None
               ) -> AlpacaCamera:
    """A client on the server's time scale; downloads get 10 real seconds."""
    return AlpacaCamera(host=HOST, port=port, clock=ScaledClock(SCALE),
                        download_timeout_s=10, timeout_s=timeout_s, client_id=client_id)


@pytest.fixture(scope="module")
def module_camera(server: OurAlpacaServer) -> Iterator[AlpacaCamera]:
    cam = new_camera(server.port)
    cam.connect()
    try:
        yield cam
    finally:
        cam.disconnect()


@pytest.fixture
def camera(module_camera: AlpacaCamera) -> AlpacaCamera:
    module_camera.connect()  # idempotent; reconnects after a test broke the connection
    module_camera.configure(CaptureSettings(gain=100, offset=50))
    return module_camera


@pytest.fixture
def local() -> Iterator[SimAlpacaServer]:
    """An in-process server on ephemeral ports (HTTP and discovery), fast clock."""
    with SimAlpacaServer(HOST, 0, scale=1000.0, discovery_port=0, seed=3) as srv:
        yield srv


# --------------------------------------------------------------------------------------------
# The shared camera contract through drivers.alpaca.AlpacaCamera
# --------------------------------------------------------------------------------------------


class TestOurAlpacaContract(CameraContract):
    @pytest.fixture
    def target(self, camera: AlpacaCamera) -> ContractTarget:
        return ContractTarget(
            camera=camera,
            clock=ScaledClock(SCALE),  # made after the server: its clock is not behind ours
            gain=100,
            offset=50,
            cool_to_c=-10.0,  # ambient 10 °C, the cooler pulls 35 °C
            cool_timeout_s=600.0,
            short_exposure_s=0.1,
            long_exposure_s=600.0,  # 6 s real: long enough to abort in the middle
            abort_within_real_s=5.0,
        )


# --------------------------------------------------------------------------------------------
# Accessories through the drivers
# --------------------------------------------------------------------------------------------


def test_filter_wheel_moves_and_reports_minus_one_while_moving(server: OurAlpacaServer) -> None:
    wheel = AlpacaFilterWheel(host=HOST, port=server.port)
    wheel.connect()
    assert wheel.names == DEFAULT_FILTERS
    wheel.select("Ha")
    assert wheel.position() == "Ha"
    assert call(server.port, "GET", "filterwheel/0/focusoffsets")["Value"] == [0] * 7
    assert call(server.port, "PUT", "filterwheel/0/position", Position=0)["ErrorNumber"] == 0
    assert call(server.port, "GET", "filterwheel/0/position")["Value"] == -1  # 3 slots to go
    wheel.select("L")
    assert wheel.position() == "L"
    wheel.disconnect()


def test_cover_calibrator(server: OurAlpacaServer) -> None:
    panel = AlpacaFlatPanel(host=HOST, port=server.port)
    panel.connect()
    assert panel.max_brightness == 1023 and panel.has_cover
    panel.close_cover()
    assert panel.cover_state() is CoverState.CLOSED
    call(server.port, "PUT", "covercalibrator/0/opencover")
    assert call(server.port, "GET", "covercalibrator/0/coverstate")["Value"] == 2  # Moving
    halt = call(server.port, "PUT", "covercalibrator/0/haltcover")
    assert halt["ErrorNumber"] == 0x400 and "cannot be halted" in halt["ErrorMessage"]
    panel.open_cover(timeout_s=10)
    assert panel.cover_state() is CoverState.OPEN
    panel.light(500)
    assert panel.brightness() == 500
    assert call(server.port, "GET", "covercalibrator/0/calibratorstate")["Value"] == 3  # Ready
    panel.off()
    assert panel.brightness() == 0
    assert call(server.port, "GET", "covercalibrator/0/calibratorstate")["Value"] == 1  # Off
    panel.close_cover()
    panel.disconnect()


def test_panel_light_reaches_the_camera(server: OurAlpacaServer, camera: AlpacaCamera) -> None:
    """The optical path works over the protocol: wheel -> filter, closed cover + panel -> flux."""
    wheel = AlpacaFilterWheel(host=HOST, port=server.port)
    panel = AlpacaFlatPanel(host=HOST, port=server.port)
    wheel.connect()
    panel.connect()
    try:
        wheel.select("L")
        panel.close_cover()
        panel.light(800)
        lit = camera.expose(0.1, dark=False).data.mean()
        wheel.select("Ha")  # 3 % of L
        narrow = camera.expose(0.1, dark=False).data.mean()
        panel.off()
        unlit = camera.expose(0.1, dark=False).data.mean()
    finally:
        panel.off()
        wheel.select("L")
    assert lit > unlit + 5000  # ~7800 e- at 1 e-/ADU over a ~500 ADU pedestal
    assert unlit + 100 < narrow < unlit + 0.1 * (lit - unlit)


def _lit(image: Any, dark: Any) -> Any:
    """Pixels over 1000 ADU above the dark frame of the same length (stars, not hot pixels)."""
    return np.asarray(image, dtype=np.float64) - np.asarray(dark, dtype=np.float64) > 1000


def test_the_camera_sees_the_sky_through_the_dome_and_the_stars_where_the_telescope_points(
) -> None:
    """One observatory behind the server: with the cover open, the night sky reaches the camera
    only through the open dome, with the stars where the telescope points (other stars 5° away,
    the same ones again back at that spot, tracking)."""
    night = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)  # the sun far below the server's horizon
    with SimAlpacaServer(HOST, 0, scale=1000.0, seed=3, start=night) as srv:
        mount = AlpacaMount(host=HOST, port=srv.port, clock=srv.clock)
        dome = AlpacaDome(host=HOST, port=srv.port, clock=srv.clock)
        panel = AlpacaFlatPanel(host=HOST, port=srv.port, clock=srv.clock)
        camera = AlpacaCamera(host=HOST, port=srv.port, clock=srv.clock, download_timeout_s=10)
        for dev in (mount, dome, panel, camera):
            dev.connect()
        camera.configure(CaptureSettings(gain=100, offset=50))
        dark = camera.expose(5.0, dark=True).data
        panel.open_cover()
        mount.unpark()
        mount.slew_altaz(60.0, 90.0, tracking=True)
        closed = camera.expose(5.0, dark=False).data
        dome.open_shutter()
        here = camera.expose(5.0, dark=False).data
        mount.slew_altaz(60.0, 95.0, tracking=True)
        there = camera.expose(5.0, dark=False).data
        ra, dec = mount.status().ra_hours, mount.status().dec_deg
        mount.slew_altaz(60.0, 90.0)
        mount.slew_radec(ra, dec)  # back where "there" was, tracking
        again = camera.expose(5.0, dark=False).data
        dome.close_shutter()
        mount.park()
    assert not _lit(closed, dark).any()
    lit_here, lit_there, lit_again = (_lit(f, dark) for f in (here, there, again))
    assert lit_here.sum() > 20 and lit_there.sum() > 20
    assert (lit_here & lit_there).sum() < 0.2 * lit_here.sum()
    assert (lit_again & lit_there).sum() > 0.8 * lit_there.sum()


def test_the_site_places_the_mount_and_the_sun() -> None:
    """``site``: the telescope reports it, and the sky's twilight follows its sun (at 17:30 UTC
    on 25 November the sun has set at 45° N 7° E, while at 52° N 100° W it is still up)."""
    when = datetime(2026, 11, 25, 17, 30, tzinfo=UTC)
    flux = {}
    for site in (Place(45.0, 7.0, 400.0), Place(52.0, -100.0, 600.0)):
        with SimAlpacaServer(HOST, 0, start=when, site=site) as srv:
            assert call(srv.port, "PUT", "telescope/0/connected", Connected="true",
                        ClientID=1, ClientTransactionID=1)["ErrorNumber"] == 0
            got = [call(srv.port, "GET", f"telescope/0/{name}")["Value"]
                   for name in ("sitelatitude", "sitelongitude", "siteelevation")]
            assert got == [site.latitude_deg, site.longitude_deg, site.elevation_m]
            flux[site.longitude_deg] = srv.observatory.sky.flux(when)
    assert flux[-100.0] > 1000 * flux[7.0]


def test_a_wheel_move_past_its_deadline_says_where_the_wheel_is() -> None:
    """A move that cannot finish by the wheel's ``wait_timeout_s`` raises DeviceUnavailable
    naming the filter and the Position the wheel last reported (-1: still moving). At real time
    the simulated wheel takes 1 s a slot, so L -> Ha (4 slots) outlasts a 0.3 s bound."""
    with SimAlpacaServer(HOST, 0, seed=3) as srv:
        wheel = AlpacaFilterWheel(host=HOST, port=srv.port, wait_timeout_s=0.3)
        wheel.connect()
        assert wheel.position() == "L"
        started = time.monotonic()
        with pytest.raises(DeviceUnavailable,
                           match=r"move to filter 'Ha': not done within 0\.3 s \(Position -1\)"):
            wheel.select("Ha")
        assert time.monotonic() - started < 2.0
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="wait_timeout_s"):
            AlpacaFilterWheel(host=HOST, port=1, wait_timeout_s=bad)


def test_safety_monitor_and_cloud_cover(server: OurAlpacaServer) -> None:
    safety = AlpacaSafetyMonitor(host=HOST, port=server.port, conditions_device_number=0)
    safety.connect()
    assert safety.is_safe()
    assert safety.cloud_cover_pct() == pytest.approx(5.0)
    try:
        answer = call(server.port, "PUT", "safetymonitor/0/action", Action="SetCloudy",
                      Parameters="true")
        assert answer["ErrorNumber"] == 0
        assert not safety.is_safe()
        assert safety.cloud_cover_pct() == pytest.approx(90.0)
    finally:
        call(server.port, "PUT", "safetymonitor/0/action", Action="SetCloudy",
             Parameters="false")
    assert safety.is_safe()
    safety.disconnect()


# --------------------------------------------------------------------------------------------
# Management API and discovery
# --------------------------------------------------------------------------------------------


def test_management_api_lists_every_device_with_unique_ids(server: OurAlpacaServer) -> None:
    described = describe_server(HOST, server.port, probe=False, strict=True)
    assert described.has_management_api and described.api_versions == (1,)
    assert described.server_name == "calibd simulator"
    entries = json.loads(request(server.port, "GET", "/management/v1/configureddevices",
                                 {"ClientTransactionID": 77})[2])
    assert entries["ClientTransactionID"] == 77 and entries["ServerTransactionID"] > 0
    devices = entries["Value"]
    assert {(d["DeviceType"], d["DeviceNumber"]) for d in devices} == {
        ("Camera", 0), ("FilterWheel", 0), ("CoverCalibrator", 0), ("SafetyMonitor", 0),
        ("ObservingConditions", 0), ("Dome", 0), ("Telescope", 0),
    }
    ids = [d["UniqueID"] for d in devices]
    assert len(set(ids)) == len(ids) and all(ids)
    assert {d.kind for d in described.devices} == {
        "camera", "filterwheel", "flatpanel", "safety", "weather", "dome", "mount"
    }


def test_udp_discovery_answers_on_loopback(server: OurAlpacaServer) -> None:
    found = discover([HOST], port=server.discovery_port, timeout_s=0.5)
    assert [(s.host, s.port) for s in found] == [(HOST, server.port)]
    assert len(found[0].devices) == 7
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(b"hello", (HOST, server.discovery_port))  # ignored
        sock.sendto(b"alpacadiscovery1", (HOST, server.discovery_port))
        reply, _ = sock.recvfrom(1024)
    assert json.loads(reply) == {"AlpacaPort": server.port}


# --------------------------------------------------------------------------------------------
# ImageBytes and image orientation
# --------------------------------------------------------------------------------------------


def test_imagebytes_header_and_orientation(local: SimAlpacaServer) -> None:
    cam = AlpacaCamera(host=HOST, port=local.port, clock=ScaledClock(1000.0),
                       download_timeout_s=10_000.0)
    cam.connect()
    status, kind, body = request(local.port, "GET", "/api/v1/camera/0/imagearray",
                                 {"ClientTransactionID": 5},
                                 {"Accept": "application/imagebytes"})
    header = struct.unpack_from("<11i", body)
    assert (status, kind, header[:3]) == (200, "application/imagebytes", (1, 0x40B, 5))
    assert b"no image ready" in body[header[4]:]

    cam.configure(CaptureSettings(gain=100, offset=50))
    frame = cam.expose(300.0, dark=True)  # 0.3 s real; hot pixels stand far out
    sensor = local.observatory.camera.sensor
    rows, cols = sensor.hot_pixels_rc().T
    background = float(np.median(frame.data))
    assert np.median(frame.data[rows, cols]) > background + 1000  # [row, column] as the sensor
    assert frame.data[:, -3:].mean() > frame.data[:, :3].mean() + 20  # amp glow on the right

    status, kind, body = request(local.port, "GET", "/api/v1/camera/0/imagearray",
                                 {"ClientTransactionID": 9},
                                 {"Accept": "application/imagebytes"})
    (version, error, ctid, stid, start, element, transmission, rank, dim1, dim2,
     dim3) = struct.unpack_from("<11i", body)
    assert (status, kind) == (200, "application/imagebytes")
    assert (version, error, ctid, start, element, transmission, rank) == (1, 0, 9, 44, 2, 8, 2)
    assert stid > 0 and (dim1, dim2, dim3) == (320, 240, 0)  # [x][y]: x = column
    xy = np.frombuffer(body, dtype="<u2", offset=44).reshape(dim1, dim2)
    np.testing.assert_array_equal(xy.T, frame.data)

    status, kind, body = request(local.port, "GET", "/api/v1/camera/0/imagearray",
                                 headers={"Accept": "application/json"})
    doc = json.loads(body)
    assert (status, doc["Type"], doc["Rank"], doc["ErrorNumber"]) == (200, 2, 2, 0)
    np.testing.assert_array_equal(np.array(doc["Value"]).T, frame.data)

    as_int32 = encode_imagebytes(frame.data, client_transaction_id=1, server_transaction_id=2,
                                 transmission=ElementType.INT32)
    assert struct.unpack_from("<11i", as_int32)[6] == 2
    np.testing.assert_array_equal(decode_imagebytes(as_int32), frame.data)
    cam.disconnect()


# --------------------------------------------------------------------------------------------
# Errors: out-of-range settings, protocol rules
# --------------------------------------------------------------------------------------------


def test_out_of_range_settings_carry_the_server_message(
    server: OurAlpacaServer, camera: AlpacaCamera
) -> None:
    def rejected(pattern: str) -> Any:
        return pytest.raises(SettingRejected, match=rf"{pattern}.*\(Alpaca error 0x401\)")

    with rejected(r"gain 1400 outside 0\.\.400"):
        camera.configure(CaptureSettings(gain=1400, offset=50))
    with rejected(r"offset 500 outside 0\.\.100"):
        camera.configure(CaptureSettings(gain=100, offset=500))
    with rejected("set-point 150.0 °C outside -40.0..30.0 °C"):
        camera.set_cooler(True, 150.0)
    with rejected(r"exposure 5000\.0 s outside"):
        camera.expose(5000.0, dark=True)
    panel = AlpacaFlatPanel(host=HOST, port=server.port)
    panel.connect()
    with rejected(r"brightness 5000 outside 0\.\.1023"):
        panel.light(5000)
    wheel = AlpacaFilterWheel(host=HOST, port=server.port)
    wheel.connect()
    with rejected(r"filter position 12 outside 0\.\.6"):
        wheel._set("Position", 12)  # the driver selects by name; ask for a slot directly
    with pytest.raises(SettingRejected, match="OIII-wide"):
        wheel.select("OIII-wide")
    # Everything still works.
    assert camera.configure(CaptureSettings(gain=0, offset=0)).gain == 0
    assert camera.expose(0.01, dark=True).settings.gain == 0


def test_protocol_rules(local: SimAlpacaServer) -> None:
    port = local.port
    # Not connected yet: NotConnected; the common members answer anyway.
    assert call(port, "GET", "camera/0/ccdtemperature")["ErrorNumber"] == 0x407
    assert call(port, "GET", "camera/0/interfaceversion")["Value"] == 4
    assert call(port, "GET", "covercalibrator/0/interfaceversion")["Value"] == 2
    # Fixed-value members (a device's ``constants``) follow the same connection rule.
    assert call(port, "GET", "camera/0/canabortexposure")["ErrorNumber"] == 0x407
    assert "calibd" in call(port, "GET", "camera/0/driverinfo")["Value"]
    assert call(port, "PUT", "camera/0/connect")["ErrorNumber"] == 0
    assert call(port, "GET", "camera/0/connecting")["Value"] is False
    assert [call(port, "GET", f"camera/0/{m}")["Value"]
            for m in ("canabortexposure", "canpulseguide", "maxadu")] == [True, False, 65535]
    # GET parameter names ignore case; PUT names are exact (a mis-cased one is missing).
    doc = call(port, "GET", "camera/0/gain", clienttransactionid=42)
    assert (doc["Value"], doc["ClientTransactionID"]) == (100, 42)
    status, _, body = request(port, "PUT", "/api/v1/camera/0/gain", {"gain": 7})
    assert status == 400 and b"missing parameter Gain" in body
    doc = call(port, "PUT", "camera/0/gain", Gain=7, clienttransactionid=3)
    assert (doc["ErrorNumber"], doc["ClientTransactionID"]) == (0, 0)
    # Malformed requests are HTTP 400, unknown paths too; other verbs 405.
    assert request(port, "PUT", "/api/v1/camera/0/connected", {"Connected": "maybe"})[0] == 400
    assert request(port, "GET", "/api/v1/camera/0/gain", {"ClientID": "-1"})[0] == 400
    assert request(port, "GET", "/api/v1/camera/5/name")[0] == 400
    assert request(port, "GET", "/api/v1/CAMERA/0/name")[0] == 400
    assert request(port, "GET", "/api/v1/camera/0/descrip")[0] == 400
    assert request(port, "GET", "/api/v1/camera/0/startexposure")[0] == 400
    assert request(port, "POST", "/api/v1/camera/0/name")[0] == 405
    # Spec error numbers.
    assert call(port, "GET", "camera/0/lastexposureduration")["ErrorNumber"] == 0x402
    assert call(port, "GET", "camera/0/gains")["ErrorNumber"] == 0x400
    assert call(port, "PUT", "camera/0/commandblind", Command="x", Raw="false")[
        "ErrorNumber"] == 0x400
    assert call(port, "PUT", "camera/0/action", Action="Fly", Parameters="")[
        "ErrorNumber"] == 0x40C
    assert call(port, "PUT", "camera/0/readoutmode", ReadoutMode=9)["ErrorNumber"] == 0x401
    # Binning does not resize the subframe: the client must, else StartExposure refuses it.
    assert call(port, "PUT", "camera/0/binx", BinX=2)["ErrorNumber"] == 0
    assert call(port, "GET", "camera/0/biny")["Value"] == 2
    refused = call(port, "PUT", "camera/0/startexposure", Duration=1, Light="false")
    assert refused["ErrorNumber"] == 0x401 and "does not fit the 160x120" in refused[
        "ErrorMessage"]
    for name, value in (("NumX", 100), ("NumY", 50), ("StartX", 10), ("StartY", 20)):
        assert call(port, "PUT", f"camera/0/{name.lower()}", **{name: value})["ErrorNumber"] == 0
    assert call(port, "PUT", "camera/0/startexposure", Duration=100, Light="false")[
        "ErrorNumber"] == 0  # 0.1 s real
    busy = call(port, "PUT", "camera/0/startexposure", Duration=1, Light="false")
    assert busy["ErrorNumber"] == 0x40B and "busy" in busy["ErrorMessage"]
    deadline = time.monotonic() + 5
    while not call(port, "GET", "camera/0/imageready")["Value"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    image = json.loads(request(port, "GET", "/api/v1/camera/0/imagearray")[2])["Value"]
    assert (len(image), len(image[0])) == (100, 50)  # [x][y] of the 100x50 subframe
    assert call(port, "GET", "camera/0/lastexposureduration")["Value"] == pytest.approx(100.0)
    assert call(port, "GET", "camera/0/percentcompleted")["Value"] == 100
    state = {d["Name"]: d["Value"] for d in call(port, "GET", "camera/0/devicestate")["Value"]}
    assert state["CameraState"] == 0 and state["ImageReady"] is True and "TimeStamp" in state
    # StopExposure ends a long exposure early and reads it out.
    assert call(port, "PUT", "camera/0/startexposure", Duration=2000, Light="false")[
        "ErrorNumber"] == 0  # 2 s real
    time.sleep(0.05)
    assert call(port, "PUT", "camera/0/stopexposure")["ErrorNumber"] == 0
    assert call(port, "GET", "camera/0/imageready")["Value"] is True
    assert call(port, "GET", "camera/0/lastexposureduration")["Value"] < 1000
    # ServerTransactionIDs grow.
    first = call(port, "GET", "camera/0/name")["ServerTransactionID"]
    assert call(port, "GET", "camera/0/name")["ServerTransactionID"] > first
    assert local.discovery_port not in (None, 0)


def test_declared_getters(local: SimAlpacaServer) -> None:
    """``constants``/``attributes`` entries must name GET members; every attribute path reads."""
    for table, entry in (("constants", True), ("attributes", "_sensor_name")):
        with pytest.raises(TypeError, match="cangoaway"):
            type("Bad", (CameraDevice,), {table: {"cangoaway": entry}})
    for device in local.devices.values():
        for member, path in device.attributes.items():
            assert operator.attrgetter(path)(device) is not None, (device.label, member)


# --------------------------------------------------------------------------------------------
# Faults and concurrency
# --------------------------------------------------------------------------------------------


def test_server_killed_mid_exposure_then_restarted(tmp_path: Path) -> None:
    fault = OurAlpacaServer(tmp_path / "fault.log", scale=SCALE, launch="handler")
    fault.start()
    try:
        cam = new_camera(fault.port, timeout_s=2.0)
        cam.connect()
        uid = cam.info.camera_id
        wanted = CaptureSettings(gain=150, offset=20, binning=2, readout_mode="low-noise")
        cam.configure(wanted)
        cam.set_cooler(True, -7.5)
        outcome: list[BaseException] = []
        finished = threading.Event()

        def run() -> None:
            try:
                cam.expose(600.0, dark=True)  # 6 s real
            except BaseException as err:
                outcome.append(err)
            finished.set()

        threading.Thread(target=run, daemon=True).start()
        time.sleep(1.0)
        killed = time.monotonic()
        fault.kill()
        assert finished.wait(10), "expose() did not end"
        noticed_s = time.monotonic() - killed
        assert outcome and isinstance(outcome[0], DeviceUnavailable), outcome
        assert noticed_s < 3.0, f"the dead server was noticed only after {noticed_s:.1f} s"
        assert not cam.connected
        with pytest.raises(DeviceUnavailable):
            cam.connect()  # still down: a clear error, no hang

        fault.start()  # same port
        cam.connect()  # re-applies settings and cooler to the fresh server
        frame = cam.expose(0.05, dark=True)
        assert frame.settings == wanted and frame.shape == (120, 160)
        assert cam.cooler_state().setpoint_c == pytest.approx(-7.5)
        assert cam.info.camera_id == uid  # UniqueID survives the restart
        cam.disconnect()
    finally:
        code = fault.stop()
    assert code == 0, fault.log()


def test_concurrent_clients_do_not_break_state(server: OurAlpacaServer) -> None:
    first = new_camera(server.port, client_id=1)
    second = new_camera(server.port, client_id=2)
    first.connect()
    second.connect()
    first.configure(CaptureSettings(gain=100, offset=50))
    frames: list[Any] = []
    worker = threading.Thread(target=lambda: frames.append(first.expose(100.0, dark=True)))
    worker.start()  # 1 s real
    deadline = time.monotonic() + 5
    while call(server.port, "GET", "camera/0/camerastate")["Value"] != 2:
        assert time.monotonic() < deadline, "the exposure never started"
        time.sleep(0.01)
    with pytest.raises(ExposureFailed, match="busy"):
        second.expose(0.1, dark=True)

    for device in ("filterwheel/0", "covercalibrator/0"):  # the server is shared: connect them
        assert call(server.port, "PUT", f"{device}/connected", Connected="true")["ErrorNumber"] == 0
    ids: list[int] = []
    errors: list[BaseException] = []

    def hammer(n: int) -> None:
        paths = ("camera/0/ccdtemperature", "camera/0/camerastate", "filterwheel/0/position",
                 "covercalibrator/0/brightness")
        try:
            for i in range(25):
                doc = call(server.port, "GET", paths[i % 4], ClientID=n, ClientTransactionID=i)
                assert doc["ErrorNumber"] == 0 and doc["ClientTransactionID"] == i
                ids.append(doc["ServerTransactionID"])
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    worker.join(20)
    assert not errors, errors
    assert len(ids) == 100 and len(set(ids)) == 100
    assert frames and frames[0].shape == (240, 320) and frames[0].exposure_s == 100.0
    assert second.expose(0.1, dark=True).settings.gain == 100  # the camera is free again
    first.disconnect()
    second.disconnect()


# --------------------------------------------------------------------------------------------
# The CLI entry
# --------------------------------------------------------------------------------------------


def parse_cli(*argv: str) -> argparse.Namespace:
    from calibd.capture.cli import cmd_sim

    parser = argparse.ArgumentParser()
    cmd_sim.register(parser.add_subparsers())
    return parser.parse_args(list(argv))


def test_cli_options_and_the_no_authentication_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import calibd.simulators.alpaca_server as package
    from calibd.capture.cli import cmd_sim

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(package, "serve", lambda *a, **k: calls.append((a, k)))
    args = parse_cli("sim", "serve", "--alpaca", "--host", "0.0.0.0", "--port", "4711",
                     "--discovery-port", "0", "--profile", "asi294mm", "--scale", "50",
                     "--ambient", "5")
    assert cmd_sim.run_serve(args) == 0
    assert "no authentication" in capsys.readouterr().err
    (host, port), options = calls[-1]
    assert (host, port) == ("0.0.0.0", 4711)
    assert options["discovery_port"] is None and options["profile"] == "asi294mm"
    assert options["scale"] == 50.0 and options["ambient_c"] == 5.0
    args = parse_cli("sim", "serve", "--alpaca")
    assert cmd_sim.run_serve(args) == 0
    assert "no authentication" not in capsys.readouterr().err
    assert calls[-1][0] == ("127.0.0.1", 11111) and calls[-1][1]["discovery_port"] == 32227
    assert cmd_sim.run_serve(parse_cli("sim", "serve", "--alpaca", "--scale", "0")) == 2
    assert cmd_sim.run_serve(parse_cli("sim", "serve", "--alpaca", "--start",
                                       "2026-11-25T15:55:00Z", "--real-start",
                                       "2026-11-20T08:00:00")) == 0
    assert calls[-1][1]["start"] == datetime(2026, 11, 25, 15, 55, tzinfo=UTC)
    assert calls[-1][1]["real_start"] == datetime(2026, 11, 20, 8, tzinfo=UTC)  # naive: UTC
    for bad in ("soon", "9999-12-31T00:00:00"):
        assert cmd_sim.run_serve(parse_cli("sim", "serve", "--alpaca", "--start", bad)) == 2
    assert cmd_sim.run_serve(parse_cli("sim", "serve", "--alpaca", "--site", "52.5,-4")) == 0
    assert calls[-1][1]["site"] == Place(52.5, -4.0)
    assert cmd_sim.run_serve(parse_cli("sim", "serve", "--alpaca",
                                       "--site=-31.3,149.1,1150")) == 0  # "=": a leading "-"
    assert calls[-1][1]["site"] == Place(-31.3, 149.1, 1150.0)
    for bad in ("52", "91,7", "45,181", "45,7,99999", "45,7,400,1", "north,7", "nan,7"):
        capsys.readouterr()
        assert cmd_sim.run_serve(parse_cli("sim", "serve", "--alpaca", "--site", bad)) == 2
        assert "--site needs LAT,LON" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        parse_cli("sim", "serve")  # the protocol must be named
    assert exit_info.value.code == 2


def test_cli_reports_a_busy_port(server: OurAlpacaServer,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from calibd.capture.cli import cmd_sim

    args = parse_cli("sim", "serve", "--alpaca", "--port", str(server.port),
                     "--discovery-port", "0")
    assert cmd_sim.run_serve(args) == 1
    assert "cannot serve" in capsys.readouterr().err
