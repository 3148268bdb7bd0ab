"""A physically plausible, seeded model of a cooled CMOS sensor.

Per pixel, in electrons during an exposure of ``t`` seconds at sensor temperature ``T`` (°C):

* dark current ``D0 * 2 ** (T / doubling) * shape(x, y) * t`` with a fixed log-normal ``shape``
  (mean 1) and a fixed set of hot pixels (50-2000x the median);
* amp glow along the right edge, ``G0 * exp(-(W - 1 - x) / L) * bump(y) * t``;
* light ``flux * qe(x, y) * pattern(x, y) * t`` (PRNU, dead and cold pixels live in ``qe``);
* cosmic-ray hits (about one per cm^2 per minute), clipped at the full well.

In ADU (16-bit output): pedestal ``offset * pedestal_per_offset`` plus a fixed column pattern,
signal times the conversion gain ``2**(16 - bits) / e_per_adu(gain)`` with
``e_per_adu(gain) = 10 ** (-(gain - unity) / 200)`` (ZWO gain is 0.1 dB), Poisson noise on the
signal, read noise ``rn(gain) = rn_hi + (rn_lo - rn_hi) * exp(-gain / (0.5 * unity))`` electrons,
quantisation to the native bit depth, and clipping at the ADC's full scale.

Binning averages ``b x b`` pixels (as ZWO's software binning does). Fixed maps are drawn from the
profile's seed, so the same sensor has the same hot pixels in every process; per-frame noise comes
from the camera's own seeded generator, so a given sequence of calls yields identical frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.profiles import SensorProfile

F32 = npt.NDArray[np.float32]
# Above this many pixels, per-frame Gaussian noise is cut from a pre-drawn bank at a random offset
# (drawing 26 M normals costs ~0.4 s; slicing costs nothing).
_BANK_ABOVE_PIXELS = 4_000_000
_BANK_MARGIN = 1 << 20


@dataclass(frozen=True)
class Illumination:
    """Light reaching the sensor: ``flux_e_per_s`` per unbinned pixel where ``pattern`` is 1.

    ``pattern`` (full-resolution, float32) carries vignetting and dust; None means uniform.
    """

    flux_e_per_s: float
    pattern: F32 | None = None


@dataclass
class _Maps:
    """Fixed maps at one binning."""

    dark: F32  # mean 1 shape of the dark current, hot pixels included
    qe: F32  # relative response, PRNU / dead / cold included
    glow: F32  # amp glow shape, 1 at the edge
    column: F32  # per-column offset in ADU16 (one row, broadcast)


class SensorModel:
    """Makes frames for one profile. Not thread-safe: one camera owns one model."""

    def __init__(self, profile: SensorProfile, noise_seed: int | None = None) -> None:
        self.profile = profile
        self._rng = np.random.default_rng(noise_seed if noise_seed is not None else profile.seed)
        self._maps: dict[int, _Maps] = {}
        self._patterns: dict[tuple[int, int], F32] = {}
        self._bank: F32 | None = None
        truth = np.random.default_rng(profile.seed)
        npix = profile.width * profile.height
        n_hot = max(1, round(npix * profile.hot_fraction))
        n_dead = round(npix * profile.dead_fraction)
        n_cold = round(npix * profile.cold_fraction)
        chosen = truth.choice(npix, size=n_hot + n_dead + n_cold, replace=False)
        self.hot_index = np.sort(chosen[:n_hot])
        lo, hi = profile.hot_multiplier
        order = np.argsort(chosen[:n_hot])
        self.hot_multiplier = np.exp(
            truth.uniform(math.log(lo), math.log(hi), size=n_hot)
        ).astype(np.float32)[order]
        self.dead_index = np.sort(chosen[n_hot : n_hot + n_dead])
        self.cold_index = np.sort(chosen[n_hot + n_dead :])
        self._truth_seed = int(truth.integers(0, 2**31))

    # ----- conversions -------------------------------------------------------------------------
    @property
    def adu_step(self) -> int:
        """16-bit ADU per native ADU (16 for a 12-bit sensor, 4 for 14-bit, 1 for 16-bit)."""
        return 1 << (16 - self.profile.bit_depth)

    def e_per_adu16(self, gain: int) -> float:
        """Electrons per delivered 16-bit ADU at ``gain``."""
        native = math.pow(10.0, -(gain - self.profile.unity_gain) / 200.0)
        return native / self.adu_step

    def read_noise_e(self, gain: int, readout_mode: str = "normal") -> float:
        p = self.profile
        rn = p.read_noise_high_e + (p.read_noise_low_e - p.read_noise_high_e) * math.exp(
            -gain / (0.5 * p.unity_gain)
        )
        return rn * (0.8 if readout_mode == "low-noise" else 1.0)

    def pedestal_adu16(self, offset: int) -> float:
        return offset * self.profile.pedestal_per_offset_adu

    def dark_scale(self, temperature_c: float) -> float:
        """Median dark current in e-/s at ``temperature_c``."""
        p = self.profile
        return p.dark_e_per_s_0c * math.pow(2.0, temperature_c / p.dark_doubling_c)

    # ----- truth, for tests ------------------------------------------------------------------
    def dark_rate_map(self, temperature_c: float, binning: int = 1) -> F32:
        """Expected dark signal rate per (binned, averaged) pixel in e-/s, glow included."""
        m = self._binned(binning)
        rate = m.dark * np.float32(self.dark_scale(temperature_c))
        rate += m.glow * np.float32(self.profile.glow_e_per_s)
        return rate

    def response_map(self, binning: int = 1) -> F32:
        """Relative light response per (binned) pixel (1 = nominal; 0 = dead)."""
        return self._binned(binning).qe.copy()

    def hot_pixels_rc(self) -> npt.NDArray[np.int64]:
        """Unbinned (row, column) of every injected hot pixel, shape (n, 2)."""
        return np.stack(np.divmod(self.hot_index, self.profile.width), axis=1)

    def dead_pixels_rc(self) -> npt.NDArray[np.int64]:
        return np.stack(np.divmod(self.dead_index, self.profile.width), axis=1)

    # ----- frames ----------------------------------------------------------------------------
    def frame(
        self,
        *,
        exposure_s: float,
        temperature_c: float,
        gain: int,
        offset: int,
        binning: int = 1,
        readout_mode: str = "normal",
        light: Illumination | None = None,
    ) -> npt.NDArray[np.uint16]:
        """One image as the camera delivers it: uint16, [row, column], top-down."""
        p = self.profile
        m = self._binned(binning)
        shape = m.dark.shape
        t = max(exposure_s, 0.0)
        k = 1.0 / self.e_per_adu16(gain)  # ADU16 per electron
        nb = float(binning * binning)

        buf = np.multiply(m.dark, np.float32(t * self.dark_scale(temperature_c)))
        tmp = np.multiply(m.glow, np.float32(t * p.glow_e_per_s))
        buf += tmp
        if light is not None and light.flux_e_per_s > 0:
            np.multiply(m.qe, np.float32(t * light.flux_e_per_s), out=tmp)
            if light.pattern is not None:
                tmp *= self._binned_pattern(light.pattern, binning)
            buf += tmp
        self._cosmic_rays(buf, t, binning)
        # Shot noise (Gaussian approximation of Poisson) in electrons, then the well clips:
        # a full pixel has no shot noise left, only read noise.
        np.maximum(buf, np.float32(0.0), out=buf)
        np.multiply(buf, np.float32(1.0 / nb), out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp *= self._normals(shape)
        buf += tmp
        np.minimum(buf, np.float32(p.full_well_e), out=buf)
        rn_adu = self.read_noise_e(gain, readout_mode) * k / binning
        buf *= np.float32(k)
        np.multiply(self._normals(shape), np.float32(rn_adu), out=tmp)
        buf += tmp
        buf += m.column + np.float32(self.pedestal_adu16(offset))
        step = self.adu_step
        if step > 1:
            buf *= np.float32(1.0 / step)
        np.rint(buf, out=buf)
        np.clip(buf, 0, (1 << p.bit_depth) - 1, out=buf)
        out = buf.astype(np.uint16)
        if step > 1:
            out *= np.uint16(step)
        return out

    # ----- internals -------------------------------------------------------------------------
    def _normals(self, shape: tuple[int, ...]) -> F32:
        """Standard normal deviates, fresh per call (large frames: a window of a pre-drawn bank
        at a random offset)."""
        n = int(np.prod(shape))
        if n <= _BANK_ABOVE_PIXELS:
            return self._rng.standard_normal(size=shape, dtype=np.float32)
        if self._bank is None or self._bank.size < n + _BANK_MARGIN:
            self._bank = self._rng.standard_normal(n + _BANK_MARGIN, dtype=np.float32)
        start = int(self._rng.integers(0, self._bank.size - n))
        return self._bank[start : start + n].reshape(shape)

    def _cosmic_rays(self, buf: F32, exposure_s: float, binning: int) -> None:
        p = self.profile
        expected = p.cosmic_rate_per_cm2_min * p.area_cm2 * exposure_s / 60.0
        if expected <= 0:
            return
        hits = int(self._rng.poisson(expected))
        h, w = buf.shape
        for _ in range(hits):
            r, c = int(self._rng.integers(0, h)), int(self._rng.integers(0, w))
            energy = float(self._rng.lognormal(math.log(3000.0), 0.8)) / (binning * binning)
            length = int(self._rng.integers(1, 4))
            dr, dc = (0, 1) if self._rng.random() < 0.5 else (1, 0)
            for i in range(length):
                rr, cc = r + i * dr, c + i * dc
                if rr < h and cc < w:
                    buf[rr, cc] += np.float32(energy / length)

    def _base(self) -> _Maps:
        p = self.profile
        rng = np.random.default_rng(self._truth_seed)
        h, w = p.height, p.width
        sigma = p.dark_spread
        dark = rng.standard_normal((h, w), dtype=np.float32)
        dark *= np.float32(sigma)
        dark += np.float32(-0.5 * sigma * sigma)
        np.exp(dark, out=dark)
        flat_dark = dark.reshape(-1)
        flat_dark[self.hot_index] = self.hot_multiplier
        qe = rng.standard_normal((h, w), dtype=np.float32)
        qe *= np.float32(p.prnu)
        qe += np.float32(1.0)
        flat_qe = qe.reshape(-1)
        flat_qe[self.dead_index] = 0.0
        flat_qe[self.cold_index] = rng.uniform(0.3, 0.7, size=self.cold_index.size)
        x = np.arange(w, dtype=np.float32)
        y = np.arange(h, dtype=np.float32)
        gx = np.exp(-(w - 1 - x) / np.float32(max(p.glow_length_frac * w, 1.0)))
        gy = 1.0 + 0.5 * np.exp(-(((y - 0.5 * h) / np.float32(0.3 * h)) ** 2))
        glow = np.multiply.outer(gy.astype(np.float32), gx.astype(np.float32))
        column = (rng.standard_normal(w) * p.column_sigma_adu).astype(np.float32)
        return _Maps(dark=dark, qe=qe, glow=glow, column=column)

    def _binned(self, binning: int) -> _Maps:
        if binning in self._maps:
            return self._maps[binning]
        if binning not in self.profile.binnings:
            raise ValueError(f"binning {binning} not offered by {self.profile.model}")
        base = self._maps.get(1) or self._base()
        self._maps[1] = base
        if binning == 1:
            return base
        maps = _Maps(
            dark=_block_mean(base.dark, binning),
            qe=_block_mean(base.qe, binning),
            glow=_block_mean(base.glow, binning),
            column=_bin_columns(base.column, binning),
        )
        self._maps[binning] = maps
        return maps

    def _binned_pattern(self, pattern: F32, binning: int) -> F32:
        key = (id(pattern), binning)
        cached = self._patterns.get(key)
        if cached is None:
            cached = pattern if binning == 1 else _block_mean(pattern, binning)
            if len(self._patterns) > 16:
                self._patterns.clear()
            self._patterns[key] = cached
        return cached


def _block_mean(a: F32, b: int) -> F32:
    """Mean over b x b blocks (rows/columns beyond a multiple of b are dropped)."""
    h, w = a.shape[0] // b, a.shape[1] // b
    view = a[: h * b, : w * b].reshape(h, b, w, b)
    return np.asarray(view.mean(axis=(1, 3), dtype=np.float32), dtype=np.float32)


def _bin_columns(column: F32, b: int) -> F32:
    """Mean over groups of b adjacent columns."""
    w = column.size // b
    return np.asarray(column[: w * b].reshape(w, b).mean(axis=1, dtype=np.float32),
                      dtype=np.float32)
