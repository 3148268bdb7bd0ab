"""``calibd sensor analyze``: photon transfer per setting and channel, offset clipping and the
dark-current model, from the frames the library index holds.

Blocks on reading the frames (each ladder and dark pair once; the pair at half saturation twice
for the PRNU); memory: a few frames. Results are plain, JSON-ready dictionaries (see
:mod:`capture.sensor.store` for where they are kept).
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from calibd.capture.library.frame_queries import SensorFrame
from calibd.capture.library.index import Index
from calibd.capture.sensor.dark import SetpointDark, doubling_temperature, setpoint_dark
from calibd.capture.sensor.frames import Group, Image, group_frames, left_shift, planes, read_image
from calibd.capture.sensor.ptc import (
    PairStats,
    Point,
    centre,
    dsnu_adu,
    fit_transfer,
    pair_stats,
    prnu_pct,
    unity_gain,
)

log = logging.getLogger(__name__)
CLIP_LIMIT = 1e-5  # the recommended offset clips at most this fraction of pixels
MAX_DARK_FRAMES = 4  # frames averaged per dark exposure and per bias (the dark model)
SCHEMA_VERSION = 1


def analyze(root: Path, index: Index, *, camera: str | None = None, run_id: int | None = None,
            roi: float = 1.0) -> dict[str, Any]:
    """Analyse every setting with frames for it (ladder, bias, darks, offset sweep). ``roi``:
    the central fraction of each dimension the ladder statistics use (1: the whole frame, as
    EMVA 1288; less keeps a strongly vignetted panel's corners out). Raises FrameReadError (a
    frame cannot be read), LibraryError."""
    frames = index.sensor_frames(camera, run_id)
    groups, sweep = group_frames(frames)
    out: dict[str, Any] = {"version": SCHEMA_VERSION, "created_utc":
                           datetime.now(UTC).isoformat(timespec="seconds"),
                           "roi": roi, "transfer": [], "unity": [], "offsets": [], "dark": [],
                           "problems": []}
    gains: dict[tuple[str, int, int, str], dict[int, float]] = {}
    for (cam, settings), group in sorted(groups.items()):
        gain, offset, binning, mode = settings
        ident = {"camera": cam, "gain": gain, "offset": offset, "binning": binning,
                 "readout_mode": mode}
        e_per_adu: float | None = None
        if group.ladder:
            try:
                res = _transfer(root, group, roi)
            except ValueError as err:
                out["problems"].append(f"{_label(ident)}: {err}")
            else:
                out["transfer"].append({**ident, **res})
                e_per_adu = statistics.fmean(c["e_per_adu"] for c in res["channels"].values())
                gains.setdefault((cam, offset, binning, mode), {})[gain] = e_per_adu
        if e_per_adu is None:
            continue
        try:
            dark = _dark_model(root, group, e_per_adu)
        except ValueError as err:
            out["problems"].append(f"{_label(ident)}: {err}")
            continue
        if dark is not None:
            out["dark"].append({**ident, "e_per_adu": e_per_adu, **dark})
    for (cam, offset, binning, mode), by_gain in sorted(gains.items()):
        g = sorted(by_gain)
        value = unity_gain(g, [by_gain[x] for x in g])
        if value is not None:
            out["unity"].append({"camera": cam, "offset": offset, "binning": binning,
                                 "readout_mode": mode, "gain": round(value, 1),
                                 "gains_measured": g})
    for (cam, gain, binning, mode), by_offset in sorted(sweep.items()):
        if len(by_offset) < 2:
            continue
        out["offsets"].append({"camera": cam, "gain": gain, "binning": binning,
                               "readout_mode": mode, **_offset_sweep(root, by_offset)})
    return out


def _label(ident: dict[str, Any]) -> str:
    return (f"{ident['camera']} gain {ident['gain']} offset {ident['offset']} bin "
            f"{ident['binning']} {ident['readout_mode']}")


def _pair(root: Path, frames: list[SensorFrame]) -> tuple[Image, Image]:
    if len(frames) < 2:
        raise ValueError(f"{frames[0].cell_key}: {len(frames)} frame, a pair is needed")
    return read_image(root, frames[0]), read_image(root, frames[1])


def _transfer(root: Path, g: Group, roi: float) -> dict[str, Any]:
    """Photon transfer of one setting, per channel."""
    sp = statistics.mode(f.setpoint_c for fs in g.ladder.values() for f in fs)
    bias_frames = g.bias.get(sp) or next(iter(g.bias.values()), [])
    if len(bias_frames) < 2:
        raise ValueError("no bias pair at the ladder's set-point")
    b1, b2 = _pair(root, bias_frames)
    levels = sorted(g.ladder)
    first = _pair(root, g.ladder[levels[0]])
    shift = left_shift([b1.data, b2.data, first[0].data, first[1].data])
    pattern = b1.pattern

    def split(img: Image) -> dict[str, np.ndarray]:
        data = img.data >> np.uint16(shift) if shift else img.data
        return planes(data, pattern)

    bias = (split(b1), split(b2))
    names = list(bias[0])
    read = {c: pair_stats(bias[0][c], bias[1][c]) for c in names}
    dsnu = {c: dsnu_adu(bias[0][c], bias[1][c], read[c].var) for c in names}
    dark_cache: dict[float, dict[str, PairStats]] = {}
    points: dict[str, list[Point]] = {c: [] for c in names}
    for lvl in levels:
        frames = g.ladder[lvl]
        if len(frames) < 2:
            continue
        a, b = first if lvl == levels[0] else _pair(root, frames)
        t = frames[0].exposure_s
        fa, fb = split(a), split(b)
        if t not in dark_cache:
            dark_cache[t] = _dark_pair(root, g, t, split, roi) or \
                {c: pair_stats(centre(bias[0][c], roi), centre(bias[1][c], roi)) for c in names}
        for c in names:
            s = pair_stats(centre(fa[c], roi), centre(fb[c], roi))
            d = dark_cache[t][c]
            points[c].append(Point(t, s.mean, s.var, d.mean, d.var))
    channels: dict[str, Any] = {}
    for c in names:
        pre = fit_transfer(points[c], read[c].var)
        # PRNU at the level nearest half saturation.
        half = min(points[c], key=lambda p: abs(p.signal - 0.5 * pre.saturation_signal_adu))
        lvl = next(x for x in levels if g.ladder[x][0].exposure_s == half.exposure_s)
        prnu = _prnu(root, g, lvl, split, c, roi, half)
        tr = fit_transfer(points[c], read[c].var, prnu_pct=prnu, dsnu_adu=dsnu[c])
        channels[c] = {**asdict(tr), "points": [asdict(p) for p in points[c]]}
    return {"setpoint_c": sp, "left_shift": shift, "bayer": pattern, "channels": channels}


def _dark_pair(root: Path, g: Group, t: float, split: Any, roi: float
               ) -> dict[str, PairStats] | None:
    frames = g.darkflats.get(t)
    if not frames or len(frames) < 2:
        return None
    a, b = _pair(root, frames)
    fa, fb = split(a), split(b)
    return {c: pair_stats(centre(fa[c], roi), centre(fb[c], roi)) for c in fa}


def _prnu(root: Path, g: Group, lvl: int, split: Any, channel: str, roi: float,
          point: Point) -> float | None:
    dark = g.darkflats.get(point.exposure_s)
    if not dark or len(dark) < 2:
        return None
    a, b = _pair(root, g.ladder[lvl])
    da, db = _pair(root, dark)
    fa, fb, ga, gb = (split(x)[channel] for x in (a, b, da, db))
    return prnu_pct((centre(fa, roi), centre(fb, roi)), (centre(ga, roi), centre(gb, roi)),
                    point.var, point.dark_var)


def _mean_image(root: Path, frames: list[SensorFrame]) -> np.ndarray:
    use = frames[:MAX_DARK_FRAMES]
    acc: np.ndarray | None = None
    for f in use:
        img = read_image(root, f).data
        acc = img.astype(np.float64) if acc is None else acc + img
    assert acc is not None
    return acc / len(use)


def _dark_model(root: Path, g: Group, e_per_adu: float) -> dict[str, Any] | None:
    """Dark current per set-point (bias and darks at two or more exposures), and T_d."""
    per_sp: list[SetpointDark] = []
    setpoints = sorted({sp for sp, _ in g.darks}, reverse=True)
    for sp in setpoints:
        bias_frames = g.bias.get(sp)
        darks = {t: fs for (s, t), fs in g.darks.items() if s == sp}
        if not bias_frames or len(darks) < 2:
            continue
        bias = _mean_image(root, bias_frames)
        read_var = pair_stats(read_image(root, bias_frames[0]).data,
                              read_image(root, bias_frames[1]).data).var \
            if len(bias_frames) >= 2 else 1.0
        mean_darks = {t: _mean_image(root, fs) for t, fs in darks.items()}
        temps = [f.ccd_temp_c for fs in darks.values() for f in fs[:MAX_DARK_FRAMES]
                 if f.ccd_temp_c is not None]
        temp = statistics.fmean(temps) if temps else sp
        per_sp.append(setpoint_dark(sp, temp, bias, mean_darks, e_per_adu,
                                    read_var / max(1, min(len(bias_frames), MAX_DARK_FRAMES))))
    if not per_sp:
        return None
    td = doubling_temperature(per_sp)
    return {"setpoints": [asdict(p) for p in per_sp],
            "doubling_c": None if td is None or not math.isfinite(td) else td}


def _offset_sweep(root: Path, by_offset: dict[int, list[SensorFrame]]) -> dict[str, Any]:
    """Per offset the fraction of pixels clipped at zero in its bias frames (at most two)."""
    rows = []
    for off in sorted(by_offset):
        imgs = [read_image(root, f).data for f in by_offset[off][:2]]
        shift = left_shift(imgs)
        clipped = sum(int(np.count_nonzero((img >> np.uint16(shift)) == 0)) for img in imgs)
        rows.append({"offset": off, "clipped_fraction": clipped / sum(i.size for i in imgs)})
    ok = [r["offset"] for r in rows if r["clipped_fraction"] <= CLIP_LIMIT]
    return {"sweep": rows, "recommended_offset": min(ok) if ok else None,
            "clip_limit": CLIP_LIMIT}
