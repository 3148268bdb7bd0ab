"""Flat exposure search: test frames needed to reach the target, cold and remembered.

Over many seeded cold starts — random filter transmission (2 %..100 %, log-uniform), panel
brightness and camera gain — the simulated camera takes real frames of the simulated flat panel
through a filter, and :func:`capture.flats.search.search` looks for the exposure that puts the
median of the central region at 20,000 ADU ± 10 %. Each case is then searched again starting from
the remembered answer. Cases whose answer lies outside the allowed exposures (or above the
sensor's saturation) must fail with the right error within the frame budget; they are counted
separately.

    python benchmarks/flat_convergence.py [--cases 300] [--seed 1]

Last line: ``cold_mean=... cold_max=... warm_max=... cases=... unsolvable=... failures_ok=...``.
Targets: cold mean <= 3, cold max <= 6, remembered <= 1.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys

from calibd.capture.flats.search import SearchFailed
from calibd.capture.flats.search import SearchSpec
from calibd.capture.flats.search import search
from calibd.capture.sequencer.checks import frame_stats
from calibd.drivers.contracts import CaptureSettings
from calibd.simulators import optics
from calibd.simulators.accessories import SimulatedFilterWheel
from calibd.simulators.accessories import SimulatedFlatPanel
from calibd.simulators.clock import SteppedClock
from calibd.simulators.observatory import build_observatory
from calibd.simulators.profiles import get_profile

TARGET = 20000.0
TOL = 0.10
MIN_EXP, MAX_EXP = 0.01, 30.0


def one_case(rng: random.Random, case: int) -> tuple[str, int, int]:
    """Returns (outcome, cold frames, warm frames); outcome 'ok' or the failure kind."""
    transmission = math.exp(rng.uniform(math.log(0.02), math.log(1.0)))
    brightness = rng.randint(20, 1023)
    gain = rng.randint(30, 300)
    name = f"F{case}"
    optics.TRANSMISSION[name] = transmission
    clock = SteppedClock()
    wheel = SimulatedFilterWheel(clock, (name,), seconds_per_slot=0.0)
    panel = SimulatedFlatPanel(clock, max_brightness=1023, settle_s=0.0)
    obs = build_observatory(get_profile("small"), clock, noise_seed=case, wheel=wheel,
                            panel=panel)
    cam = obs.camera
    for dev in (cam, wheel, panel):
        dev.connect()
    cam.configure(CaptureSettings(gain=gain, offset=50))
    panel.light(brightness)
    bias_frame = cam.expose(cam.info.min_exposure_s, dark=True)
    bias = frame_stats(bias_frame.data).level_adu
    egain = bias_frame.electrons_per_adu or 1.0
    saturation = min(65535.0, bias + (cam.info.full_well_e or 1e9) / egain)
    spec = SearchSpec(target_adu=TARGET, tolerance_adu=TARGET * TOL, x_min=MIN_EXP,
                      x_max=MAX_EXP, bias_adu=bias, saturation_adu=saturation)

    def measure(x: float) -> float:
        return frame_stats(cam.expose(x, dark=False).data).level_adu

    try:
        cold = search(spec, measure)
    except SearchFailed as err:
        return err.kind, err.frames, 0
    warm = search(spec, measure, start=cold.x)
    return "ok", cold.frames, warm.frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    cold: list[int] = []
    warm: list[int] = []
    failures: dict[str, list[int]] = {}
    for case in range(args.cases):
        outcome, c, w = one_case(rng, case)
        if outcome == "ok":
            cold.append(c)
            warm.append(w)
        else:
            failures.setdefault(outcome, []).append(c)
    print(f"{len(cold)} solvable cases (target {TARGET:.0f} ADU ± {TOL:.0%}, exposures "
          f"{MIN_EXP}..{MAX_EXP} s):")
    hist = {n: cold.count(n) for n in sorted(set(cold))}
    print(f"  cold start: mean {statistics.mean(cold):.2f}, max {max(cold)} test frames; "
          f"histogram {hist}")
    print(f"  remembered: mean {statistics.mean(warm):.2f}, max {max(warm)}")
    failures_ok = all(max(v) <= 8 for v in failures.values())
    for kind, frames in sorted(failures.items()):
        print(f"  {kind}: {len(frames)} cases, failed after at most {max(frames)} frames")
    ok = statistics.mean(cold) <= 3 and max(cold) <= 6 and max(warm) <= 1 and failures_ok
    unsolvable = sum(len(v) for v in failures.values())
    print(f"cold_mean={statistics.mean(cold):.2f} cold_max={max(cold)} "
          f"warm_max={max(warm)} cases={args.cases} solvable={len(cold)} "
          f"unsolvable={unsolvable} failures_ok={failures_ok} pass={ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
