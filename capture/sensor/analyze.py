"""``calibd sensor analyze``: photon transfer per setting and channel, offset clipping and the
dark-current model, from the frames the library index holds.

Blocks on reading the frames (each about once; the next ladder level is read by a helper thread
while the current one is measured); memory: about ten frames. Results are plain, JSON-ready
dictionaries (see :mod:`capture.sensor.store` for where they are kept).
"""

from __future__ import annotations

import functools
import logging
import math
import statistics
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from calibd.capture.library.frame_queries import SensorFrame
from calibd.capture.library.index import Index
from calibd.capture.sensor.dark import SetpointDark, doubling_temperature, setpoint_dark
from calibd.capture.sensor.frames import (
    Group,
    Image,
    Settings,
    group_frames,
    left_shift,
    planes,
    read_image,
)
from calibd.capture.sensor.ptc import (
    PairStats,
    Point,
    centre,
    dsnu_adu,
    fit_transfer,
    pair_stats,
    prnu_pct,
    sample_block,
    unity_gain,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
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
    reader = _Reader(root)
    try:
        return _analyze(reader, groups, sweep, roi)
    finally:
        reader.close()


def _analyze(reader: _Reader, groups: dict[tuple[str, Settings], Group],
             sweep: dict[tuple[str, int, int, str], dict[int, list[SensorFrame]]],
             roi: float) -> dict[str, Any]:
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
                res = _transfer(reader, group, roi)
            except ValueError as err:
                out["problems"].append(f"{_label(ident)}: {err}")
            else:
                out["transfer"].append({**ident, **res})
                e_per_adu = statistics.fmean(c["e_per_adu"] for c in res["channels"].values())
                gains.setdefault((cam, offset, binning, mode), {})[gain] = e_per_adu
        if e_per_adu is None:
            continue
        try:
            dark = _dark_model(reader, group, e_per_adu)
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
                               "readout_mode": mode, **_offset_sweep(reader, by_offset)})
    return out


def _label(ident: dict[str, Any]) -> str:
    return (f"{ident['camera']} gain {ident['gain']} offset {ident['offset']} bin "
            f"{ident['binning']} {ident['readout_mode']}")


class _Reader:
    """Reads frames, keeping the last few (the bias pair serves the transfer, the dark model
    and the offset sweep): each frame is read from the disk once as far as possible. One
    helper thread reads ahead what the analysis names next (reads and numpy release the GIL);
    :meth:`close` stops it."""

    def __init__(self, root: Path, keep: int = 4) -> None:
        self.root = root
        self.keep = keep
        self._cache: OrderedDict[str, Image] = OrderedDict()
        self._pending: dict[str, Future[Image]] = {}
        self._scratch: list[np.ndarray] = []  # this thread's raw-read buffer
        self._helper_scratch: list[np.ndarray] = []  # the helper thread's
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="calibd-sensor-read")

    def close(self) -> None:
        for fut in self._pending.values():
            fut.cancel()
        self._pool.shutdown(wait=True)
        self._pending.clear()
        self._cache.clear()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the helper thread."""
        return self._pool.submit(fn)

    def prefetch(self, frames: list[SensorFrame]) -> None:
        """Start reading these frames on the helper thread; :meth:`image` takes them."""
        for f in frames:
            if f.path not in self._cache and f.path not in self._pending:
                self._pending[f.path] = self._pool.submit(read_image, self.root, f,
                                                          self._helper_scratch)

    def image(self, frame: SensorFrame) -> Image:
        img = self._cache.pop(frame.path, None)
        if img is None:
            pending = self._pending.pop(frame.path, None)
            img = pending.result() if pending is not None else \
                read_image(self.root, frame, self._scratch)
        self._cache[frame.path] = img
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return img

    def pair(self, frames: list[SensorFrame]) -> tuple[Image, Image]:
        if len(frames) < 2:
            raise ValueError(f"{frames[0].cell_key}: {len(frames)} frame, a pair is needed")
        return self.image(frames[0]), self.image(frames[1])

    def pair_uncached(self, frames: list[SensorFrame]) -> tuple[Image, Image]:
        """A pair read past the cache, on the helper thread only (ladder levels are read
        once)."""
        if len(frames) < 2:
            raise ValueError(f"{frames[0].cell_key}: {len(frames)} frame, a pair is needed")
        return (read_image(self.root, frames[0], self._helper_scratch),
                read_image(self.root, frames[1], self._helper_scratch))


Blocks = tuple[np.ndarray, np.ndarray]


def _transfer(reader: _Reader, g: Group, roi: float) -> dict[str, Any]:
    """Photon transfer of one setting, per channel. The central blocks of every level's pairs
    are kept (a few MB each) for the PRNU at the level nearest half saturation."""
    sp = statistics.mode(f.setpoint_c for fs in g.ladder.values() for f in fs)
    bias_frames = g.bias.get(sp) or next(iter(g.bias.values()), [])
    if len(bias_frames) < 2:
        raise ValueError("no bias pair at the ladder's set-point")
    b1, b2 = reader.pair(bias_frames)
    levels = [lvl for lvl in sorted(g.ladder) if len(g.ladder[lvl]) >= 2]
    if not levels:
        raise ValueError("no flat pair on the ladder")
    first = reader.pair(g.ladder[levels[0]])
    shift = left_shift([b1.data, b2.data, first[0].data, first[1].data])
    pattern = b1.pattern

    def split(img: Image) -> dict[str, np.ndarray]:
        data = img.data >> np.uint16(shift) if shift else img.data
        return {c: centre(v, roi) for c, v in planes(data, pattern).items()}

    bias = (split(b1), split(b2))
    names = list(bias[0])
    read = {c: pair_stats(bias[0][c], bias[1][c]) for c in names}
    dsnu = {c: dsnu_adu(bias[0][c], bias[1][c], read[c].var) for c in names}
    darks: dict[float, dict[str, tuple[PairStats, Blocks]]] = {}
    points: dict[str, list[Point]] = {c: [] for c in names}
    blocks: dict[str, dict[float, Blocks]] = {c: {} for c in names}
    def load(lvl: int) -> tuple[tuple[Image, Image], tuple[Image, Image] | None]:
        """A level's flat pair and its dark pair (None: no dark pair, or measured already)."""
        frames = g.ladder[lvl]
        flats = first if lvl == levels[0] else reader.pair_uncached(frames)
        dark = g.darkflats.get(frames[0].exposure_s)
        dark_pair = reader.pair_uncached(dark) if dark and len(dark) >= 2 \
            and frames[0].exposure_s not in darks else None
        return flats, dark_pair

    # The next level is read while this one is measured.
    pending = reader.submit(functools.partial(load, levels[0]))
    for i, lvl in enumerate(levels):
        (a, b), dark_pair = pending.result()
        t = g.ladder[lvl][0].exposure_s
        if t not in darks:
            da, db = (split(x) for x in dark_pair) if dark_pair is not None else bias
            darks[t] = {c: (pair_stats(da[c], db[c]), _blocks(da[c], db[c]))
                        for c in names}
        if i + 1 < len(levels):
            pending = reader.submit(functools.partial(load, levels[i + 1]))
        fa, fb = split(a), split(b)
        for c in names:
            s = pair_stats(fa[c], fb[c])
            d = darks[t][c][0]
            points[c].append(Point(t, s.mean, s.var, d.mean, d.var))
            blocks[c][t] = _blocks(fa[c], fb[c])
        del a, b, fa, fb, dark_pair
    channels: dict[str, Any] = {}
    for c in names:
        pre = fit_transfer(points[c], read[c].var)
        half = min(points[c], key=lambda p: abs(p.signal - 0.5 * pre.saturation_signal_adu))
        prnu = prnu_pct(blocks[c][half.exposure_s], darks[half.exposure_s][c][1], half.var,
                        half.dark_var)
        tr = fit_transfer(points[c], read[c].var, prnu_pct=prnu, dsnu_adu=dsnu[c])
        channels[c] = {**asdict(tr), "points": [asdict(p) for p in points[c]]}
    return {"setpoint_c": sp, "left_shift": shift, "bayer": pattern, "channels": channels}


def _blocks(a: np.ndarray, b: np.ndarray) -> Blocks:
    """Copies of the central blocks the spatial statistics use."""
    return sample_block(a).copy(), sample_block(b).copy()


def _mean_image(reader: _Reader, frames: list[SensorFrame]) -> tuple[np.ndarray, float | None]:
    """The mean image (float32) of up to ``MAX_DARK_FRAMES`` frames and, with two or more,
    the temporal variance of one frame (DN^2, from the first pair)."""
    use = frames[:MAX_DARK_FRAMES]
    acc: np.ndarray | None = None
    first: np.ndarray | None = None
    var: float | None = None
    for f in use:
        img = reader.image(f).data
        if acc is None:
            acc, first = img.astype(np.float32), img
            continue
        if var is None and first is not None:
            var = pair_stats(first, img).var
        acc += img
    assert acc is not None
    acc *= np.float32(1.0 / len(use))
    return acc, var


def _dark_model(reader: _Reader, g: Group, e_per_adu: float) -> dict[str, Any] | None:
    """Dark current per set-point (bias and darks at two or more exposures), and T_d."""
    per_sp: list[SetpointDark] = []
    setpoints = sorted({sp for sp, _ in g.darks}, reverse=True)
    for sp in setpoints:
        bias_frames = g.bias.get(sp)
        darks = {t: fs for (s, t), fs in g.darks.items() if s == sp}
        if not bias_frames or len(darks) < 2:
            continue
        order = [bias_frames] + [darks[t] for t in sorted(darks)]
        means: list[np.ndarray] = []
        read_var: float | None = None
        for i, frames in enumerate(order):  # each read while the one before is averaged
            if i + 1 < len(order):
                reader.prefetch(order[i + 1][:MAX_DARK_FRAMES])
            mean, var = _mean_image(reader, frames)
            means.append(mean)
            read_var = var if i == 0 else read_var
        bias = means[0]
        mean_darks = dict(zip(sorted(darks), means[1:], strict=True))
        temps = [f.ccd_temp_c for fs in darks.values() for f in fs[:MAX_DARK_FRAMES]
                 if f.ccd_temp_c is not None]
        temp = statistics.fmean(temps) if temps else sp
        per_sp.append(setpoint_dark(sp, temp, bias, mean_darks, e_per_adu,
                                    (read_var or 1.0) / min(len(bias_frames), MAX_DARK_FRAMES)))
    if not per_sp:
        return None
    td = doubling_temperature(per_sp)
    return {"setpoints": [asdict(p) for p in per_sp],
            "doubling_c": None if td is None or not math.isfinite(td) else td}


def _offset_sweep(reader: _Reader, by_offset: dict[int, list[SensorFrame]]) -> dict[str, Any]:
    """Per offset the fraction of pixels clipped at zero in its bias frames (at most two)."""
    rows = []
    offsets = sorted(by_offset)
    for i, off in enumerate(offsets):
        if i + 1 < len(offsets):
            reader.prefetch(by_offset[offsets[i + 1]][:2])
        imgs = [reader.image(f).data for f in by_offset[off][:2]]
        shift = left_shift(imgs)
        clipped = sum(int(np.count_nonzero((img >> np.uint16(shift)) == 0)) for img in imgs)
        rows.append({"offset": off, "clipped_fraction": clipped / sum(i.size for i in imgs)})
    ok = [r["offset"] for r in rows if r["clipped_fraction"] <= CLIP_LIMIT]
    return {"sweep": rows, "recommended_offset": min(ok) if ok else None,
            "clip_limit": CLIP_LIMIT}
