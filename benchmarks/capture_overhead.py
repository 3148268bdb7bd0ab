"""Capture overhead: does writing FITS files overlap the next exposure?

Runs a 50-frame bias set on the simulated 26 MP camera (ASI2600MM-like, 6248x4176) on the real
clock with a configured read-out time, through the real sequencer and background writer (fsync
on), and compares the wall time of the set with the camera's own time (sum of exposure plus
read-out of every frame, measured around each ``expose`` call in the same run).

    python benchmarks/capture_overhead.py [--frames 50] [--readout 0.6] [--dir DIR]

Last line: ``ratio=... wall_s=... camera_s=... frames=... readout_s=... writer_busy_s=...``.
Target: ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from calibd.capture.library.library import Library
from calibd.capture.plans.load import load_plan
from calibd.capture.plans.load import plan_digest
from calibd.capture.plans.resolve import CameraContext
from calibd.capture.plans.resolve import resolve
from calibd.capture.sequencer.sequencer import Sequencer
from calibd.capture.sequencer.sequencer import SequencerOptions
from calibd.capture.sequencer.status import RunStatus
from calibd.drivers.clock import RealClock
from calibd.drivers.contracts import Frame
from calibd.simulators.camera import SimulatedCamera
from calibd.simulators.profiles import get_profile

PLAN = """
defaults: {offset: 50}
cooling: {dwell_s: 0, tolerance_c: 0.5, ramp_c_per_min: 60}
warmup: {enabled: false}
sets:
  - kind: bias
    gains: [100]
    setpoints_c: [0]
    count: %d
"""


class TimedCamera(SimulatedCamera):
    """The simulator, with the time of every ``expose`` call recorded."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[tuple[float, float]] = []
        self._calls_lock = threading.Lock()

    def expose(self, exposure_s: float, *, dark: bool, timeout_s: float | None = None) -> Frame:
        t0 = time.monotonic()
        frame = super().expose(exposure_s, dark=dark, timeout_s=timeout_s)
        with self._calls_lock:
            self.calls.append((t0, time.monotonic()))
        return frame


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--readout", type=float, default=0.6, help="camera read-out time, s")
    ap.add_argument("--profile", default="asi2600mm")
    ap.add_argument("--dir", type=Path, default=None, help="library folder (default: a temp dir)")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="calibd-bench-", dir=args.dir))
    try:
        plan_file = workdir / "bias.yaml"
        plan_file.write_text(PLAN % args.frames)
        profile = get_profile(args.profile).with_overrides(readout_s=args.readout)
        clock = RealClock()
        # Ambient at the set-point: the cooler holds it from the start, so only capture is timed.
        camera = TimedCamera(profile, clock, ambient_c=0.0, name="bench")
        camera.connect()
        camera.sensor.frame(exposure_s=0.001, temperature_c=0, gain=100, offset=50)  # warm maps
        plan, located = load_plan(plan_file)
        resolved = resolve(plan, located, CameraContext(info=camera.info))
        with Library.open(workdir / "lib", camera="bench") as library:
            handle = library.begin_run(resolved, "bench", plan_digest(located))
            written_at: list[float] = []

            def on_status(status: RunStatus) -> None:
                if status.frames_session > len(written_at):
                    written_at.append(time.monotonic())

            seq = Sequencer(camera=camera, camera_name="bench", clock=clock, library=library,
                            plan=resolved, run=handle, reporter=on_status,
                            options=SequencerOptions(fsync=True))
            result = seq.run()
        assert result.complete and result.frames_written == args.frames
        written = sorted((workdir / "lib").rglob("*.fits"))
        assert len(written) == args.frames
        wall_s = written_at[-1] - camera.calls[0][0]
        camera_s = sum(end - start for start, end in camera.calls)
        ratio = wall_s / camera_s
        size_mb = written[0].stat().st_size / 2**20
        print(f"{args.frames} frames of {profile.width}x{profile.height} ({size_mb:.1f} MB each), "
              f"read-out {args.readout:.2f} s, fsync on")
        print(f"camera's own time (exposure + read-out, summed): {camera_s:.2f} s")
        print(f"wall time, first exposure start to last frame written and indexed: {wall_s:.2f} s")
        print(f"ratio={ratio:.4f} wall_s={wall_s:.2f} camera_s={camera_s:.2f} "
              f"frames={args.frames} readout_s={args.readout} "
              f"writer_busy_s={result.writer_busy_s:.2f}")
        return 0 if ratio <= 1.05 else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
