"""Which masters calibrate a light frame, and why.

A light is matched on its :class:`Light` keys: camera (``CAMERAID``; without it the image size
and ``INSTRUME``), gain, offset, read-out mode, binning, bit depth, set-point, exposure, filter
and date, as :mod:`capture.lights.conventions` reads them from the header and file-name
conventions of the programs that write lights (the one reader of a light, bounded and
validated). Keys the light does not carry are not used (and said so).

Only current masters take part (:func:`capture.library.masters_table.mark_current`), and only
master darks of the configured convention (``masters.dark_convention``): a with-bias dark
calibrates a light alone, a bias-subtracted one together with the master bias.

Fallback order, first match wins (within a step: the newest master):

* bias: (1) every key, set-point within ``tol``; (2) set-point within ``2 x tol``;
  (3) any set-point (bias hardly depends on temperature).
* dark: (1) every key and the exact exposure, set-point within ``tol``; (2) exact exposure,
  set-point within ``2 x tol``; (3) a bias-subtracted dark at the same set-point with the nearest
  longer exposure, to be scaled by exposure (needs the master bias as well); (4) only with a
  measured doubling temperature (``calibd sensor analyze``): a bias-subtracted dark from the
  nearest other set-point, scaled by exposure and by ``2 ** ((T - T_dark) / T_d)`` -- reported
  as a fallback with its factor, never chosen silently.
* flat: (1) same filter, binning, gain and offset; (2) same filter and binning, any gain (flats
  are normalised). Flats older than ``flat_max_age_days`` are flagged.
* bad pixel map: (1) same gain and binning; (2) same binning, any gain.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import Any

from calibd.capture.library.index import Index
from calibd.capture.library.masters_table import MasterRow
from calibd.capture.library.masters_table import MatchKeys


@dataclass
class Choice:
    kind: str
    master: MasterRow | None
    step: int  # fallback step that matched (1 = exact); 0 = none
    reasons: list[str] = field(default_factory=list)
    scale: float | None = None  # a dark to be scaled (steps 3 and 4): by this factor

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.master.path if self.master else None,
                "step": self.step, "reasons": self.reasons, "scale": self.scale}


@dataclass(frozen=True, kw_only=True)
class Light(MatchKeys):
    """A light frame's match keys (made by :meth:`capture.lights.conventions.LightFrame.light`
    from validated values), and its CFA pattern as stored (None: mono)."""

    bayer: str | None = None

    def describe(self, *, degrees: str = "°C") -> str:
        """The settings in one line, e.g. ``gain 100, offset 50, bin 1, 300 s, -10 °C, filter
        L`` (``?`` for what the light does not say; ``degrees``: the unit written)."""
        def val(v: object, unit: str = "") -> str:
            return "?" if v is None else f"{v:g}{unit}" if isinstance(v, float) else f"{v}{unit}"

        return (f"gain {val(self.gain)}, offset {val(self.offset)}, bin {self.binning}, "
                f"{val(self.exposure_s, ' s')}, {val(self.setpoint_c, ' ' + degrees)}, "
                f"filter {val(self.filter)}" + (f", {self.bayer}" if self.bayer else ""))


def _same_camera(light: Light, m: MasterRow) -> bool:
    """Camera id when both carry one; else the image size (binned) and the model name."""
    if light.camera_id and m.camera_id:
        return str(light.camera_id) == str(m.camera_id)
    if light.width and light.height and m.width and m.height and \
            (light.width, light.height) != (m.width, m.height):
        return False
    if light.instrument and m.instrument:
        return str(light.instrument).strip() == str(m.instrument).strip()
    return True  # nothing to compare: the other keys decide


def _settings(light: Light, m: MasterRow, *, gain: bool = True, offset: bool = True) -> bool:
    return ((not gain or light.gain is None or light.gain == m.gain)
            and (not offset or light.offset is None or m.offset is None
                 or light.offset == m.offset)
            and light.binning == m.binning
            and (light.readout_mode is None or m.readout_mode is None
                 or light.readout_mode == m.readout_mode)
            and (light.bit_depth is None or m.bit_depth is None
                 or light.bit_depth == m.bit_depth))


def _temp_ok(light: Light, m: MasterRow, tol: float) -> bool:
    if light.setpoint_c is None or m.setpoint_c is None:
        return True
    return abs(light.setpoint_c - m.setpoint_c) <= tol


def _newest(rows: list[MasterRow]) -> MasterRow | None:
    return max(rows, key=lambda m: (m.created_utc or "", m.id)) if rows else None


def _steps(kind: str, candidates: list[MasterRow],
           steps: list[tuple[str, Callable[[MasterRow], bool]]]) -> Choice:
    for i, (why, test) in enumerate(steps, start=1):
        found = _newest([m for m in candidates if test(m)])
        if found is not None:
            return Choice(kind, found, i, [why])
    return Choice(kind, None, 0, [])


Doubling = Mapping[tuple[str | None, int | None], float]  # (camera, gain) -> T_d (°C)


def match(index: Index, light: Light, *, tolerance_c: float = 1.0,
          flat_max_age_days: float = 60.0, dark_convention: str = "with-bias",
          doubling_c: Doubling | None = None) -> list[Choice]:
    """The master bias, dark, flat and bad pixel map for a light frame: current masters only,
    master darks of ``dark_convention`` only (``with-bias`` or ``bias-subtracted``).
    ``doubling_c``: the measured dark-current doubling temperatures (dark step 4)."""
    return match_light(index.masters(), light, tolerance_c=tolerance_c,
                       flat_max_age_days=flat_max_age_days, dark_convention=dark_convention,
                       doubling_c=doubling_c)


def match_light(candidates: list[MasterRow], light: Light, *, tolerance_c: float = 1.0,
                flat_max_age_days: float = 60.0, dark_convention: str = "with-bias",
                doubling_c: Doubling | None = None) -> list[Choice]:
    """:func:`match` for a light already read (``calibd plan from-lights`` reads the other
    programs' conventions into a :class:`Light`), among ``candidates`` (the index's masters)."""
    masters = [m for m in candidates if m.current and _same_camera(light, m)]
    tol = tolerance_c
    by_kind = {k: [m for m in masters if m.kind == k] for k in ("bias", "dark", "flat", "bpm")}
    other = [m for m in by_kind["dark"] if m.dark_convention != dark_convention]
    by_kind["dark"] = [m for m in by_kind["dark"] if m.dark_convention == dark_convention]
    notes = []
    for key, value in (("GAIN", light.gain), ("OFFSET", light.offset),
                       ("READOUTM", light.readout_mode), ("SET-TEMP/CCD-TEMP", light.setpoint_c),
                       ("CAMERAID", light.camera_id)):
        if value is None:
            notes.append(f"the light has no {key}: not matched on it")
    exp = light.exposure_s

    def exact_exp(m: MasterRow) -> bool:
        return exp is not None and m.exposure_s is not None and abs(m.exposure_s - exp) <= \
            max(1e-3, 1e-4 * exp)

    bias = _steps("bias", by_kind["bias"], [
        (f"same camera and settings, set-point within ±{tol:g} °C",
         lambda m: _settings(light, m) and _temp_ok(light, m, tol)),
        (f"set-point within ±{2 * tol:g} °C (step 2)",
         lambda m: _settings(light, m) and _temp_ok(light, m, 2 * tol)),
        ("any set-point (bias hardly depends on temperature; step 3)",
         lambda m: _settings(light, m)),
    ])
    dark = _steps("dark", by_kind["dark"], [
        (f"same camera, settings and exposure, set-point within ±{tol:g} °C",
         lambda m: _settings(light, m) and exact_exp(m) and _temp_ok(light, m, tol)),
        (f"same exposure, set-point within ±{2 * tol:g} °C (step 2)",
         lambda m: _settings(light, m) and exact_exp(m) and _temp_ok(light, m, 2 * tol)),
    ])
    if dark.master is None and exp is not None:
        longer = [m for m in by_kind["dark"] if _settings(light, m) and _temp_ok(light, m, tol)
                  and (m.calibration or "").startswith("bias:") and (m.exposure_s or 0) >= exp]
        if longer:
            best = min(longer, key=lambda m: m.exposure_s or 0)
            dark = Choice("dark", best, 3, [
                f"no {exp:g} s dark: scale this bias-subtracted {best.exposure_s:g} s master by "
                f"{exp / (best.exposure_s or exp):.3f} (step 3; use it with the master bias)"],
                scale=exp / (best.exposure_s or exp))
    if dark.master is None and exp is not None and doubling_c:
        dark = _other_setpoint(by_kind["dark"], light, exp, doubling_c) or dark
    flat = _steps("flat", by_kind["flat"], [
        ("same filter, binning, gain and offset",
         lambda m: m.filter == light.filter and _settings(light, m)),
        ("same filter and binning, another gain (flats are normalised; step 2)",
         lambda m: m.filter == light.filter and m.binning == light.binning),
    ])
    if flat.master is not None and flat.master.date_obs and light.date_obs:
        age = _days(flat.master.date_obs, light.date_obs)
        if age is not None and abs(age) > flat_max_age_days:
            flat.reasons.append(f"warning: taken {abs(age):.0f} days from the light; "
                                "refresh flats if the optical train changed")
    bpm = _steps("bpm", by_kind["bpm"], [
        ("same gain and binning", lambda m: m.gain == light.gain and m.binning == light.binning),
        ("same binning, another gain (step 2)", lambda m: m.binning == light.binning),
    ])
    if other:
        dark.reasons.append(f"{len(other)} master dark(s) of the other convention ignored "
                            f"(masters.dark_convention is {dark_convention})")
    if dark.master is not None and dark_convention == "with-bias":
        bias.reasons.append("not for the light: its master dark includes the bias (calibrate "
                            "it with the dark and the flat)")
    choices = [bias, dark, flat, bpm]
    for c in choices:
        if c.master is None:
            c.reasons.append(_nothing(c.kind, light))
        c.reasons.extend(notes)
    return choices


def _other_setpoint(darks: list[MasterRow], light: Light, exp: float,
                    doubling_c: Doubling) -> Choice | None:
    """Dark step 4: a bias-subtracted dark from the nearest other set-point (then the nearest
    longer, else the longest exposure), scaled by the measured doubling temperature."""
    if light.setpoint_c is None:
        return None
    usable = [m for m in darks if _settings(light, m) and m.setpoint_c is not None
              and m.exposure_s and (m.calibration or "").startswith("bias:")
              and doubling_c.get((m.camera, m.gain))]
    if not usable:
        return None
    near = min(abs((m.setpoint_c or 0.0) - light.setpoint_c) for m in usable)
    same_t = [m for m in usable if abs((m.setpoint_c or 0.0) - light.setpoint_c) == near]
    longer = [m for m in same_t if (m.exposure_s or 0) >= exp]
    best = min(longer, key=lambda m: m.exposure_s or 0) if longer else \
        max(same_t, key=lambda m: m.exposure_s or 0)
    td = doubling_c[(best.camera, best.gain)]
    t_dark = best.setpoint_c or 0.0
    temp = 2.0 ** ((light.setpoint_c - t_dark) / td)
    scale = temp * exp / (best.exposure_s or exp)
    return Choice("dark", best, 4, [
        f"fallback: no dark at {light.setpoint_c:g} °C; scale this bias-subtracted "
        f"{best.exposure_s:g} s master from {t_dark:g} °C by {scale:.3f} (exposure "
        f"{exp / (best.exposure_s or exp):.3f} x temperature {temp:.3f} from the measured "
        f"doubling temperature {td:.2f} °C; step 4; use it with the master bias)"], scale=scale)


def _nothing(kind: str, light: Light) -> str:
    what = {"bias": f"gain {light.gain}, offset {light.offset}, bin {light.binning}",
            "dark": f"gain {light.gain}, offset {light.offset}, bin {light.binning}, "
                    f"{light.exposure_s} s at {light.setpoint_c} °C",
            "flat": f"filter {light.filter!r}, bin {light.binning}",
            "bpm": f"gain {light.gain}, bin {light.binning}"}[kind]
    return f"no master {kind} in the library fits {what}"


def _days(a: str, b: str) -> float | None:
    try:
        da = datetime.fromisoformat(a).replace(tzinfo=UTC)
        db = datetime.fromisoformat(b).replace(tzinfo=UTC)
    except ValueError:
        return None
    return (db - da).total_seconds() / 86400.0
