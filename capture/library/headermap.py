"""The one mapping between FITS header keywords and index columns, for frames and for masters.

A frame's index row is read from its header — by the writer from the header it is about to write,
by reconcile and ``library rescan`` from the file — through :data:`FRAME_COLUMNS`; a master's row
likewise through :data:`MASTER_COLUMNS`, when it is built and when it is rescanned. So the index
never says something the file does not, and a keyword the index should know is one line here
(plus its column in :mod:`capture.library.index`'s schema, and its card where the header is made).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FRAME_KINDS = {"Bias Frame": "bias", "Dark Frame": "dark", "Flat Frame": "flat",
               "Dark Flat": "darkflat"}

Header = Mapping[str, Any]  # astropy's fits.Header, or any mapping of keyword -> value


def number(value: Any) -> int | float | None:
    """An int or float card value; anything else (text, bool, absent) is None."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Column:
    """Index column ``name`` holds ``convert(header[keyword])`` (``convert(None)`` if absent);
    a column without a keyword is derived from the whole header by ``derive``."""

    name: str
    keyword: str | None = None
    convert: Callable[[Any], Any] = number
    derive: Callable[[Header], Any] | None = None

    def read(self, header: Header) -> Any:
        if self.derive is not None:
            return self.derive(header)
        assert self.keyword is not None
        return self.convert(header.get(self.keyword))


def frame_kind(header: Header) -> str | None:
    """bias / dark / darkflat / flat for a calibd frame's header, else None. Dark flats are
    ``IMAGETYP = 'Dark Flat'`` (older libraries: ``'Dark Frame'`` with ``CALTYPE = 'DARKFLAT'``)."""
    kind = FRAME_KINDS.get(str(header.get("IMAGETYP", "")).strip())
    if kind == "dark" and str(header.get("CALTYPE", "")).upper() == "DARKFLAT":
        return "darkflat"
    return kind


def sensor_frame(header: Header) -> int:
    """1 for a frame of a sensor set (``SENSSET = T``; a ladder flat written before that card
    existed has ``SENSLVL``), else 0: such frames are for the sensor analysis, never a master's
    input."""
    return int(header.get("SENSSET") is True or header.get("SENSLVL") is not None)


def master_kind(header: Header) -> str | None:
    """bias / dark / darkflat / flat / bpm for a master's header, else None."""
    imagetyp = str(header.get("IMAGETYP", "")).strip()
    if imagetyp == "Bad Pixel Map":
        return "bpm"
    if not imagetyp.startswith("Master"):
        return None
    kind = imagetyp[len("Master"):].strip().lower()
    if kind == "dark flat":
        return "darkflat"
    if kind == "dark" and str(header.get("CALTYPE", "")).upper() == "DARKFLAT":
        return "darkflat"
    return kind if kind in ("bias", "dark", "flat") else None


def _master_cell(header: Header) -> str | None:
    if master_kind(header) == "bpm":  # one map per camera, gain and binning
        return (f"bpm|{header.get('CAMNAME')}|g{header.get('GAIN')}|"
                f"b{header.get('XBINNING')}")
    return text(header.get("SRCCELL"))


def _master_calibration(header: Header) -> str | None:
    """What was subtracted: ``bias:<master bias file>``, or FLATCAL of a master flat."""
    if header.get("BIASSUB") and header.get("BIASMSTR"):
        return f"bias:{header['BIASMSTR']}"
    if header.get("FLATCAL"):
        return str(header["FLATCAL"])
    return None


_SETTINGS = (
    Column("camera", "CAMNAME", text),
    Column("camera_id", "CAMERAID", text),
    Column("gain", "GAIN"),
    Column("offset", "OFFSET"),
    Column("binning", "XBINNING"),
    Column("readout_mode", "READOUTM", text),
    Column("setpoint_c", "SET-TEMP"),
    Column("exposure_s", "EXPTIME"),
    Column("filter", "FILTER", text),
    Column("date_obs", "DATE-OBS", text),
    Column("width", "NAXIS1"),
    Column("height", "NAXIS2"),
)

FRAME_COLUMNS: tuple[Column, ...] = (
    Column("kind", derive=frame_kind),
    Column("run_id", "RUNID"),
    Column("cell_key", "CELLKEY", text),
    Column("seq", "FRAMESEQ"),
    *_SETTINGS,
    Column("ccd_temp_c", "CCD-TEMP"),
    # Colour flats: each CFA channel's central median and the bias level (raw ADU).
    Column("cfa_r_adu", "CFALVLR"),
    Column("cfa_g1_adu", "CFALVLG1"),
    Column("cfa_g2_adu", "CFALVLG2"),
    Column("cfa_b_adu", "CFALVLB"),
    Column("flat_bias_adu", "FLATBIAS"),
    Column("sensor", derive=sensor_frame),
)

MASTER_COLUMNS: tuple[Column, ...] = (
    Column("kind", derive=master_kind),
    Column("run_id", "SRCRUN"),
    Column("cell_key", derive=_master_cell),
    *_SETTINGS,
    Column("instrument", "INSTRUME", text),
    Column("bit_depth", "BITDEPTH"),
    Column("ncombine", "NCOMBINE"),
    Column("calibration", derive=_master_calibration),
)


def frame_row(header: Header, *, shape: tuple[int, int] | None = None) -> dict[str, Any]:
    """A frame's index columns from its header (the writer adds path, bytes and pixel levels).
    ``shape`` (rows, columns) stands in for NAXIS2/NAXIS1 of a header not yet written."""
    row = {c.name: c.read(header) for c in FRAME_COLUMNS}
    if shape is not None:
        row["height"], row["width"] = int(shape[0]), int(shape[1])
    return row


def master_row(header: Header, *, path: str, inputs_digest: str | None) -> dict[str, Any]:
    """A master's index row from its header; ``path`` is relative to the library root and
    ``inputs_digest`` identifies the frames it was built from (not in the header)."""
    return {"path": path, **{c.name: c.read(header) for c in MASTER_COLUMNS},
            "inputs_digest": inputs_digest}
