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
import math
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from calibd.capture.errors import InputError, Problem
from calibd.capture.inputfile import InputFileError, read_input_text
from calibd.capture.library.atomic import write_bytes, write_text
from calibd.capture.library.layout import safe_part

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
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in
                                             ("transfer", "dark", "offsets", "unity")):
        raise InputError([Problem(path, None, "", "not a calibd sensor result")])
    return data


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
