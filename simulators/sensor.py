"""A physically plausible, seeded model of a cooled CMOS sensor.

Per pixel, in electrons during an exposure of ``t`` seconds at sensor temperature ``T`` (°C):

* dark current ``D0 * 2 ** (T / doubling) * shape(x, y) * t`` with a fixed log-normal ``shape``
  (mean 1) and a fixed set of hot pixels (50-2000x the median);
* amp glow along the right edge, ``G0 * exp(-(W - 1 - x) / L) * bump(y) * t``;
* light ``flux * qe(x, y) * pattern(x, y) * t`` (PRNU, dead and cold pixels live in ``qe``),
  times, on a colour sensor, the response of the pixel's colour filter to the light source's
  spectrum (:meth:`SensorProfile.channel_response`);
* cosmic-ray hits (about one per cm^2 per minute), clipped at the full well.

In ADU (16-bit output): pedestal ``offset * pedestal_per_offset`` plus a fixed column pattern,
signal times the conversion gain ``2**(16 - bits) / e_per_adu(gain)`` with
``e_per_adu(gain) = 10 ** (-(gain - unity) / 200)`` (ZWO gain is 0.1 dB), Poisson noise on the
signal, read noise ``rn(gain) = rn_hi + (rn_lo - rn_hi) * exp(-gain / (0.5 * unity))`` electrons,
quantisation to the native bit depth, and clipping at the ADC's full scale.

Binning averages ``b x b`` pixels (as ZWO's software binning does). A colour sensor bins by
colour (ZWO with mono-bin off): a binned pixel averages ``b x b`` pixels of its own colour from
a ``2b x 2b`` block, so a binned frame is still a mosaic with the sensor's Bayer pattern.

Fixed maps are drawn from the profile's seed, so the same sensor has the same hot pixels in every
process; per-frame noise comes from the camera's own seeded generator, so a given sequence of
calls yields identical frames.

Memory is bounded for large sensors: frames are made in row bands straight into the uint16 image,
the amp glow is kept as its two 1-D factors, the dark and response maps are made on first use
(float16 above ``_LARGE_PIXELS``), and per-frame noise is cut from a bank of a few million deviates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from calibd.simulators.profiles import SensorProfile

_CELL = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column) in the 2x2 cell, BAYERPAT order

F32 = npt.NDArray[np.float32]
Map = npt.NDArray[Any]  # float32, or float16 for large sensors
U16 = npt.NDArray[np.uint16]
# Frames above this many pixels are made in row bands of about ``_BAND_PIXELS`` with Gaussian noise
# cut from a pre-drawn bank of ``_BANK_NORMALS`` deviates at a random offset per band (drawing 26 M
# normals costs ~0.4 s; slicing costs nothing), and sensors above it keep their fixed maps in
# float16 (relative precision 5e-4, far below PRNU and the dark spread). Smaller frames are made in
# one piece from fresh deviates and float32 maps.
_LARGE_PIXELS = 4_000_000
_BAND_PIXELS = 1 << 19
_BANK_NORMALS = 2 << 20
_SKIP_CHUNK = 1 << 22  # deviates drawn at a time when stepping over a map's draws


@dataclass(frozen=True)
class Illumination:
    """Light reaching the sensor: ``flux_e_per_s`` per unbinned pixel where ``pattern`` is 1.

    ``pattern`` (full-resolution, float32) carries vignetting and dust; None means uniform.
    ``flux_e_per_s`` is what a bare (monochrome) pixel collects; a colour pixel collects that
    times its channel's response to ``source`` (None: a flat "white" spectrum).
    """

    flux_e_per_s: float
    pattern: F32 | None = None
    source: str | None = None  # key of profiles.SPECTRA (a colour sensor's channel balance)
    # Stars on top of the flux: exposure seconds -> electrons per unbinned pixel (before the
    # pattern and the pixel response), e.g. trailed star images (sky.StarField).
    stars: Callable[[float], F32] | None = None


@dataclass
class _Maps:
    """Fixed maps at one binning; ``dark`` and ``qe`` are made on first use."""

    shape: tuple[int, int]
    column: F32  # per-column offset in ADU16 (one row, broadcast)
    glow: F32 | None  # amp glow shape, 1 at the edge; None at binning 1 (outer product of factors)
    dark: Map | None = None  # mean 1 shape of the dark current, hot pixels included
    qe: Map | None = None  # relative response, PRNU / dead / cold included


@dataclass(frozen=True)
class _Hit:
    row: int
    col: int
    electrons: np.float32


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
        self._map_dtype = np.float16 if npix > _LARGE_PIXELS else np.float32
        h, w = profile.height, profile.width
        x = np.arange(w, dtype=np.float32)
        y = np.arange(h, dtype=np.float32)
        gx = np.exp(-(w - 1 - x) / np.float32(max(profile.glow_length_frac * w, 1.0)))
        gy = 1.0 + 0.5 * np.exp(-(((y - 0.5 * h) / np.float32(0.3 * h)) ** 2))
        self._glow_x = gx.astype(np.float32)
        self._glow_y = gy.astype(np.float32)
        self.bayer = profile.bayer

    def channel_gains(self, source: str | None) -> list[tuple[tuple[int, int], np.float32]]:
        """Light multiplier of each 2x2 cell position of a colour sensor (empty for mono): the
        response of that position's filter colour to ``source`` (profiles.SPECTRA key)."""
        if self.bayer is None:
            return []
        response = self.profile.channel_response(source)
        return [(rc, np.float32(response[colour])) for rc, colour in zip(_CELL, self.bayer,
                                                                          strict=True)]

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
        rate = np.multiply(self._dark(binning), np.float32(self.dark_scale(temperature_c)),
                           dtype=np.float32)
        glow = np.empty(m.shape, dtype=np.float32)
        self._glow_rows(m, 0, m.shape[0], glow)
        rate += glow * np.float32(self.profile.glow_e_per_s)
        return rate

    def response_map(self, binning: int = 1, source: str | None = None) -> F32:
        """Relative light response per (binned) pixel (1 = nominal; 0 = dead), on a colour
        sensor times each pixel's channel response to ``source`` (profiles.SPECTRA key)."""
        out = self._qe(binning).astype(np.float32)
        for (r, c), g in self.channel_gains(source):
            out[r::2, c::2] *= g
        return out

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
    ) -> U16:
        """One image as the camera delivers it: uint16, [row, column], top-down.

        Made in row bands (one band for frames up to ``_LARGE_PIXELS``): besides the image, a
        large frame needs two float32 bands and the noise bank.
        """
        p = self.profile
        m = self._binned(binning)
        h, w = m.shape
        t = max(exposure_s, 0.0)
        k = 1.0 / self.e_per_adu16(gain)  # ADU16 per electron
        nb = float(binning * binning)
        lit = light is not None and light.flux_e_per_s > 0
        dark = self._dark(binning)
        qe = self._qe(binning) if lit else None
        pattern = None
        if light is not None and lit and light.pattern is not None:
            pattern = self._binned_pattern(light.pattern, binning)
        gains = self.channel_gains(light.source) if light is not None and lit else []
        hits = self._cosmic_rays((h, w), t, binning)
        dark_k = np.float32(t * self.dark_scale(temperature_c))
        glow_k = np.float32(t * p.glow_e_per_s)
        light_k = np.float32(t * light.flux_e_per_s) if light is not None and lit else None
        stars = None
        if light is not None and lit and light.stars is not None:
            stars = _binned_sum(light.stars(t), binning, (h, w))
        rn_adu = np.float32(self.read_noise_e(gain, readout_mode) * k / binning)
        bias_row = m.column + np.float32(self.pedestal_adu16(offset))
        step = self.adu_step
        top = (1 << p.bit_depth) - 1
        rows = h if h * w <= _LARGE_PIXELS else max(1, _BAND_PIXELS // w)
        out = np.empty((h, w), dtype=np.uint16)
        buf = np.empty((rows, w), dtype=np.float32)
        tmp = np.empty((rows, w), dtype=np.float32)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            b, s = buf[: r1 - r0], tmp[: r1 - r0]
            _scaled(dark[r0:r1], dark_k, b)
            self._glow_rows(m, r0, r1, s)
            s *= glow_k
            b += s
            if qe is not None and light_k is not None:
                _scaled(qe[r0:r1], light_k, s)
                if stars is not None:
                    s += stars[r0:r1] * qe[r0:r1]
                if pattern is not None:
                    s *= pattern[r0:r1]
                for (r, c), g in gains:  # colour: each filter colour in place, strided views
                    s[(r - r0) % 2 :: 2, c::2] *= g
                b += s
            for hit in hits:
                if r0 <= hit.row < r1:
                    b[hit.row - r0, hit.col] += hit.electrons
            # Shot noise (Gaussian approximation of Poisson) in electrons, then the well clips:
            # a full pixel has no shot noise left, only read noise.
            np.maximum(b, np.float32(0.0), out=b)
            np.multiply(b, np.float32(1.0 / nb), out=s)
            np.sqrt(s, out=s)
            s *= self._normals(b.shape, h * w)
            b += s
            np.minimum(b, np.float32(p.full_well_e), out=b)
            b *= np.float32(k)
            np.multiply(self._normals(b.shape, h * w), rn_adu, out=s)
            b += s
            b += bias_row
            if step > 1:
                b *= np.float32(1.0 / step)
            np.rint(b, out=b)
            np.clip(b, 0, top, out=b)
            band = out[r0:r1]
            band[...] = b
            if step > 1:
                band *= np.uint16(step)
        return out

    def release(self) -> None:
        """Drop the fixed maps and the noise bank (hundreds of MB for a large sensor); they are
        made again on the next frame, the maps with the same values."""
        self._maps.clear()
        self._patterns.clear()
        self._bank = None

    # ----- internals -------------------------------------------------------------------------
    def _normals(self, shape: tuple[int, int], frame_pixels: int) -> F32:
        """Standard normal deviates for one band, fresh per call (frames above
        ``_LARGE_PIXELS``: a window of a pre-drawn bank at a random offset)."""
        if frame_pixels <= _LARGE_PIXELS:
            return self._rng.standard_normal(size=shape, dtype=np.float32)
        n = shape[0] * shape[1]
        if self._bank is None or self._bank.size < 2 * n:
            self._bank = self._rng.standard_normal(max(_BANK_NORMALS, 2 * n), dtype=np.float32)
        start = int(self._rng.integers(0, self._bank.size - n))
        return self._bank[start : start + n].reshape(shape)

    def _cosmic_rays(self, shape: tuple[int, int], exposure_s: float, binning: int) -> list[_Hit]:
        """The cosmic-ray hits of one exposure, in electrons per (binned) pixel, in the order
        they add up."""
        p = self.profile
        expected = p.cosmic_rate_per_cm2_min * p.area_cm2 * exposure_s / 60.0
        if expected <= 0:
            return []
        hits = int(self._rng.poisson(expected))
        h, w = shape
        found: list[_Hit] = []
        for _ in range(hits):
            r, c = int(self._rng.integers(0, h)), int(self._rng.integers(0, w))
            energy = float(self._rng.lognormal(math.log(3000.0), 0.8)) / (binning * binning)
            length = int(self._rng.integers(1, 4))
            dr, dc = (0, 1) if self._rng.random() < 0.5 else (1, 0)
            for i in range(length):
                rr, cc = r + i * dr, c + i * dc
                if rr < h and cc < w:
                    found.append(_Hit(rr, cc, np.float32(energy / length)))
        return found

    def _truth_maps(self, *, keep_dark: bool, keep_qe: bool) -> tuple[Map | None, Map | None,
                                                                         F32]:
        """Draw the fixed maps from the truth seed, in rows: (dark, qe, column), each map only
        if asked for (its draws are still made, so every map always gets the same values)."""
        p = self.profile
        h, w = p.height, p.width
        rng = np.random.default_rng(self._truth_seed)
        rows = max(1, _SKIP_CHUNK // w)
        sigma = p.dark_spread
        dark: Map | None = np.empty((h, w), dtype=self._map_dtype) if keep_dark else None
        qe: Map | None = np.empty((h, w), dtype=self._map_dtype) if keep_qe else None
        for r0 in range(0, h, rows):
            band = rng.standard_normal((min(h, r0 + rows) - r0, w), dtype=np.float32)
            if dark is not None:
                band *= np.float32(sigma)
                band += np.float32(-0.5 * sigma * sigma)
                np.exp(band, out=band)
                dark[r0 : r0 + band.shape[0]] = band
        if dark is not None:
            dark.reshape(-1)[self.hot_index] = self.hot_multiplier
        for r0 in range(0, h, rows):
            band = rng.standard_normal((min(h, r0 + rows) - r0, w), dtype=np.float32)
            if qe is not None:
                band *= np.float32(p.prnu)
                band += np.float32(1.0)
                qe[r0 : r0 + band.shape[0]] = band
        cold = rng.uniform(0.3, 0.7, size=self.cold_index.size)
        if qe is not None:
            flat_qe = qe.reshape(-1)
            flat_qe[self.dead_index] = 0.0
            flat_qe[self.cold_index] = cold
        column = (rng.standard_normal(w) * p.column_sigma_adu).astype(np.float32)
        return dark, qe, column

    def _binned(self, binning: int) -> _Maps:
        """The maps at ``binning`` (column and glow; dark and qe come from :meth:`_dark` and
        :meth:`_qe`). Raises ValueError for a binning the profile does not offer."""
        if binning in self._maps:
            return self._maps[binning]
        if binning not in self.profile.binnings:
            raise ValueError(f"binning {binning} not offered by {self.profile.model}")
        colour = self.bayer is not None
        base = self._maps.get(1)
        if base is None:
            dark, _, column = self._truth_maps(keep_dark=True, keep_qe=False)
            base = _Maps(shape=(self.profile.height, self.profile.width), column=column,
                         glow=None, dark=dark)
            self._maps[1] = base
        if binning == 1:
            return base
        h, w = _binned_shape(base.shape, binning, colour)
        glow = np.empty((h, w), dtype=np.float32)
        rows = max(2, _BAND_PIXELS // base.shape[1]) // 2 * 2  # binned rows per band (even)
        full = np.empty((rows * binning, base.shape[1]), dtype=np.float32)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            part = full[: (r1 - r0) * binning]
            self._glow_rows(base, r0 * binning, r1 * binning, part)
            glow[r0:r1] = _block_mean(part, binning, colour)[: r1 - r0, :w]
        maps = _Maps(shape=(h, w), column=_bin_columns(base.column, binning, colour), glow=glow)
        self._maps[binning] = maps
        return maps

    def _dark(self, binning: int) -> Map:
        m = self._binned(binning)
        if m.dark is None:
            base = self._dark(1)
            m.dark = _block_mean(base, binning, self.bayer is not None).astype(self._map_dtype)
        return m.dark

    def _qe(self, binning: int) -> Map:
        m = self._binned(binning)
        if m.qe is None:
            if binning == 1:
                _, m.qe, _ = self._truth_maps(keep_dark=False, keep_qe=True)
            else:
                m.qe = _block_mean(self._qe(1), binning,
                                   self.bayer is not None).astype(self._map_dtype)
        assert m.qe is not None
        return m.qe

    def _glow_rows(self, m: _Maps, r0: int, r1: int, out: F32) -> None:
        """Amp glow shape of rows ``r0:r1`` of maps ``m`` into ``out``."""
        if m.glow is not None:
            out[...] = m.glow[r0:r1]
        else:
            np.multiply.outer(self._glow_y[r0:r1], self._glow_x, out=out)

    def _binned_pattern(self, pattern: F32, binning: int) -> F32:
        key = (id(pattern), binning)
        cached = self._patterns.get(key)
        if cached is None:
            cached = (pattern if binning == 1
                      else _block_mean(pattern, binning, self.bayer is not None))
            if len(self._patterns) > 16:
                self._patterns.clear()
            self._patterns[key] = cached
        return cached


def _binned_sum(image: F32, binning: int, shape: tuple[int, int]) -> F32:
    """Sum ``binning`` x ``binning`` blocks of an unbinned image into ``shape``."""
    h, w = shape
    if binning == 1:
        return image[:h, :w].astype(np.float32, copy=False)
    cut = image[: h * binning, : w * binning]
    summed: F32 = cut.reshape(h, binning, w, binning).sum(axis=(1, 3), dtype=np.float32)
    return summed


def _scaled(a: Map, k: np.float32, out: F32) -> None:
    """``out = a * k`` in float32. A float16 ``a`` (non-negative, finite: the fixed maps) is
    widened exactly by moving its bits (numpy's own float16 cast is ~15x slower): the half's
    exponent and mantissa shifted into a float32 make ``a * 2**-112``, subnormals included."""
    if a.dtype == np.float16:
        bits = out.view(np.uint32)
        np.copyto(bits, a.view(np.uint16))
        bits <<= np.uint32(13)
        out *= np.float32(2.0**112)
        out *= k
    else:
        np.multiply(a, k, out=out)


def _binned_shape(shape: tuple[int, int], b: int, colour: bool) -> tuple[int, int]:
    """(rows, columns) of an image of ``shape`` binned ``b x b`` (by colour: each of the four
    sub-planes binned on its own, so both sizes are even)."""
    if not colour:
        return shape[0] // b, shape[1] // b
    return shape[0] // 2 // b * 2, shape[1] // 2 // b * 2


def _block_mean(a: Map, b: int, colour: bool = False) -> F32:
    """Mean over b x b blocks (rows/columns beyond a multiple of b are dropped); with
    ``colour``, over b x b pixels of the same 2x2-cell position (a Bayer mosaic stays one)."""
    if colour and b > 1:
        h, w = _binned_shape((a.shape[0], a.shape[1]), b, True)
        out = np.empty((h, w), dtype=np.float32)
        for r, c in _CELL:
            out[r::2, c::2] = _block_mean(a[r::2, c::2], b)
        return out
    h, w = a.shape[0] // b, a.shape[1] // b
    view = a[: h * b, : w * b].reshape(h, b, w, b)
    return np.asarray(view.mean(axis=(1, 3), dtype=np.float32), dtype=np.float32)


def _bin_columns(column: F32, b: int, colour: bool = False) -> F32:
    """Mean over groups of b adjacent columns (with ``colour``: of b same-colour columns)."""
    if colour and b > 1:
        w = column.size // 2 // b * 2
        out = np.empty(w, dtype=np.float32)
        for c in (0, 1):
            out[c::2] = _bin_columns(column[c::2], b)
        return out
    w = column.size // b
    return np.asarray(column[: w * b].reshape(w, b).mean(axis=1, dtype=np.float32),
                      dtype=np.float32)
