"""The shared camera contract suite.

Every camera driver (simulator, INDI, Alpaca, ZWO) runs these same tests. A driver's test module
subclasses :class:`CameraContract` and provides a ``target`` fixture returning a
:class:`ContractTarget` around a *connected* camera. The tests check the protocol (settings applied
and read back, sizes, header values, temperatures reached, errors raised), not sensor physics.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from calibd.drivers.clock import Clock
from calibd.drivers.contracts import Camera
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import Frame
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import SettingRejected
from tests.support import write_frame


@dataclass
class ContractTarget:
    """A connected camera plus what the suite may expect of it."""

    camera: Camera
    clock: Clock
    gain: int  # a valid gain to use for ordinary exposures
    offset: int
    cool_to_c: float | None = None  # a reachable set-point; None skips the cooler tests
    cool_tolerance_c: float = 1.0
    cool_timeout_s: float = 600.0  # clock seconds
    short_exposure_s: float = 0.1
    long_exposure_s: float = 60.0  # long enough to abort in the middle (clock seconds)
    check_binning: bool = True
    # Max real seconds for an abort to end a running exposure.
    abort_within_real_s: float = 10.0
    # An exposure (clock seconds) that takes about 1 real second; None: worked out from the
    # clock (a device on a faster clock than ``clock`` says sets it).
    overlap_exposure_s: float | None = None
    # Colour sensors: the BAYERPAT of a full frame, and of a 2x2-binned one (None where the
    # driver bins colour into mono, or cannot tell). Both None for a monochrome camera.
    bayer: str | None = None
    bayer_binned: str | None = None


@dataclass
class Running:
    """One ``expose()`` on a worker thread; it ends in ``frames`` or ``errors``."""

    thread: threading.Thread
    frames: list[Frame]
    errors: list[BaseException]


def expose_in_background(camera: Camera, exposure_s: float) -> Running:
    """Start ``camera.expose(exposure_s, dark=True)`` on a daemon thread and return 0.3 real
    seconds later, when it is under way."""
    frames: list[Frame] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            frames.append(camera.expose(exposure_s, dark=True))
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.3)
    return Running(thread, frames, errors)


class CameraContract:
    """Mix into a test class that defines a ``target`` fixture."""

    def test_info_is_sane(self, target: ContractTarget) -> None:
        info = target.camera.info
        assert target.camera.connected
        assert info.width > 0 and info.height > 0
        assert info.gain_min <= target.gain <= info.gain_max
        assert info.offset_min <= target.offset <= info.offset_max
        assert 0 < info.min_exposure_s < info.max_exposure_s
        assert info.camera_id
        assert 1 in info.binnings
        assert info.readout_modes

    def test_connect_is_idempotent(self, target: ContractTarget) -> None:
        target.camera.connect()
        assert target.camera.connected

    def test_settings_are_applied_and_read_back(self, target: ContractTarget) -> None:
        cam = target.camera
        info = cam.info
        for gain in sorted({info.gain_min, target.gain, info.gain_max}):
            applied = cam.configure(CaptureSettings(gain=gain, offset=target.offset))
            assert applied.gain == gain
            assert applied.offset == target.offset
            assert applied.binning == 1

    def test_out_of_range_gain_is_rejected(self, target: ContractTarget) -> None:
        cam = target.camera
        with pytest.raises(SettingRejected):
            cam.configure(CaptureSettings(gain=cam.info.gain_max + 1000, offset=target.offset))
        # The camera is still usable afterwards.
        applied = cam.configure(CaptureSettings(gain=target.gain, offset=target.offset))
        assert applied.gain == target.gain

    def test_bias_frame_shape_and_metadata(self, target: ContractTarget) -> None:
        cam = target.camera
        cam.configure(CaptureSettings(gain=target.gain, offset=target.offset))
        before = target.clock.now()
        frame = cam.expose(cam.info.min_exposure_s, dark=True)
        assert frame.data.dtype == np.uint16
        assert frame.data.ndim == 2
        assert frame.shape == (cam.info.height, cam.info.width)
        assert frame.dark
        assert frame.settings.gain == target.gain
        assert frame.settings.offset == target.offset
        assert frame.exposure_s >= cam.info.min_exposure_s * 0.999
        # Start time is on the camera's clock, after the call began (1 s slack for rounding).
        assert (frame.start_utc - before).total_seconds() > -1.0
        assert frame.start_utc.tzinfo is not None

    def test_dark_exposure_time_is_reported(self, target: ContractTarget) -> None:
        cam = target.camera
        cam.configure(CaptureSettings(gain=target.gain, offset=target.offset))
        frame = cam.expose(target.short_exposure_s, dark=True)
        assert frame.exposure_s == pytest.approx(target.short_exposure_s, rel=0.01, abs=1e-3)

    def test_binning_changes_frame_size(self, target: ContractTarget) -> None:
        cam = target.camera
        if not target.check_binning or 2 not in cam.info.binnings:
            pytest.skip("camera offers no 2x2 binning")
        applied = cam.configure(CaptureSettings(gain=target.gain, offset=target.offset, binning=2))
        assert applied.binning == 2
        frame = cam.expose(target.short_exposure_s, dark=True)
        assert frame.settings.binning == 2
        assert frame.shape == (cam.info.height // 2, cam.info.width // 2)
        cam.configure(CaptureSettings(gain=target.gain, offset=target.offset, binning=1))
        frame = cam.expose(target.short_exposure_s, dark=True)
        assert frame.shape == (cam.info.height, cam.info.width)

    def test_bayer_pattern_is_reported_and_carried_by_each_frame(
            self, target: ContractTarget) -> None:
        cam = target.camera
        assert cam.info.bayer_pattern == target.bayer
        cam.configure(CaptureSettings(gain=target.gain, offset=target.offset))
        assert cam.expose(target.short_exposure_s, dark=True).bayer_pattern == target.bayer
        if target.check_binning and 2 in cam.info.binnings:
            cam.configure(CaptureSettings(gain=target.gain, offset=target.offset, binning=2))
            binned = cam.expose(target.short_exposure_s, dark=True)
            cam.configure(CaptureSettings(gain=target.gain, offset=target.offset, binning=1))
            assert binned.bayer_pattern == target.bayer_binned

    def test_fits_keywords_describe_the_pixels_written(self, target: ContractTarget,
                                                      tmp_path: Path) -> None:
        """calibd's writer: the pixels as delivered (top-down), and the Bayer keywords of this
        frame (its pattern, offsets folded in) or none for a mono image."""
        cam = target.camera
        applied = cam.configure(CaptureSettings(gain=target.gain, offset=target.offset))
        frame = cam.expose(target.short_exposure_s, dark=True)
        path = write_frame(tmp_path / "frame.fits", frame, cam.info)
        with fits.open(path) as hdul:
            header, data = hdul[0].header, hdul[0].data
        assert np.array_equal(data, frame.data) and header["ROWORDER"] == "TOP-DOWN"
        assert header["XBINNING"] == applied.binning
        if target.bayer is None:
            assert not {"BAYERPAT", "XBAYROFF", "YBAYROFF"} & set(header)
        else:
            assert (header["BAYERPAT"], header["XBAYROFF"], header["YBAYROFF"]) == (
                target.bayer, 0, 0)

    def test_negative_exposure_is_rejected(self, target: ContractTarget) -> None:
        with pytest.raises(SettingRejected):
            target.camera.expose(-1.0, dark=True)

    def test_cooler_reaches_setpoint(self, target: ContractTarget) -> None:
        cam = target.camera
        if target.cool_to_c is None or not cam.info.has_cooler:
            pytest.skip("no cooler test for this target")
        cam.set_cooler(True, target.cool_to_c)
        deadline = target.clock.monotonic() + target.cool_timeout_s
        state = cam.cooler_state()
        while target.clock.monotonic() < deadline:
            state = cam.cooler_state()
            if abs(state.temperature_c - target.cool_to_c) <= target.cool_tolerance_c:
                break
            target.clock.sleep(1.0)
        assert state.on
        if state.setpoint_c is not None:
            assert state.setpoint_c == pytest.approx(target.cool_to_c, abs=0.05)
        assert abs(state.temperature_c - target.cool_to_c) <= target.cool_tolerance_c
        if state.power_pct is not None:
            assert 0.0 <= state.power_pct <= 100.0

    def test_abort_ends_a_running_exposure(self, target: ContractTarget) -> None:
        cam = target.camera
        cam.configure(CaptureSettings(gain=target.gain, offset=target.offset))
        first = expose_in_background(cam, target.long_exposure_s)
        started = time.monotonic()
        cam.abort()
        first.thread.join(target.abort_within_real_s)
        assert not first.thread.is_alive(), "abort() did not end the exposure"
        assert time.monotonic() - started < target.abort_within_real_s
        assert first.errors and isinstance(first.errors[0], ExposureFailed)
        # The camera takes the next frame normally.
        frame = cam.expose(target.short_exposure_s, dark=True)
        assert frame.data.size > 0

    def test_a_second_exposure_is_refused_while_one_runs(self, target: ContractTarget) -> None:
        """One exposure at a time: of two ``expose()`` calls from two threads at once, one
        raises ExposureFailed at once and the other returns its frame (normally the one
        started first; on a loaded machine the thread may start late, so either may win)."""
        cam = target.camera
        cam.configure(CaptureSettings(gain=target.gain, offset=target.offset))
        # About 1 real second: long enough to overlap, short for the suite.
        exposure_s = target.overlap_exposure_s or 1.0 / target.clock.real_seconds(1.0)
        exposure_s = min(max(exposure_s, cam.info.min_exposure_s), cam.info.max_exposure_s)
        first = expose_in_background(cam, exposure_s)
        started = time.monotonic()
        errors: list[BaseException] = []
        frames: list[Frame] = []
        try:
            frames.append(cam.expose(exposure_s, dark=True))
        except ExposureFailed as err:
            errors.append(err)
            # Refused at once (a loaded CI machine: seconds, not the exposure's length).
            assert time.monotonic() - started < 3.0, "the second exposure was not refused at once"
        first.thread.join(target.clock.real_seconds(2 * exposure_s) + 30.0)
        assert not first.thread.is_alive(), "the first exposure did not end"
        frames += first.frames
        errors += first.errors
        assert len(frames) == 1 and len(errors) == 1, (frames, errors)
        assert isinstance(errors[0], ExposureFailed) and "already running" in str(errors[0])
        frame = frames[0]
        assert frame.exposure_s == pytest.approx(exposure_s, rel=0.01, abs=1e-3)
        assert frame.shape == (cam.info.height, cam.info.width)
