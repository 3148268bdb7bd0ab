"""Memory stays bounded with large frames: the simulator's frame making, the FITS writer, the
writer's queue, and ``calibd run`` as a whole (a real subprocess, peak RSS from ``os.wait4``)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from astropy.io import fits

from calibd.capture.library import fitsio
from calibd.capture.library.fitsio import write_image
from calibd.capture.library.index import Index
from calibd.capture.library.writer import FrameWriter
from calibd.capture.library.writer import WriteJob
from calibd.simulators.profiles import get_profile
from calibd.simulators.sensor import Illumination
from calibd.simulators.sensor import SensorModel
from tests.support import REPO
from tests.support import write_plan

MB = 2**20
# Runs argv[1:] and prints its exit status, then its peak RSS in KiB (ru_maxrss from wait4).
_LAUNCHER = """
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
code = os.waitstatus_to_exitcode(status)
print(code, file=sys.stderr)
print(usage.ru_maxrss)
sys.exit(code)
"""


def test_a_large_frame_is_made_in_bounded_memory_with_the_same_physics() -> None:
    # 6 Mpx: above the size where frames are made in bands from float16 maps.
    profile = get_profile("small").with_overrides(width=3000, height=2000)
    sensor = SensorModel(profile, noise_seed=3)
    npix = profile.width * profile.height
    tracemalloc.start()
    try:
        bias = sensor.frame(exposure_s=profile.min_exposure_s, temperature_c=0, gain=100,
                            offset=50)
        bias2 = sensor.frame(exposure_s=profile.min_exposure_s, temperature_c=0, gain=100,
                             offset=50)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Three uint16 frames (2 bytes/px each) and a float16 dark map (2 bytes/px), a 16 MB noise
    # bank and two 4 MB bands; full-frame float32 maps and temporaries took over 25 bytes/px.
    assert peak < 8 * npix + 40 * MB, f"peak {peak / MB:.0f} MB for {npix / 1e6:.0f} Mpx"
    assert bias.dtype == np.uint16 and bias.shape == (profile.height, profile.width)
    k = 1.0 / sensor.e_per_adu16(100)
    assert np.median(bias) == pytest.approx(sensor.pedestal_adu16(50), abs=1.5 * sensor.adu_step)
    noise = np.std(bias.astype(np.float64) - bias2) / np.sqrt(2)
    assert noise == pytest.approx(sensor.read_noise_e(100) * k, rel=0.1)
    dark = sensor.frame(exposure_s=600, temperature_c=10, gain=100, offset=50)
    # Row by row (bands are made separately), the dark signal is the model's.
    truth = np.median(sensor.dark_rate_map(10), axis=1) * 600 * k
    level = np.median(dark.astype(np.float64) - bias, axis=1)
    assert np.abs(level - truth).max() < 0.05 * truth.mean()


def test_a_large_colour_frame_is_lit_per_channel_in_bounded_memory() -> None:
    # 6 Mpx colour sensor, binned by colour: the channel weights are applied in the bands.
    profile = get_profile("small-colour").with_overrides(width=3000, height=2000)
    sensor = SensorModel(profile, noise_seed=3)
    npix = profile.width * profile.height
    light = Illumination(flux_e_per_s=20000.0, source="sky")
    sensor.frame(exposure_s=1, temperature_c=0, gain=100, offset=50, light=light)  # maps made
    tracemalloc.start()
    try:
        lit = sensor.frame(exposure_s=1, temperature_c=0, gain=100, offset=50, light=light)
        binned = sensor.frame(exposure_s=1, temperature_c=0, gain=100, offset=50, binning=2,
                              light=light)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The frames (2 + 0.5 bytes/px), the bin-2 maps (float16) and two bands: no full-frame
    # float32/float64 temporaries (one would be 24 MB, 48 MB).
    assert peak < 4 * npix + 24 * MB, f"peak {peak / MB:.0f} MB for {npix / 1e6:.0f} Mpx"
    k = 1.0 / sensor.e_per_adu16(100)
    truth = profile.channel_response("sky")
    for frame in (lit, binned):
        for (r, c), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), "RGGB", strict=True):
            level = float(np.median(frame[r::2, c::2])) - sensor.pedestal_adu16(50)
            assert level == pytest.approx(20000.0 * truth[colour] * k, rel=0.02)


@pytest.mark.parametrize("shape", [(41, 37), (700, 1313), (1, 1)])
def test_frames_are_written_byte_for_byte_as_astropy_writes_them(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    data.flat[0], data.flat[-1] = 0, 65535
    header = fits.Header([("IMAGETYP", "Bias Frame"), ("GAIN", 100)])
    ours, theirs = io.BytesIO(), io.BytesIO()
    write_image(ours, data, header)
    fits.PrimaryHDU(data=data, header=header).writeto(theirs)
    assert ours.getvalue() == theirs.getvalue()
    with fits.open(io.BytesIO(ours.getvalue())) as hdul:
        assert np.array_equal(hdul[0].data, data)


def _job(root: Path, seq: int) -> WriteJob:
    return WriteJob(path=root / f"f{seq}.fits", data=np.zeros((512, 1024), dtype=np.uint16),
                    header=fits.Header(), row={"run_id": 1, "cell_key": "c", "seq": seq})


def test_the_writer_holds_images_up_to_its_byte_bound_but_not_during_fsync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = {"image": threading.Event(), "fsync": threading.Event()}
    real_write, real_fsync = fitsio.write_image, os.fsync

    def slow_image(*args: Any) -> None:  # a slow disk while the image goes into the file
        gate["image"].wait(10)
        real_write(*args)

    def slow_fsync(fd: int) -> None:  # ... and while it is flushed
        gate["fsync"].wait(10)
        real_fsync(fd)

    monkeypatch.setattr(fitsio, "write_image", slow_image)
    monkeypatch.setattr(os, "fsync", slow_fsync)
    with FrameWriter(Index(tmp_path), queue_size=8, max_bytes=int(1.5 * MB),
                     fsync=True) as writer:
        writer.submit(_job(tmp_path, 1))  # 1 MB, accepted: no image is held
        second = threading.Thread(target=writer.submit, args=(_job(tmp_path, 2),))
        second.start()
        second.join(1.0)
        assert second.is_alive(), "a second 1 MB image was accepted beyond the 1.5 MB bound"
        gate["image"].set()  # frame 1's image is in its file; its fsync still hangs
        second.join(5)
        assert not second.is_alive(), "an image being fsynced still held the writer's bound"
        assert writer.pending == 2
        gate["fsync"].set()
    assert sorted(p.name for p in tmp_path.glob("f*.fits")) == ["f1.fits", "f2.fits"]


def test_calibd_run_on_a_large_sensor_stays_within_a_memory_ceiling(tmp_path: Path) -> None:
    """Three 11.7 Mpx bias frames (23 MB each): peak RSS was ~450 MB, now ~180 MB."""
    config = tmp_path / "calibd.yaml"
    config.write_text(yaml.safe_dump({
        "library": {"root": str(tmp_path / "lib"), "min_free_mb": 10},
        "clock": {"kind": "simulated", "scale": 1000.0},
        "cameras": {"sim": {"driver": "simulator", "profile": "asi294mm", "offset": 50}},
        "masters": {"auto": False},
    }), encoding="utf-8")
    plan = write_plan(tmp_path / "bias.yaml", "defaults: {offset: 50}\n"
                      "warmup: {enabled: false}\n"
                      "cooling: {dwell_s: 0, tolerance_c: 0.5, ramp_c_per_min: 60}\n"
                      "sets:\n  - {kind: bias, gains: [100], setpoints_c: [0], count: 3}\n")
    # Linux keeps the high-water mark of the address space a child execs from: spawned straight
    # from this test process (hundreds of MB late in the suite), calibd's ru_maxrss would count
    # pytest's own memory. A small launcher process spawns it and reports its figure instead.
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "calibd",
                           "run", str(plan), "--config", str(config)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(list((tmp_path / "lib").rglob("*.fits"))) == 3
    peak_mb = int(done.stdout.strip().splitlines()[-1]) / 1024
    assert peak_mb < 280, f"calibd run peaked at {peak_mb:.0f} MB"
