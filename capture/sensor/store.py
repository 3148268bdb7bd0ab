"""Where sensor results live: ``<library>/Sensor/<camera>/sensor.json`` (for people and
programs) and ``sensor.fits`` (the same numbers as binary tables: PTC, DARK, OFFSETS), both
written through the one atomic writer; and the table N.I.N.A.'s exposure calculator takes
(gain, read noise, full well).

The JSON is the analysis result as it is; reading it back is bounded in size and checked
for shape (``SensorData``), so a damaged or hand-edited file is a clear error, not a traceback.
"""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from calibd.capture.errors import InputError
from calibd.capture.errors import Problem
from calibd.capture.inputfile import InputFileError
from calibd.capture.inputfile import read_input_text
from calibd.capture.library.atomic import write_bytes
from calibd.capture.library.atomic import write_text
from calibd.capture.library.layout import safe_part

log = logging.getLogger(__name__)
FOLDER = "Sensor"
MAX_JSON_BYTES = 16 * 2**20


def result_dir(root: Path, camera: str) -> Path:
    return root / FOLDER / safe_part(camera)


def save(root: Path, result: dict[str, Any]) -> list[Path]:
    """Write the result per camera (JSON and FITS tables). Returns the files written. Blocks on
    the disk; raises OSError."""
    cameras = sorted({r["camera"] for key in ("transfer", "dark", "offsets", "unity")
                      for r in result[key]})
    written: list[Path] = []
    for cam in cameras:
        part = {k: ([r for r in v if r.get("camera") == cam] if isinstance(v, list)
                    and k != "problems" else v) for k, v in result.items()}
        folder = result_dir(root, cam)
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / "sensor.json", json.dumps(part, indent=1, default=_plain) + "\n")
        write_bytes(folder / "sensor.fits", fits_tables(part))
        written += [folder / "sensor.json", folder / "sensor.fits"]
    return written


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def load(root: Path, camera: str) -> dict[str, Any] | None:
    """The stored result of ``camera``, or None when there is none. Raises InputError for a
    file that is not a sensor result."""
    path = result_dir(root, camera) / "sensor.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(read_input_text(path, MAX_JSON_BYTES))
    except InputFileError as err:
        raise InputError([Problem(path, None, "", str(err))]) from None
    except json.JSONDecodeError as err:
        raise InputError([Problem(path, err.lineno, "", f"not JSON: {err.msg}")]) from None
    problem = _shape_problem(data)
    if problem is not None:
        raise InputError([Problem(path, None, problem, "not a calibd sensor result")])
    result: dict[str, Any] = data
    return result


def _shape_problem(data: object) -> str | None:
    """The key where ``data`` does not have the shape of an analysis result, else None."""
    if not isinstance(data, dict):
        return ""
    nested = {"transfer": "channels", "dark": "setpoints", "offsets": "sweep", "unity": None}
    for key, inner in nested.items():
        rows = data.get(key)
        if not isinstance(rows, list):
            return key
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or not isinstance(row.get("camera"), str):
                return f"{key}[{i}]"
            if inner is None:
                continue
            items = row.get(inner)
            values = items.values() if isinstance(items, dict) else items
            if not isinstance(values, list | type({}.values())) or not all(
                    isinstance(v, dict) for v in values):
                return f"{key}[{i}].{inner}"
    return None


def cameras(root: Path) -> list[str]:
    """Cameras with a stored result."""
    folder = root / FOLDER
    if not folder.is_dir():
        return []
    return sorted(p.parent.name for p in folder.glob("*/sensor.json"))


def transfer_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per setting and channel (what the tables and the export show)."""
    rows = []
    for tr in result["transfer"]:
        for ch, v in tr["channels"].items():
            rows.append({"camera": tr["camera"], "gain": tr["gain"], "offset": tr["offset"],
                         "binning": tr["binning"], "readout_mode": tr["readout_mode"],
                         "channel": ch, **{k: x for k, x in v.items() if k != "points"}})
    return rows


def dark_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for d in result["dark"]:
        for sp in d["setpoints"]:
            rows.append({"camera": d["camera"], "gain": d["gain"], "offset": d["offset"],
                         "binning": d["binning"], "readout_mode": d["readout_mode"],
                         "setpoint_c": sp["setpoint_c"], "temperature_c": sp["temperature_c"],
                         "rate_e_per_s": sp["rate_e_per_s"],
                         "rate_all_e_per_s": sp["rate_all_e_per_s"],
                         "hot_fraction": sp["hot_fraction"],
                         "glow_e_per_s": sp["glow"]["rate_e_per_s"],
                         "doubling_c": _num(d["doubling_c"])})
    return rows


def offset_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"camera": o["camera"], "gain": o["gain"], "binning": o["binning"],
             "readout_mode": o["readout_mode"], "offset": r["offset"],
             "clipped_fraction": r["clipped_fraction"],
             "recommended": o["recommended_offset"] == r["offset"]}
            for o in result["offsets"] for r in o["sweep"]]


def _num(x: object) -> float:
    return float(x) if isinstance(x, int | float) else math.nan


def fits_tables(result: dict[str, Any]) -> bytes:
    """The result as a FITS file of binary tables PTC, DARK and OFFSETS (checksummed)."""
    hdus: list[Any] = [fits.PrimaryHDU()]
    hdus[0].header["ORIGIN"] = "calibd sensor analyze"
    for name, rows in (("PTC", transfer_rows(result)), ("DARK", dark_rows(result)),
                       ("OFFSETS", offset_rows(result))):
        if rows:
            table = Table(rows=[{k: (math.nan if v is None else v) for k, v in r.items()}
                                for r in rows])
            hdu = fits.table_to_hdu(table)
        else:
            hdu = fits.BinTableHDU()
        hdu.name = name
        hdus.append(hdu)
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf, checksum=True)
    return buf.getvalue()


def nina_table(result: dict[str, Any]) -> str:
    """CSV for N.I.N.A.'s exposure calculator: gain, read noise (e-), full well (e-) and
    e-/ADU per gain (mono, or the mean of the CFA channels), lowest gain first."""
    by_gain: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    for r in transfer_rows(result):
        by_gain.setdefault((r["gain"], r["binning"], r["readout_mode"]), []).append(r)
    lines = ["Gain,ReadNoise_e,FullWell_e,ePerADU,ReadoutMode,Binning"]
    for (gain, binning, mode), rows in sorted(by_gain.items()):
        rn = sum(r["read_noise_e"] for r in rows) / len(rows)
        fw = sum(r["full_well_e"] for r in rows) / len(rows)
        k = sum(r["e_per_adu"] for r in rows) / len(rows)
        lines.append(f"{gain},{rn:.3f},{fw:.0f},{k:.4f},{mode},{binning}")
    return "\n".join(lines) + "\n"


def stored(root: Path, camera: str) -> dict[str, Any] | None:
    """The stored result of ``camera`` for planning (unity gain, offset warnings): None when
    there is none or it cannot be read (logged; a run does not stop for it)."""
    try:
        return load(root.expanduser(), camera)
    except InputError as err:
        log.warning("sensor result of %s not used: %s", camera, err)
        return None


def measured_unity(result: dict[str, Any], readout_mode: str, binning: int = 1
                   ) -> float | None:
    """The gain where the measured e-/ADU is 1, for this read-out mode and binning."""
    for u in result["unity"]:
        if u.get("readout_mode") == readout_mode and u.get("binning") == binning \
                and isinstance(u.get("gain"), int | float):
            return float(u["gain"])
    return None


def offset_warnings(result: dict[str, Any], settings: list[tuple[int, int, int, str]]
                    ) -> list[str]:
    """Warnings for (gain, offset, binning, mode) settings whose offset is below the minimum
    the measured offset sweep recommends at that gain (the bias clips at zero)."""
    out: list[str] = []
    for gain, offset, binning, mode in sorted(set(settings)):
        for o in result["offsets"]:
            if (o.get("gain"), o.get("binning"), o.get("readout_mode")) != (gain, binning, mode):
                continue
            rec = o.get("recommended_offset")
            if not isinstance(rec, int) or offset >= rec:
                continue
            measured = next((r["clipped_fraction"] for r in o["sweep"]
                             if r.get("offset") == offset), None)
            clip = f"{measured:.2%} of the pixels clip at zero" if isinstance(
                measured, int | float) else "the bias clips at zero"
            out.append(f"offset {offset} at gain {gain} (bin {binning}, {mode}): {clip} at the "
                       f"shortest exposure; the sensor analysis recommends at least {rec}")
    return out


def doubling_temperatures(root: Path) -> dict[tuple[str | None, int | None], float]:
    """(camera, gain) -> the measured dark-current doubling temperature (°C), from every
    stored result in the library (one that cannot be read is logged and skipped)."""
    out: dict[tuple[str | None, int | None], float] = {}
    for cam in cameras(root):
        result = stored(root, cam)
        for d in result["dark"] if result is not None else []:
            td = d.get("doubling_c")
            if isinstance(td, int | float) and math.isfinite(td) and td > 0:
                out[(d.get("camera"), d.get("gain"))] = float(td)
    return out
