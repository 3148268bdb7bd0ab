"""The combination kernels: sorting networks, numba == numpy bit for bit, engine choice."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from calibd.capture.combine import Rejection
from calibd.capture.combine import combine_arrays
from calibd.capture.combine import rejection_mask
from calibd.capture.combine import resolve_engine
from calibd.capture.combine.kernels import NO_NUMBA_ENV
from calibd.capture.combine.kernels import Diagnostics
from calibd.capture.combine.kernels import combine_block_numpy
from calibd.capture.combine.kernels import make_plan
from calibd.capture.combine.kernels import numba_available
from calibd.capture.combine.kernels import prune_network
from calibd.capture.combine.kernels import sorting_network

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba not installed/disabled")

ALL_REJECTIONS = [
    Rejection(),
    Rejection(center="mean"),
    Rejection(spread="mad"),
    Rejection(iterations=0),
    Rejection(iterations=3, spread="mad", center="mean"),
    Rejection(sigma_low=0.4, sigma_high=0.3, iterations=0),  # empties some pixels: fallback
    Rejection("winsorized"),
    Rejection("winsorized", iterations=0, sigma_low=2.0, sigma_high=2.5),
    Rejection("minmax", n_low=2, n_high=1),
    Rejection("percentile"),
    Rejection("percentile", percentile_low=33.3, percentile_high=66.6),
    Rejection("percentile", percentile_low=0.0, percentile_high=100.0),
    Rejection("none"),
]


def _apply(net: tuple[tuple[int, int], ...], values: list[float]) -> list[float]:
    v = list(values)
    for i, j in net:
        if v[i] > v[j]:
            v[i], v[j] = v[j], v[i]
    return v


@pytest.mark.parametrize("n", range(1, 13))
def test_network_sorts_every_zero_one_input(n: int) -> None:
    net = sorting_network(n)
    assert all(0 <= i < j < n for i, j in net)
    for bits in itertools.product((0, 1), repeat=n):  # 0-1 principle: proves it sorts
        assert _apply(net, list(bits)) == sorted(bits)


@pytest.mark.parametrize("n", [13, 30, 31, 50, 64, 100])
def test_network_and_pruned_network_on_random_inputs(n: int) -> None:
    rng = np.random.default_rng(n)
    net = sorting_network(n)
    ranks = frozenset({(n - 1) // 2, n // 2})
    pruned = prune_network(net, ranks)
    assert len(pruned) < len(net)
    for _ in range(200):
        values = list(rng.integers(0, 20, n).astype(float))  # many ties
        want = sorted(values)
        assert _apply(net, values) == want
        got = _apply(pruned, values)
        assert all(got[r] == want[r] for r in ranks)


def _stack(rng: np.random.Generator, n: int, npix: int, integer: bool) -> np.ndarray:
    x = rng.normal(1000.0, 4.0, (n, npix))
    if integer:
        x = np.rint(x)
    x[rng.random((n, npix)) < 0.05] += 300.0  # cosmic rays
    x[rng.random((n, npix)) < 0.02] -= 200.0
    x[:, :16] = 1000.0  # all equal: zero spread
    return x.astype(np.float32)


@needs_numba
@pytest.mark.parametrize("rejection", ALL_REJECTIONS, ids=lambda r: r.describe())
@pytest.mark.parametrize("method", ["mean", "median"])
def test_numba_and_numpy_kernels_identical(rejection: Rejection, method: str) -> None:
    from calibd.capture.combine import _numba

    rng = np.random.default_rng(7)
    for n in (3, 4, 8, 31):
        if n < rejection.min_frames:
            continue
        for integer in (True, False):
            block = _stack(rng, n, 1500, integer)
            sub = rng.normal(5, 1, 1500).astype(np.float32)
            scale = rng.uniform(0.9, 1.1, n).astype(np.float32)
            plan = make_plan(n, method, rejection)  # type: ignore[arg-type]
            ip, fp = plan.packed()
            for s, sc in ((None, None), (sub, scale)):
                p = block.shape[1]
                ref = np.empty(p, np.float32)
                got = np.empty(p, np.float32)
                d1 = Diagnostics(
                    np.empty(p), np.empty(p), np.empty(p, np.int64), np.empty(p, np.int64)
                )
                d2 = Diagnostics(
                    np.empty(p), np.empty(p), np.empty(p, np.int64), np.empty(p, np.int64)
                )
                counts = combine_block_numpy(block, 0, p, s, sc, ref, plan, d1)
                e = np.empty(0, np.float32)
                counts2 = _numba.combine_f32(
                    block,
                    0,
                    p,
                    e if s is None else s,
                    e if sc is None else sc,
                    got,
                    ip,
                    fp,
                    plan.pairs,
                    d2.lo,
                    d2.hi,
                    d2.a,
                    d2.b,
                )
                assert counts == tuple(counts2)
                np.testing.assert_array_equal(got, ref)
                np.testing.assert_array_equal(d1.a, d2.a)
                np.testing.assert_array_equal(d1.b, d2.b)
                np.testing.assert_array_equal(d1.lo, d2.lo)
                np.testing.assert_array_equal(d1.hi, d2.hi)


@needs_numba
@pytest.mark.parametrize("rejection", ALL_REJECTIONS, ids=lambda r: r.describe())
def test_raw_uint16_kernel_matches_float_kernel(rejection: Rejection) -> None:
    from calibd.capture.combine import _numba

    rng = np.random.default_rng(3)
    n, p = 9, 2000
    values = np.clip(_stack(rng, n, p, True), 0, 65535).astype(np.uint16)
    values[0, :5] = [0, 1, 32767, 32768, 65535]  # decoding corner cases
    raw = np.ascontiguousarray((values ^ 0x8000).astype(">u2").view(np.uint16))
    plan = make_plan(n, "mean", rejection)
    ip, fp = plan.packed()
    e = np.empty(0, np.float32)
    e64, ei = np.empty(0), np.empty(0, np.int64)
    a = np.empty(p, np.float32)
    b = np.empty(p, np.float32)
    ca = _numba.combine_u16(raw, 0, p, e, e, a, ip, fp, plan.pairs, e64, e64, ei, ei)
    cb = _numba.combine_f32(
        values.astype(np.float32), 0, p, e, e, b, ip, fp, plan.pairs, e64, e64, ei, ei
    )
    assert tuple(ca) == tuple(cb)
    np.testing.assert_array_equal(a, b)
    sub = rng.normal(3, 1, p).astype(np.float32)  # float tiles on the raw path
    scale = rng.uniform(0.5, 2, n).astype(np.float32)
    ca = _numba.combine_u16(raw, 0, p, sub, scale, a, ip, fp, plan.pairs, e64, e64, ei, ei)
    cb = _numba.combine_f32(
        values.astype(np.float32), 0, p, sub, scale, b, ip, fp, plan.pairs, e64, e64, ei, ei
    )
    assert tuple(ca) == tuple(cb)
    np.testing.assert_array_equal(a, b)


@needs_numba
def test_engines_agree_through_the_public_api() -> None:
    rng = np.random.default_rng(11)
    stack = _stack(rng, 12, 40 * 37, True).reshape(12, 40, 37)
    for rejection in ALL_REJECTIONS:
        a = combine_arrays(stack, rejection=rejection, engine="numba", memory_budget_bytes=1)
        b = combine_arrays(stack, rejection=rejection, engine="numpy")
        np.testing.assert_array_equal(a.data, b.data)
        assert (a.rejected_low, a.rejected_high) == (b.rejected_low, b.rejected_high)
        np.testing.assert_array_equal(
            rejection_mask(stack, rejection, engine="numba"),
            rejection_mask(stack, rejection, engine="numpy"),
        )
        assert a.engine == "numba" and b.engine == "numpy"


def test_engine_choice_and_the_no_numba_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_engine("numpy") == "numpy"
    with pytest.raises(ValueError, match="engine"):
        resolve_engine("fast")  # type: ignore[arg-type]
    monkeypatch.setenv(NO_NUMBA_ENV, "1")
    assert resolve_engine("auto") == "numpy"
    with pytest.raises(RuntimeError, match=NO_NUMBA_ENV):
        resolve_engine("numba")
    result = combine_arrays(np.ones((3, 2, 2)), engine="auto")
    assert result.engine == "numpy"
    monkeypatch.setenv(NO_NUMBA_ENV, "0")
    assert resolve_engine("auto") == ("numba" if numba_available() else "numpy")


def test_plan_prunes_the_network_only_when_it_may() -> None:
    one_pass = make_plan(30, "mean", Rejection())
    assert not one_pass.full_sort and 0 < len(one_pass.pairs) < len(sorting_network(30))
    assert make_plan(30, "median", Rejection()).full_sort
    assert make_plan(30, "mean", Rejection(iterations=2)).full_sort
    assert make_plan(30, "mean", Rejection(spread="mad")).full_sort
    assert make_plan(30, "mean", Rejection("minmax")).full_sort
    assert not make_plan(30, "mean", Rejection("none")).sort_needed
