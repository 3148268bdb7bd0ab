"""The exposure / brightness search on synthetic linear sensors: convergence and bounded failure."""

from __future__ import annotations

import pytest

from calibd.capture.flats.search import SearchFailed
from calibd.capture.flats.search import SearchSpec
from calibd.capture.flats.search import search
from calibd.capture.flats.skymodel import SkyModel

BIAS = 500.0


def sensor(rate: float, clip: float = 65535.0, calls: list[float] | None = None):  # type: ignore[no-untyped-def]
    def measure(x: float) -> float:
        if calls is not None:
            calls.append(x)
        return min(clip, BIAS + rate * x)
    return measure


SPEC = SearchSpec(target_adu=20000, tolerance_adu=2000, x_min=0.01, x_max=30, bias_adu=BIAS)


@pytest.mark.parametrize("rate", [700, 5000, 40000, 300000, 1.5e6])
def test_converges_in_few_frames_from_a_cold_start(rate: float) -> None:
    result = search(SPEC, sensor(rate))
    assert abs(result.level - 20000) <= 2000
    assert result.frames <= 4
    assert result.x == pytest.approx(19500 / rate, rel=0.11)


def test_remembered_start_takes_one_frame() -> None:
    result = search(SPEC, sensor(5000), start=3.9)
    assert result.frames == 1


def test_no_light_is_reported_after_a_bounded_number_of_frames() -> None:
    calls: list[float] = []
    with pytest.raises(SearchFailed) as info:
        search(SPEC, sensor(0.0, calls=calls))
    assert info.value.kind == "no-light"
    assert "no light" in str(info.value)
    assert len(calls) <= SPEC.max_frames and calls[-1] == 30


def test_too_dim_and_too_bright() -> None:
    with pytest.raises(SearchFailed) as dim:
        search(SPEC, sensor(100.0))
    assert dim.value.kind == "too-dim" and "too dim" in str(dim.value)
    assert dim.value.frames <= 4
    with pytest.raises(SearchFailed) as bright:
        search(SPEC, sensor(1e8))
    assert bright.value.kind == "too-bright" and "too bright" in str(bright.value)
    assert bright.value.frames <= 4


def test_saturation_below_the_target_is_recognised() -> None:
    # A sensor that clips at 15,000 ADU never reaches 20,000.
    with pytest.raises(SearchFailed) as info:
        search(SPEC, sensor(20000.0, clip=15000.0))
    assert "saturates" in str(info.value)
    assert info.value.frames <= SPEC.max_frames


def test_integer_brightness_search() -> None:
    spec = SearchSpec(target_adu=20000, tolerance_adu=2000, x_min=1, x_max=1023, bias_adu=BIAS,
                      integer=True, what="brightness", unit="")
    result = search(spec, sensor(97.8 * 3.0))  # ADU per brightness unit at a fixed exposure
    assert float(result.x).is_integer()
    assert abs(result.level - 20000) <= 2000


def test_nonlinear_panel_still_converges_by_fit_and_bisection() -> None:
    def measure(x: float) -> float:  # a panel whose output rises with the square root
        return BIAS + 8000.0 * x ** 0.5

    result = search(SPEC, measure)
    assert abs(result.level - 20000) <= 2000
    assert result.frames <= 6


def test_sky_model_predicts_exposure_in_a_dimming_sky() -> None:
    import math

    tau = 300.0  # the sky dims by e every 5 minutes

    def rate(t: float) -> float:
        return 50000.0 * math.exp(-t / tau)

    model = SkyModel(fallback_beta=-1 / tau)
    for t in (0.0, 20.0, 40.0):
        model.add(t, 1.0, rate(t + 0.5) * 1.0)
    e = model.exposure_for(19500.0, 60.0)
    assert e is not None
    collected = 50000.0 * tau * (math.exp(-60 / tau) - math.exp(-(60 + e) / tau))
    assert collected == pytest.approx(19500.0, rel=0.01)
    # Too late: the sky will never deliver the signal.
    assert model.exposure_for(19500.0, 3000.0) == math.inf
