"""Build masters from the library's frames: one master per run and cell.

* master bias: the bias frames combined with rejection;
* master dark: combined as is (``masters.dark_convention: with-bias``, the default: what
  Siril's scripts and WBPP without dark optimisation expect), or minus the master bias of the
  same gain, offset, binning, read-out mode and set-point (``bias-subtracted``, for scaling darks
  by exposure; without that master bias the build fails rather than mix conventions). The header
  says which: ``DARKCONV``, ``BIASSUB`` and ``BIASMSTR``;
* master dark flat: combined as is (it calibrates flats of the same exposure: bias included);
* master flat: each flat minus the master dark flat (else the master bias), divided by its own
  median in the central region, then combined with rejection (``FLATCAL``, ``NORMALIZ``). A
  colour (Bayer) flat is divided by one number too, the central median of its brightest CFA
  channel (``NORMALIZ = 'median-cfa'``, ``NORMCHAN``), so the master keeps the mosaic and the
  colour balance of the light: that channel is ~1, the others what they were relative to it.
  Then every pixel below half the bad pixel map's cold threshold (dead pixels, every value <= 0)
  is raised to exactly that (``FLATFILL``, :func:`capture.masters.levels.fill_dead_pixels`), so
  no reader divides by zero or a negative number and the bad pixel map still marks the pixel.

A master is *missing* when its cell has frames but no master, and *stale* when the frames it was
built from are no longer exactly the frames of the cell (a resumed run added some).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from calibd.capture import __version__
from calibd.capture import cfa
from calibd.capture.combine import Rejection
from calibd.capture.combine import combine_to_fits
from calibd.capture.combine.reader import FrameSource
from calibd.capture.config import MastersConfig
from calibd.capture.library.fitsio import set_card
from calibd.capture.library.frame_queries import CellFrame
from calibd.capture.library.headermap import master_row
from calibd.capture.library.index import Index
from calibd.capture.library.layout import camera_root
from calibd.capture.library.masters_table import MasterRow
from calibd.capture.library.masters_table import inputs_digest
from calibd.capture.masters.inputs import check_consistent
from calibd.capture.masters.levels import fill_dead_pixels
from calibd.capture.masters.store import MASTER_IMAGETYP
from calibd.capture.masters.store import master_path
from calibd.capture.plans.cells import fmt_number

log = logging.getLogger(__name__)

#: Full scale of calibd's frames (16-bit ADU; a 12-bit camera's values are scaled up to it).
ADU_FULL_SCALE = 65535.0
BUILD_ORDER = {"bias": 0, "darkflat": 1, "dark": 2, "flat": 3}
COPIED_KEYS = ("INSTRUME", "CAMERAID", "CAMNAME", "GAIN", "OFFSET", "XBINNING", "YBINNING",
               "READOUTM", "EGAIN", "XPIXSZ", "YPIXSZ", "BITDEPTH", "SET-TEMP", "FILTER",
               "BAYERPAT", "XBAYROFF", "YBAYROFF", "ROWORDER", "DATE-OBS", "TIMESYS",
               "PLANNAME")


class MasterBuildError(Exception):
    """A master cannot be built (too few usable frames, nothing to calibrate a flat with)."""


@dataclass(frozen=True)
class MasterGroup:
    """The frames of one cell of one run: what one master is built from."""

    kind: str
    run_id: int
    cell_key: str
    camera: str
    folder: str
    paths: tuple[str, ...]  # relative to the library root, in sequence order
    gain: int
    offset: int
    binning: int
    readout_mode: str
    setpoint_c: float
    exposure_s: float  # median exposure (flats may vary)
    filter: str | None

    @property
    def settings(self) -> str:
        return (f"g{self.gain}_o{self.offset}_bin{self.binning}_{self.readout_mode}_"
                f"{fmt_number(self.setpoint_c)}C")

    def describe(self) -> str:
        what = f"{self.kind} {self.settings}"
        if self.kind in ("dark", "darkflat"):
            what += f" {fmt_number(self.exposure_s)} s"
        if self.filter:
            what += f" filter {self.filter}"
        return f"{what} (run {self.run_id}, {len(self.paths)} frames)"


def rejection_of(cfg: MastersConfig, *, sky_flats: bool = False) -> Rejection:
    """The rejection for a master: ``masters.rejection``, or ``masters.sky_flat_rejection`` for
    sky flats (which remove the stars)."""
    r = cfg.sky_flat_rejection if sky_flats else cfg.rejection
    return Rejection(method=r.method, sigma_low=r.sigma_low, sigma_high=r.sigma_high,
                     center=r.center, spread=r.spread, stddev=r.stddev,
                     iterations=r.iterations, n_low=r.n_low, n_high=r.n_high,
                     percentile_low=r.percentile_low, percentile_high=r.percentile_high)


def frame_groups(index: Index, *, kinds: Sequence[str] | None = None,
                 run_id: int | None = None, cell_key: str | None = None) -> list[MasterGroup]:
    """Every (run, cell) with frames, in build order (calibrators first)."""
    groups: dict[tuple[int, str], list[CellFrame]] = {}
    for f in index.cell_frames(run_id, cell_key):
        groups.setdefault((f.run_id, f.cell_key), []).append(f)
    out: list[MasterGroup] = []
    for (rid, key), rows in groups.items():
        first = rows[0]
        if kinds is not None and first.kind not in kinds:
            continue
        exposures = sorted(float(r.exposure_s) for r in rows)
        out.append(MasterGroup(
            kind=first.kind, run_id=rid, cell_key=key, camera=first.camera,
            folder=first.folder, paths=tuple(r.path for r in rows),
            gain=first.gain, offset=first.offset, binning=first.binning,
            readout_mode=first.readout_mode, setpoint_c=first.setpoint_c,
            exposure_s=exposures[len(exposures) // 2], filter=first.filter))
    out.sort(key=lambda g: (BUILD_ORDER.get(g.kind, 9), g.run_id, g.cell_key))
    return out


def needs_build(index: Index, group: MasterGroup) -> str | None:
    """Why ``group``'s master must be built ("missing", "stale") or None if it is current."""
    existing = index.find_master(group.kind, group.run_id, group.cell_key)
    if existing is None:
        return "missing"
    if existing.inputs_digest != inputs_digest(list(group.paths)):
        return "stale"
    if not (index.root / existing.path).exists():
        return "missing file"
    return None


def find_calibrator(index: Index, kind: str, group: MasterGroup, tolerance_c: float,
                    exposure_s: float | None = None) -> MasterRow | None:
    """The master bias (or dark flat) for ``group``: same camera and settings, set-point within
    ``tolerance_c``, the same run preferred, then the newest."""
    rows = index.calibrator_candidates(
        kind, camera=group.camera, gain=group.gain, offset=group.offset, binning=group.binning,
        readout_mode=group.readout_mode, setpoint_c=group.setpoint_c,
        tolerance_c=tolerance_c + 1e-9, prefer_run=group.run_id)
    for r in rows:
        if exposure_s is not None and abs(float(r.exposure_s or 0.0) - exposure_s) > \
                0.02 * exposure_s + 1e-6:
            continue
        return r
    return None


def build_master(index: Index, group: MasterGroup, cfg: MastersConfig) -> Path:
    """Build (or rebuild) the master of ``group``. Blocks for the combination.

    Raises MasterBuildError (too few frames, no calibrator for flats), MasterInputError
    (inconsistent frames), OSError (disk).
    """
    root = index.root
    paths = [root / p for p in group.paths]
    headers = check_consistent(paths, kind=group.kind)
    if not headers:
        raise MasterBuildError(f"{group.describe()}: none of its frames is readable any more")
    header = _master_header(headers[0], group, index)
    subtract: np.ndarray | None = None
    scales: list[float] | None = None
    sky_flats = group.kind == "flat" and headers[0].get("FLATSRC") == "sky"
    if group.kind == "dark":
        subtract = _dark_convention(index, group, cfg, header)
    if group.kind == "flat":
        subtract, flatcal = _flat_calibrator(index, group, cfg)
        set_card(header, "FLATCAL", flatcal, "subtracted from each flat")
        pattern = cfa.header_pattern(headers[0], int(headers[0].get("NAXIS2", 0)))
        if pattern is None:
            scales = [1.0 / _central_level(p, subtract) for p in paths]
            set_card(header, "NORMALIZ", "median", "each flat / its central median")
        else:  # one normaliser for the mosaic: the colour balance stays as the light gave it
            channel = _brightest_channel(paths[0], subtract, pattern)
            scales = [1.0 / _central_level(p, subtract, pattern, channel) for p in paths]
            set_card(header, "NORMALIZ", "median-cfa", "each flat / one channel's central median")
            set_card(header, "NORMCHAN", channel, "CFA channel normalised to 1 (the brightest)")
    out = master_path(camera_root(root, group.camera, group.folder or None), group.kind,
                      group.settings, exposure_s=group.exposure_s, filter_name=group.filter,
                      run_id=group.run_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        combine_to_fits([str(p) for p in paths], out, header=header, method=cfg.method,
                        rejection=rejection_of(cfg, sky_flats=sky_flats), subtract=subtract,
                        scales=scales,
                        memory_budget_bytes=int(cfg.memory_budget_mb * 2**20))
    except ValueError as err:
        raise MasterBuildError(f"{group.describe()}: {err}") from err
    if group.kind == "flat":
        fill_dead_pixels(out, cfg.cold_fraction, cfg.bpm_block_px,
                         cfa.header_pattern(headers[0], int(headers[0].get("NAXIS2", 0))))
    # The row says what the file's header says (the same mapping as ``library rescan``).
    index.upsert_master(master_row(fits.getheader(out), path=out.relative_to(root).as_posix(),
                                   inputs_digest=inputs_digest(list(group.paths))))
    log.info("built %s: %s", out.name, group.describe())
    return out


def _dark_convention(index: Index, group: MasterGroup, cfg: MastersConfig,
                     header: fits.Header) -> np.ndarray | None:
    """Record the library's dark convention in ``header``; the master bias to subtract (or None).
    Raises MasterBuildError when the convention needs a master bias the library lacks."""
    set_card(header, "DARKCONV", cfg.dark_convention, "master dark convention")
    if cfg.dark_convention == "with-bias":
        set_card(header, "BIASSUB", False, "bias included")
        return None
    bias = find_calibrator(index, "bias", group, cfg.bias_setpoint_tolerance_c)
    if bias is None:
        raise MasterBuildError(
            f"{group.describe()}: masters.dark_convention is bias-subtracted but there is no "
            f"master bias at gain {group.gain}, offset {group.offset}, bin {group.binning}, "
            f"{fmt_number(group.setpoint_c)} °C: capture bias frames at these settings first")
    set_card(header, "BIASSUB", True, "master bias subtracted")
    set_card(header, "BIASMSTR", Path(bias.path).name, "master bias used")
    return load_float32(index.root / bias.path)


def _master_header(first: fits.Header, group: MasterGroup, index: Index) -> fits.Header:
    header = fits.Header()
    set_card(header, "IMAGETYP", MASTER_IMAGETYP[group.kind], "type of image")
    if group.kind == "darkflat":
        set_card(header, "CALTYPE", "DARKFLAT", "master dark for flats")
    if group.kind != "flat":
        # In 16-bit ADU like the frames (the writer widens the range to the values written).
        set_card(header, "DATAMIN", 0.0, "[ADU] lowest value")
        set_card(header, "DATAMAX", ADU_FULL_SCALE, "[ADU] full scale (16-bit)")
        set_card(header, "EXPTIME", float(group.exposure_s), "[s] exposure time")
        set_card(header, "EXPOSURE", float(group.exposure_s), "[s] exposure time")
        set_card(header, "DARKTIME", float(group.exposure_s), "[s] dark integration time")
    else:
        set_card(header, "EXPTIME", float(group.exposure_s),
                 "[s] median exposure of the flats")
    for key in COPIED_KEYS:
        if key in first:
            set_card(header, key, first[key], first.comments[key])
    temp = index.mean_ccd_temp(group.run_id, group.cell_key)
    if temp is not None:
        set_card(header, "CCD-TEMP", round(temp, 2), "[degC] mean over the inputs")
    set_card(header, "SWCREATE", f"calibd {__version__}", "software that created this file")
    set_card(header, "SRCRUN", group.run_id, "calibd run of the input frames")
    set_card(header, "SRCCELL", group.cell_key, "calibd cell of the input frames")
    return header


def _flat_calibrator(index: Index, group: MasterGroup, cfg: MastersConfig
                     ) -> tuple[np.ndarray, str]:
    tol = cfg.bias_setpoint_tolerance_c
    dark_flat = find_calibrator(index, "darkflat", group, tol, exposure_s=group.exposure_s)
    if dark_flat is not None:
        return load_float32(index.root / dark_flat.path), f"darkflat:{Path(dark_flat.path).name}"
    bias = find_calibrator(index, "bias", group, tol)
    if bias is None:  # bias barely depends on temperature: accept any set-point
        bias = find_calibrator(index, "bias", group, 1000.0)
    if bias is not None:
        return load_float32(index.root / bias.path), f"bias:{Path(bias.path).name}"
    raise MasterBuildError(
        f"{group.describe()}: no master dark flat or master bias at gain {group.gain}, "
        f"offset {group.offset}, bin {group.binning} to calibrate the flats with: capture bias "
        "frames at these settings first")


def load_float32(path: Path) -> np.ndarray:
    """A master's image as float32 (read whole: masters are one frame each)."""
    data = fits.getdata(path, memmap=False)
    return np.asarray(data, dtype=np.float32)


def _central_region(path: Path, subtract: np.ndarray | None, *, even: bool) -> np.ndarray:
    """The central quarter of ``path`` minus ``subtract``; ``even``: starting on an even row and
    column (a mosaic's crop keeps its pattern)."""
    with FrameSource(path) as src:
        h, w = src.shape
        r0, c0 = (h // 4, w // 4) if not even else ((h // 4) & ~1, (w // 4) & ~1)
        r1 = h - h // 4
        band = np.empty((r1 - r0, w), dtype=np.float32)
        src.read_rows(r0, r1, band, np.empty(band.size * 8, dtype=np.uint8))
    c1 = w - w // 4
    region = band[:, c0:c1]
    if subtract is not None:
        region = region - subtract[r0:r1, c0:c1]
    return region


def _brightest_channel(path: Path, subtract: np.ndarray | None, pattern: str) -> str:
    """The CFA channel with the highest central median in one calibrated flat."""
    planes = cfa.channels(_central_region(path, subtract, even=True), pattern)
    return max(planes, key=lambda n: float(np.median(np.asarray(planes[n], np.float32))))


def _central_level(path: Path, subtract: np.ndarray | None, pattern: str | None = None,
                   channel: str | None = None) -> float:
    """Median of the central quarter of ``path`` minus ``subtract`` (of a mosaic: of its CFA
    ``channel`` there); raises MasterBuildError when it is not positive (a dark 'flat')."""
    region = _central_region(path, subtract, even=pattern is not None)
    if pattern is not None and channel is not None:
        sample = np.asarray(cfa.channels(region, pattern)[channel], dtype=np.float32)
    else:
        sample = region[::2, ::2]
    level = float(np.median(sample))
    if level <= 0:
        raise MasterBuildError(f"{path.name}: no signal above the calibration frame "
                               f"(central median {level:.1f} ADU)")
    return level
