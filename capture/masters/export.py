"""``calibd masters export``: the library's current masters for a stacking program.

* ``siril``: one folder per camera, files named by the keys Siril's path parsing reads from a
  light's header (``BIAS_G<gain>_O<offset>_bin<b>``, ``DARKFLAT_<exposure>s_...``,
  ``DARK_<exposure>s_G<gain>_O<offset>_T<set-point>C_bin<b>``, ``FLAT_<filter>_G.._O.._bin..``),
  linked to the library's files.
  Siril reads ``DATAMAX`` (16-bit ADU masters) and needs nothing else; with ``--light`` a
  script ``calibrate_lights.ssf`` calibrates the lights in ``<dest>/lights`` with the masters
  ``library match`` chooses: ``-dark= -flat=`` for with-bias darks (Siril's stock scripts),
  ``-bias= -dark= -flat=`` for bias-subtracted ones, ``-cfa -equalize_cfa -debayer`` for a
  colour sensor (``BAYERPAT``). It uses ``preprocess``, the name Siril 1.0 knows.
* ``wbpp``: copies for PixInsight's WeightedBatchPreprocessing, which groups by ``IMAGETYP``
  (``Master Bias`` / ``Master Dark`` / ``Master Flat``: a master dark flat is exported as a
  ``Master Dark``, since WBPP calibrates flats with the dark of their exposure), ``EXPTIME``,
  ``FILTER``, ``XBINNING`` and the keywords a user adds (``GAIN``, ``OFFSET``, ``SET-TEMP``,
  all present). File names as for ``siril``.
* ``folder``: the current masters and bad pixel maps under their calibd names, linked.

Only current masters are exported, and only master darks of the library's convention
(``masters.dark_convention``). Links are hard links (a copy across file systems); every file is
published through the atomic writer, so a re-export replaces files whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from calibd.capture.combine import write_master
from calibd.capture.library.atomic import link_or_copy
from calibd.capture.library.atomic import write_text
from calibd.capture.library.index import Index
from calibd.capture.library.layout import safe_part
from calibd.capture.library.masters_table import MasterRow
from calibd.capture.masters.match import Light
from calibd.capture.masters.match import match
from calibd.capture.plans.cells import fmt_number
from calibd.capture.textsafe import shown

log = logging.getLogger(__name__)

TARGETS = ("siril", "wbpp", "folder")
SCRIPT = "calibrate_lights.ssf"
_PREFIX = {"bias": "BIAS", "dark": "DARK", "darkflat": "DARKFLAT", "flat": "FLAT", "bpm": "BPM"}


class ExportError(Exception):
    """Nothing to export, or two masters would share a name."""


@dataclass(frozen=True)
class Exported:
    master: MasterRow
    path: Path  # the exported file
    how: str  # linked / copied / written


def program_name(m: MasterRow) -> str:
    """The exported file name for Siril and WBPP, e.g. ``DARK_300s_G100_O50_T-10C_bin1.fits``."""
    parts = [_PREFIX[m.kind]]
    if m.kind == "flat" and m.filter:
        parts.append(safe_part(m.filter))
    if m.kind in ("dark", "darkflat") and m.exposure_s is not None:
        parts.append(f"{fmt_number(m.exposure_s)}s")
    if m.gain is not None:
        parts.append(f"G{m.gain}")
    if m.offset is not None:
        parts.append(f"O{m.offset}")
    if m.kind == "dark" and m.setpoint_c is not None:
        parts.append(f"T{fmt_number(m.setpoint_c)}C")
    parts.append(f"bin{m.binning or 1}")
    if m.readout_mode and m.readout_mode != "normal":
        parts.append(safe_part(m.readout_mode))
    return "_".join(parts) + ".fits"


def selected(index: Index, dark_convention: str, target: str) -> list[MasterRow]:
    """The current masters to export (bad pixel maps only to a folder)."""
    out = []
    for m in index.masters():
        if not m.current or (m.kind == "bpm" and target != "folder"):
            continue
        if m.kind == "dark" and m.dark_convention != dark_convention:
            continue
        out.append(m)
    return out


def export(index: Index, dest: Path, target: str, *, dark_convention: str,
           light: Light | None = None, tolerance_c: float = 1.0) -> list[Exported]:
    """Export the current masters into ``dest`` (created) for ``target``; with ``light`` (a
    light frame's match keys, Siril only) also write :data:`SCRIPT`. Blocks for the copies; raises
    ExportError (nothing to export, a name clash), OSError."""
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    masters = selected(index, dark_convention, target)
    if not masters:
        raise ExportError("no current masters to export (calibd masters build)")
    missing = [m.path for m in masters if not (index.root / m.path).is_file()]
    if missing:
        raise ExportError(f"{len(missing)} master file(s) listed in the index are missing or "
                          f"not files (e.g. {shown(missing[0], 200)}): run `calibd library "
                          "rescan`, then `calibd masters build`")
    planned: dict[Path, MasterRow] = {}
    for m in masters:
        name = Path(m.path).name if target == "folder" else program_name(m)
        path = dest / safe_part(m.camera or "camera") / name
        if path in planned:
            raise ExportError(f"{planned[path].path} and {m.path} would both be exported as "
                              f"{path.name}")
        planned[path] = m
    done: list[Exported] = []
    for path, m in planned.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        source = index.root / m.path
        if target == "wbpp" and m.kind == "darkflat":
            with fits.open(source, memmap=False) as hdul:
                header = hdul[0].header.copy()
                data = np.asarray(hdul[0].data, dtype=np.float32)
            header["IMAGETYP"] = ("Master Dark", "a dark at the flats' exposure (WBPP)")
            write_master(path, data, header)
            done.append(Exported(m, path, "written"))
        else:
            done.append(Exported(m, path, link_or_copy(source, path)))
    if light is not None and target == "siril":
        by_master = {ex.master.id: ex.path for ex in done}
        text = siril_script(index, dest, light, by_master, dark_convention=dark_convention,
                            tolerance_c=tolerance_c)
        write_text(dest / SCRIPT, text)
    log.info("exported %d master(s) to %s for %s", len(done), dest, target)
    return done


def siril_script(index: Index, dest: Path, light: Light, exported: dict[int, Path], *,
                 dark_convention: str, tolerance_c: float = 1.0) -> str:
    """A Siril script calibrating ``<dest>/lights`` (results ``<dest>/process/cal_*``) with the
    masters ``library match`` chooses for ``light``. Raises ExportError without a master dark."""
    choices = {c.kind: c for c in match(index, light, tolerance_c=tolerance_c,
                                        dark_convention=dark_convention)}

    def arg(kind: str) -> str | None:
        chosen = choices[kind].master
        if chosen is None or chosen.id not in exported:
            return None
        rel = Path("..") / exported[chosen.id].relative_to(dest)
        return f'"-{kind}={rel.as_posix()}"' if " " in str(rel) else f"-{kind}={rel.as_posix()}"

    dark, flat, bias = arg("dark"), arg("flat"), arg("bias")
    if dark is None:
        raise ExportError("no master dark fits the light: " + "; ".join(choices["dark"].reasons))
    options = [dark]
    if dark_convention == "bias-subtracted":
        if bias is None:
            raise ExportError("bias-subtracted master darks need a master bias, and none fits "
                              "the light")
        options.insert(0, bias)
    if choices["dark"].step >= 3:  # a dark scaled by exposure or set-point
        options.append("-opt")
    if flat is not None:
        options.append(flat)
    if light.bayer:
        options += ["-cfa", "-equalize_cfa", "-debayer"]
    options.append("-prefix=cal_")
    what = light.describe(degrees="C")
    return "\n".join([
        "# Calibrate the lights in ./lights with calibd's masters (Siril 1.0 or later):",
        "#   siril-cli -s calibrate_lights.ssf -d <this folder>",
        f"# Lights: {_printable(what)}. Master darks: {dark_convention}.",
        "# Results: ./process/cal_light_*.fits",
        "requires 1.0.0",
        "setext fits",
        "set32bits",
        "cd lights",
        "convert light -out=../process",
        "cd ../process",
        "preprocess light " + " ".join(options),
        "cd ..",
        "",
    ])


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:200]
