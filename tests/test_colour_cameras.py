"""Colour (one-shot-colour) cameras over every transport: the shared camera contract (which checks
the reported pattern, the pattern each frame carries and the FITS keywords calibd writes) on a
colour sensor behind our Alpaca server, the ASI SDK double and INDI's own CCD Simulator with
SIMULATE_BAYER on; plus what each protocol says about colour (ASCOM SensorType and
BayerOffsetX/Y, ZWO IsColorCam/BayerPattern/MonoBin, INDI CCD_CFA and the per-frame BAYERPAT)
and the refusals (debayered read-out modes, ASCOM SensorType Color and rank-3 images, INDI RGB
frames). The simulator's own colour contract is in tests/test_simulator.py.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from calibd.drivers.alpaca import AlpacaCamera
from calibd.drivers.alpaca.camera import frame_pattern
from calibd.drivers.alpaca.imagebytes import decode_imagebytes
from calibd.drivers.clock import RealClock
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import SettingRejected
from calibd.drivers.indi import IndiCamera
from calibd.drivers.indi._fits import decode_fits
from calibd.drivers.zwo import ZwoCamera
from calibd.simulators.alpaca_server import SimAlpacaServer
from calibd.simulators.alpaca_server.camera import CameraDevice
from calibd.simulators.asi_sdk import AsiDouble
from calibd.simulators.clock import ScaledClock
from calibd.simulators.profiles import PROFILES
from calibd.simulators.profiles import get_profile
from tests.alpaca_servers import OurAlpacaServer
from tests.alpaca_servers import call
from tests.alpaca_servers import require_alpaca
from tests.camera_contract import CameraContract
from tests.camera_contract import ContractTarget
from tests.indi_server import CCD
from tests.indi_server import INDI_POLL_MS
from tests.indi_server import IndiTestServer
from tests.indi_server import running_indi_server
from tests.support import demosaic_fits
from tests.support import write_frame
from tests.zwo_fixtures import TIME_SCALE
from tests.zwo_fixtures import CameraFactory

pytest_plugins = ("tests.zwo_fixtures",)

HOST = "127.0.0.1"
ALPACA_SCALE = 100.0


# ================================================================================= ASCOM Alpaca


def _colour_server(pattern: str) -> SimAlpacaServer:
    """An in-process server whose camera is the small colour sensor in phase ``pattern``."""
    require_alpaca(server=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PROFILES, "small-colour",
                   get_profile("small-colour").with_overrides(bayer=pattern))
        return SimAlpacaServer(HOST, 0, profile="small-colour", scale=ALPACA_SCALE,
                               discovery_port=None, seed=5)


@pytest.fixture(scope="module")
def colour_alpaca() -> Iterator[SimAlpacaServer]:
    with _colour_server("GRBG") as srv:
        yield srv


@pytest.fixture(scope="module")
def alpaca_colour_camera(colour_alpaca: SimAlpacaServer) -> Iterator[AlpacaCamera]:
    cam = AlpacaCamera(host=HOST, port=colour_alpaca.port, clock=ScaledClock(ALPACA_SCALE),
                       download_timeout_s=10, timeout_s=5.0)
    cam.connect()
    yield cam
    cam.disconnect()


@pytest.mark.alpaca
class TestAlpacaColourContract(CameraContract):
    """GRBG through ASCOM: SensorType RGGB with BayerOffsetX 1. A binned Alpaca image carries no
    pattern (ASCOM does not say how a colour sensor bins)."""

    @pytest.fixture
    def target(self, alpaca_colour_camera: AlpacaCamera) -> ContractTarget:
        alpaca_colour_camera.connect()
        return ContractTarget(
            camera=alpaca_colour_camera, clock=ScaledClock(ALPACA_SCALE), gain=100, offset=50,
            cool_to_c=-10.0, cool_timeout_s=600.0, short_exposure_s=0.1, long_exposure_s=600.0,
            abort_within_real_s=5.0, bayer="GRBG", bayer_binned=None)


@pytest.mark.alpaca
@pytest.mark.parametrize(("pattern", "offsets"), [("RGGB", (0, 0)), ("GRBG", (1, 0)),
                                                  ("GBRG", (0, 1)), ("BGGR", (1, 1))])
def test_alpaca_server_reports_sensortype_rggb_and_the_phase_in_bayer_offsets(
        pattern: str, offsets: tuple[int, int]) -> None:
    """ICameraV3: SensorType 2 (RGGB family), BayerOffsetX/Y = where the R G / G B matrix
    starts, X right, Y down; the driver turns that back into the pattern."""
    with _colour_server(pattern) as srv:
        call(srv.port, "PUT", "camera/0/connected", Connected="true")
        got = [call(srv.port, "GET", f"camera/0/{m}")
               for m in ("sensortype", "bayeroffsetx", "bayeroffsety")]
        assert [g["ErrorNumber"] for g in got] == [0, 0, 0]
        assert (got[0]["Value"], (got[1]["Value"], got[2]["Value"])) == (2, offsets)
        cam = AlpacaCamera(host=HOST, port=srv.port, clock=ScaledClock(ALPACA_SCALE))
        cam.connect()
        try:
            assert cam.info.bayer_pattern == pattern
        finally:
            cam.disconnect()


@pytest.mark.alpaca
def test_mono_alpaca_camera_is_sensortype_0_without_bayer_offsets(
        our_alpaca: OurAlpacaServer) -> None:
    call(our_alpaca.port, "PUT", "camera/0/connected", Connected="true")
    assert call(our_alpaca.port, "GET", "camera/0/sensortype")["Value"] == 0
    for member in ("bayeroffsetx", "bayeroffsety"):  # ICameraV3: PropertyNotImplemented
        assert call(our_alpaca.port, "GET", f"camera/0/{member}")["ErrorNumber"] == 0x400


def test_an_odd_subframe_origin_is_folded_into_the_frame_pattern() -> None:
    """BayerOffsetX/Y "does not change to reflect subframe settings": the driver adds the
    origin's parity; binned images carry no pattern."""
    assert frame_pattern("RGGB", 0, 0, 1) == "RGGB"
    assert frame_pattern("RGGB", 1, 0, 1) == "GRBG"
    assert frame_pattern("RGGB", 0, 3, 1) == "GBRG"
    assert frame_pattern("GRBG", 1, 1, 1) == "GBRG"
    assert frame_pattern("RGGB", 2, 2, 1) == "RGGB"
    assert frame_pattern("RGGB", 0, 0, 2) is None
    assert frame_pattern("CMYG", 0, 0, 1) is None and frame_pattern(None, 1, 1, 1) is None


@pytest.mark.alpaca
def test_alpaca_sensortype_color_and_rank_3_images_are_refused_with_a_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Decided: an ASCOM SensorType=Color camera (debayered, rank-3 ImageArray) is refused, at
    configure and at the image, with the reason and what to do; never half-used."""
    monkeypatch.setattr(CameraDevice, "get_sensortype", lambda self, p: 1)
    with _colour_server("RGGB") as srv:
        cam = AlpacaCamera(host=HOST, port=srv.port, clock=ScaledClock(ALPACA_SCALE))
        cam.connect()
        try:
            assert cam.info.bayer_pattern is None
            with pytest.raises(SettingRejected, match=r"SensorType Color.*raw sensor data only"):
                cam.configure(CaptureSettings(gain=100, offset=50))
        finally:
            cam.disconnect()
    nx, ny = 4, 2
    header = struct.pack("<11i", 1, 0, 1, 2, 44, 2, 8, 3, nx, ny, 3)
    with pytest.raises(ExposureFailed, match=r"3 planes.*raw sensor data only"):
        decode_imagebytes(header + bytes(nx * ny * 3 * 2))


@pytest.mark.alpaca
def test_debayered_readout_modes_are_refused(alpaca_colour_camera: AlpacaCamera) -> None:
    for mode in ("RGB24", "Y8", "RAW8"):
        with pytest.raises(SettingRejected, match="raw 16-bit mosaics only"):
            alpaca_colour_camera.configure(CaptureSettings(gain=100, offset=50,
                                                           readout_mode=mode))


# ==================================================================================== ZWO SDK


@pytest.fixture
def zwo_colour(zwo_double: AsiDouble, zwo_camera: CameraFactory) -> ZwoCamera:
    """An ASI533MC-like camera on the double: ASI_BAYER_GR (GRBG), the profile's panel balance."""
    response = get_profile("small-colour").channel_response("panel")
    zwo_double.reset(time_scale=TIME_SCALE, model="ASI533MC Pro", width=320, height=240,
                     bayer=2, cfa_r=response["R"], cfa_g=response["G"], cfa_b=response["B"],
                     panel_flux=20000.0)
    cam = zwo_camera()
    cam.connect()
    return cam


@pytest.mark.zwo
class TestZwoColourContract(CameraContract):
    """A colour camera through the real zwoasi bindings: the SDK's IsColorCam/BayerPattern,
    MonoBin switched off so a binned frame stays a mosaic."""

    @pytest.fixture
    def target(self, zwo_colour: ZwoCamera, zwo_clock: ScaledClock) -> ContractTarget:
        return ContractTarget(
            camera=zwo_colour, clock=zwo_clock, gain=100, offset=30, cool_to_c=-10.0,
            cool_tolerance_c=0.5, cool_timeout_s=900.0, short_exposure_s=0.1,
            long_exposure_s=600.0, abort_within_real_s=5.0, bayer="GRBG", bayer_binned="GRBG")


@pytest.mark.zwo
def test_zwo_colour_frames_demosaic_to_a_green_panel(zwo_colour: ZwoCamera,
                                                     tmp_path: Path) -> None:
    """The double's light follows the pixel's colour (ASI_BAYER_GR); calibd's FITS of it,
    demosaiced by OpenCV from the keywords alone, is green-heavy with R and B in their places,
    binned 2x2 (colour binning) too."""
    for binning in (1, 2):
        zwo_colour.configure(CaptureSettings(gain=100, offset=30, binning=binning))
        frame = zwo_colour.expose(0.5, dark=False)
        assert frame.bayer_pattern == "GRBG"
        rgb = demosaic_fits(write_frame(tmp_path / f"b{binning}.fits", frame, zwo_colour.info,
                                        kind="flat"))
        r, g, b = (float(np.median(rgb[8:-8, 8:-8, i])) for i in range(3))
        assert g > 2.5 * r and g > 2.5 * b, (binning, r, g, b)


@pytest.mark.zwo
def test_zwo_mono_binned_frames_carry_no_pattern(zwo_colour: ZwoCamera) -> None:
    """With ASI_MONO_BIN on (another program left it so), a binned frame adds the four colours:
    it is not a mosaic and carries no pattern; unbinned frames keep theirs."""
    zwo_colour._set("Mono bin", 1)  # the SDK's own control name, as another client would
    zwo_colour.configure(CaptureSettings(gain=100, offset=30, binning=2))
    frame = zwo_colour.expose(0.5, dark=False)
    assert frame.bayer_pattern is None
    quads = [float(np.median(frame.data[r::2, c::2])) for r in (0, 1) for c in (0, 1)]
    assert max(quads) < 1.05 * min(quads)  # no colour left in the 2x2 cells
    zwo_colour.configure(CaptureSettings(gain=100, offset=30, binning=1))
    assert zwo_colour.expose(0.1, dark=True).bayer_pattern == "GRBG"


@pytest.mark.zwo
def test_zwo_debayered_modes_are_refused(zwo_colour: ZwoCamera) -> None:
    with pytest.raises(SettingRejected, match="raw 16-bit mosaics only"):
        zwo_colour.configure(CaptureSettings(gain=100, offset=30, readout_mode="RGB24"))


# ================================================================================ INDI simulator


@pytest.fixture(scope="module")
def bayer_indi() -> Iterator[IndiTestServer]:
    """indiserver with INDI's CCD Simulator, SIMULATE_BAYER switched on before anyone connects
    (set after CONNECT the FITS gets BAYERPAT but CCD_CFA is never defined)."""
    with running_indi_server(drivers=("indi_simulator_ccd",), polling_ms=INDI_POLL_MS) as srv:
        srv.setprop(f"{CCD}.SIMULATE_BAYER.INDI_ENABLED=On")
        yield srv


@pytest.fixture(scope="module")
def indi_colour_camera(bayer_indi: IndiTestServer) -> Iterator[IndiCamera]:
    cam = IndiCamera(host=bayer_indi.host, port=bayer_indi.port, device=CCD,
                     polling_ms=INDI_POLL_MS)
    cam.connect()
    yield cam
    cam.disconnect()


@pytest.mark.indi
@pytest.mark.timeout(120)
class TestIndiBayerContract(CameraContract):
    """INDI's CCD Simulator in Bayer mode: CCD_CFA says RGGB and every FITS it sends carries
    BAYERPAT, binned frames too."""

    @pytest.fixture
    def target(self, indi_colour_camera: IndiCamera) -> ContractTarget:
        indi_colour_camera.connect()
        return ContractTarget(
            camera=indi_colour_camera, clock=RealClock(), gain=30, offset=10, cool_to_c=-3.0,
            cool_tolerance_c=0.5, cool_timeout_s=20.0, short_exposure_s=0.1,
            long_exposure_s=20.0, abort_within_real_s=5.0, bayer="RGGB", bayer_binned="RGGB")


@pytest.mark.indi
@pytest.mark.timeout(120)
def test_indi_pattern_comes_from_each_frame_not_from_ccd_cfa(
        indi_colour_camera: IndiCamera, bayer_indi: IndiTestServer) -> None:
    """Real drivers switch Bayer off per frame (Y8, RGB24, mono-bin): with SIMULATE_BAYER off
    after connecting, CCD_CFA still says RGGB but the FITS has no BAYERPAT, and the frame is
    not taken for a mosaic."""
    cam = indi_colour_camera
    cam.configure(CaptureSettings(gain=30, offset=10))
    bayer_indi.setprop(f"{CCD}.SIMULATE_BAYER.INDI_DISABLED=On")
    try:
        frame = cam.expose(0.1, dark=True)
        assert cam.info.bayer_pattern == "RGGB" and "BAYERPAT" not in cam.last_header
        assert frame.bayer_pattern is None
    finally:
        bayer_indi.setprop(f"{CCD}.SIMULATE_BAYER.INDI_ENABLED=On")
    assert cam.expose(0.1, dark=True).bayer_pattern == "RGGB"


def test_indi_rgb_frames_are_refused_with_a_reason(tmp_path: Path) -> None:
    """A 3-plane FITS (INDI_RGB capture format) is not a calibration frame."""
    from astropy.io import fits

    blob = tmp_path / "rgb.fits"
    fits.PrimaryHDU(np.zeros((3, 4, 6), dtype=np.uint16)).writeto(blob)
    with pytest.raises(ExposureFailed, match=r"3-plane colour image.*raw 16-bit mosaics only"):
        decode_fits(blob.read_bytes())
