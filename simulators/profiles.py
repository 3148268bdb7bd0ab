"""Sensor and cooler profiles of the simulated camera.

Numbers are plausible for the models they imitate (ZWO data sheets and user measurements), not
exact copies. Gains are in ZWO units (0.1 dB): the native e-/ADU at gain g is
``10 ** (-(g - unity_gain) / 200)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


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

    def with_overrides(self, **changes: object) -> SensorProfile:
        """A copy with some fields changed (``readout_s=0.5``, ``seed=7``, ...)."""
        return replace(self, **changes)  # type: ignore[arg-type]

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
