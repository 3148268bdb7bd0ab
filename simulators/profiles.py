"""Sensor and cooler profiles of the simulated camera.

Numbers are plausible for the models they imitate (ZWO data sheets and user measurements), not
exact copies. Gains are in ZWO units (0.1 dB): the native e-/ADU at gain g is
``10 ** (-(g - unity_gain) / 200)``.

Colour (one-shot-colour) profiles set ``bayer`` (the FITS ``BAYERPAT`` of the unbinned sensor read
top-down: the colours of pixels (0,0), (0,1), (1,0), (1,1)) and ``cfa_qe``, the peak response of
the red, green and blue filter pixels relative to a bare (monochrome) pixel. The light sources'
spectra are :data:`SPECTRA`: the fraction of a source's photons in the red, green and blue bands.
A pixel of colour ``k`` collects ``flux * channel_response(source)[k]`` where ``flux`` is what a
bare pixel would collect (see :meth:`SensorProfile.channel_response`) — the truth the colour
tests read.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace
from typing import Final

#: Bayer phases a colour profile may have (FITS BAYERPAT, top-down).
BAYER_PATTERNS: Final = ("RGGB", "BGGR", "GRBG", "GBRG")
#: Fraction of each light source's photons in the (R, G, B) bands (sums to 1). The panel is a
#: white LED (blue pump plus a broad yellow-green phosphor: green-heavy); the twilight sky is
#: Rayleigh-scattered sunlight (blue-heavy); "white" is a flat spectrum (light leaks, unknown).
SPECTRA: Final[dict[str, tuple[float, float, float]]] = {
    "panel": (0.20, 0.56, 0.24),
    "sky": (0.18, 0.30, 0.52),
    "white": (1 / 3, 1 / 3, 1 / 3),
}


@dataclass(frozen=True)
class SensorProfile:
    """Everything the simulator needs to make frames for one camera model."""

    name: str
    model: str
    width: int
    height: int
    bit_depth: int
    pixel_size_um: float
    unity_gain: int
    gain_max: int
    offset_max: int
    full_well_e: float  # at gain 0; the pixel clips here
    read_noise_low_e: float  # at gain 0
    read_noise_high_e: float  # at the highest gain
    dark_e_per_s_0c: float  # median dark current at 0 °C
    dark_doubling_c: float = 6.0
    dark_spread: float = 0.25  # sigma of the log-normal per-pixel dark current
    hot_fraction: float = 1e-4
    hot_multiplier: tuple[float, float] = (50.0, 2000.0)  # x median, log-uniform
    dead_fraction: float = 2e-5
    cold_fraction: float = 5e-5  # pixels with 30-70 % response
    prnu: float = 0.01
    glow_e_per_s: float = 0.02  # at the right edge
    glow_length_frac: float = 0.04
    column_sigma_adu: float = 1.5
    pedestal_per_offset_adu: float = 10.0
    cosmic_rate_per_cm2_min: float = 1.0
    readout_s: float = 0.3  # full frame at 1x1, seconds
    min_exposure_s: float = 32e-6
    max_exposure_s: float = 2000.0
    binnings: tuple[int, ...] = (1, 2, 3, 4)
    readout_modes: tuple[str, ...] = ("normal", "low-noise")
    cooler_max_delta_c: float = 35.0
    cooler_tau_s: float = 40.0
    min_setpoint_c: float = -40.0
    max_setpoint_c: float = 30.0
    seed: int = 2600
    bayer: str | None = None  # colour sensors: BAYERPAT of the unbinned sensor, top-down
    cfa_qe: tuple[float, float, float] = (0.80, 0.90, 0.75)  # R, G, B peak response vs bare

    def __post_init__(self) -> None:
        if self.bayer is not None and self.bayer not in BAYER_PATTERNS:
            raise ValueError(f"bayer must be one of {', '.join(BAYER_PATTERNS)} or None")

    def with_overrides(self, **changes: object) -> SensorProfile:
        """A copy with some fields changed (``readout_s=0.5``, ``seed=7``, ...)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_colour(self) -> bool:
        return self.bayer is not None

    def channel_response(self, source: str | None = None) -> dict[str, float]:
        """Electrons a red, green and blue pixel collect per electron a bare pixel would
        collect from light source ``source`` (a key of :data:`SPECTRA`; None = "white"):
        ``3 * SPECTRA[source][k] * cfa_qe[k]``, keyed ``"R"``, ``"G"``, ``"B"``. A monochrome
        profile answers 1 for every channel. Raises KeyError for an unknown source."""
        if self.bayer is None:
            return {"R": 1.0, "G": 1.0, "B": 1.0}
        spectrum = SPECTRA[source or "white"]
        return {name: 3.0 * spectrum[i] * self.cfa_qe[i] for i, name in enumerate("RGB")}

    @property
    def area_cm2(self) -> float:
        return self.width * self.height * (self.pixel_size_um * 1e-4) ** 2


# One row a model: the fields every profile sets, then the defaults it changes.
_COLUMNS = ("model", "width", "height", "bit_depth", "pixel_size_um", "unity_gain", "gain_max",
            "offset_max", "full_well_e", "read_noise_low_e", "read_noise_high_e",
            "dark_e_per_s_0c", "hot_fraction", "glow_e_per_s", "readout_s", "seed")
_ROWS: dict[str, tuple[tuple[object, ...], dict[str, object]]] = {
    "asi2600mm": (("ASI2600MM Pro (simulated)", 6248, 4176, 16, 3.76, 100, 460, 100, 50000.0,
                   3.3, 1.0, 0.007, 1e-4, 0.005, 0.6, 2600), {}),
    "asi294mm": (("ASI294MM Pro (simulated)", 4144, 2822, 14, 4.63, 120, 570, 80, 66000.0,
                  7.3, 1.2, 0.02, 2e-4, 0.08, 0.4, 294), {}),
    "small": (("Small test sensor (simulated)", 320, 240, 16, 3.76, 100, 400, 100, 50000.0,
               3.0, 1.0, 0.05, 2e-3, 0.2, 0.02, 320),
              {"dead_fraction": 5e-4, "cold_fraction": 5e-4, "glow_length_frac": 0.08,
               "cooler_tau_s": 30.0}),
    # Colour twins: the same sensor physics behind an RGGB colour filter array.
    "asi2600mc": (("ASI2600MC Pro (simulated)", 6248, 4176, 16, 3.76, 100, 460, 100, 50000.0,
                   3.3, 1.0, 0.007, 1e-4, 0.005, 0.6, 2601), {"bayer": "RGGB"}),
    "asi533mc": (("ASI533MC Pro (simulated)", 3008, 3008, 14, 3.76, 100, 450, 100, 50000.0,
                  3.8, 1.0, 0.0004, 1e-4, 0.001, 0.3, 533), {"bayer": "RGGB"}),
    "small-colour": (("Small colour test sensor (simulated)", 320, 240, 16, 3.76, 100, 400, 100,
                      50000.0, 3.0, 1.0, 0.05, 2e-3, 0.2, 0.02, 321),
                     {"dead_fraction": 5e-4, "cold_fraction": 5e-4, "glow_length_frac": 0.08,
                      "cooler_tau_s": 30.0, "bayer": "RGGB"}),
}

PROFILES: dict[str, SensorProfile] = {
    name: SensorProfile(name=name, **dict(zip(_COLUMNS, row, strict=True)), **more)  # type: ignore[arg-type]
    for name, (row, more) in _ROWS.items()
}


def get_profile(name: str) -> SensorProfile:
    """Look a profile up by name. Raises KeyError with the known names."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise KeyError(f"unknown simulator profile {name!r} (known: {known})") from None
