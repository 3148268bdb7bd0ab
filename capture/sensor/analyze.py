"""``calibd sensor analyze``: photon transfer per setting and channel, offset clipping and the
dark-current model, from the frames the library index holds.

Blocks on reading the frames (each about once, on two helper threads: a pair is read undecoded
and measured in one pass by the pair kernel, dark frames are averaged by a kernel, and the next
set-point's darks while this one is modelled); memory: about twenty frames' worth (four read
buffers, two set-points' mean images in float32). Results are plain, JSON-ready dictionaries
(see :mod:`capture.sensor.store` for where they are kept).
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any
from typing import TypeVar
from typing import cast

import numpy as np

from calibd.capture.cfa import channel_origins
from calibd.capture.combine.pairs import accumulate
from calibd.capture.combine.pairs import combine_phases
from calibd.capture.combine.pairs import pair_sums
from calibd.capture.combine.pairs import phase_sums
from calibd.capture.library.frame_queries import SensorFrame
from calibd.capture.library.index import Index
from calibd.capture.sensor.dark import SetpointDark
from calibd.capture.sensor.dark import doubling_temperature
from calibd.capture.sensor.dark import setpoint_dark
from calibd.capture.sensor.frames import Group
from calibd.capture.sensor.frames import Image
from calibd.capture.sensor.frames import Settings
from calibd.capture.sensor.frames import Words
from calibd.capture.sensor.frames import decode
from calibd.capture.sensor.frames import group_frames
from calibd.capture.sensor.frames import planes
from calibd.capture.sensor.frames import read_image
from calibd.capture.sensor.frames import read_words
from calibd.capture.sensor.frames import shift_of
from calibd.capture.sensor.ptc import PairStats
from calibd.capture.sensor.ptc import Point
from calibd.capture.sensor.ptc import centre
from calibd.capture.sensor.ptc import dsnu_adu
from calibd.capture.sensor.ptc import fit_transfer
from calibd.capture.sensor.ptc import prnu_pct
from calibd.capture.sensor.ptc import sample_block
from calibd.capture.sensor.ptc import stats_of
from calibd.capture.sensor.ptc import unity_gain

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
        means = _DarkMeans(reader, group)  # the helpers average darks while the ladder is fitted
        try:
            if group.ladder:
                try:
                    res = _transfer(reader, group, roi, queued=means.start)
                except ValueError as err:
                    out["problems"].append(f"{_label(ident)}: {err}")
                else:
                    out["transfer"].append({**ident, **res})
                    e_per_adu = statistics.fmean(c["e_per_adu"]
                                                 for c in res["channels"].values())
                    gains.setdefault((cam, offset, binning, mode), {})[gain] = e_per_adu
            if e_per_adu is None:
                continue
            try:
                dark = _dark_model(means, e_per_adu)
            except ValueError as err:
                out["problems"].append(f"{_label(ident)}: {err}")
                continue
        finally:
            means.cancel()
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


Blocks = tuple[np.ndarray, np.ndarray]
_Mean = tuple[np.ndarray, float | None]  # a mean image (float32) and a frame's temporal variance
_Means = tuple[Future[_Mean], dict[float, Future[_Mean]]]  # a set-point's bias and darks


@dataclass(frozen=True)
class _Measured:
    """What a pair gives: per channel its statistics and the central blocks the spatial
    statistics use (copies), and the bitwise OR of its values (a left shift)."""

    stats: dict[str, PairStats]
    blocks: dict[str, Blocks]
    bits: int


class _Reader:
    """Reads frames on ``workers`` helper threads (reads and the kernels release the GIL).

    Ladder pairs, offset-sweep frames and the dark model's frames are read and measured or
    averaged on a helper thread (:meth:`measure`, :meth:`clipped`, :meth:`mean`): read
    undecoded into that thread's buffers, decoded by the kernel in the same pass, and only
    the results come back. :meth:`pair` reads a decoded pair on the calling thread.
    :meth:`close` stops the helpers."""

    def __init__(self, root: Path, workers: int = 2) -> None:
        self.root = root
        self._local = threading.local()  # each thread's read buffers
        self._pool = ThreadPoolExecutor(max_workers=workers,
                                        thread_name_prefix="calibd-sensor-read")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _scratch(self) -> list[np.ndarray]:
        """This thread's buffer for :func:`read_image` (a one-element list once used)."""
        if not hasattr(self._local, "scratch"):
            self._local.scratch = []
        return cast(list[np.ndarray], self._local.scratch)

    def _words(self, frames: list[SensorFrame]) -> list[Words]:
        """Read up to two frames undecoded into this thread's two pair buffers."""
        if not hasattr(self._local, "pair"):
            self._local.pair = [None, None]
        bufs = cast(list[Any], self._local.pair)
        out = []
        for i, f in enumerate(frames[:2]):
            w = read_words(self.root, f, bufs[i])
            if w.raw:
                bufs[i] = w.data
            out.append(w)
        if len(out) == 2 and out[0].raw != out[1].raw:  # one file off the fast path
            out = [Words(decode(w.data, w.raw), False, w.pattern) for w in out]
        return out

    def mean(self, frames: list[SensorFrame], minus: Future[_Mean] | None = None
             ) -> Future[_Mean]:
        """On a helper thread: the mean image (float32) of up to ``MAX_DARK_FRAMES`` frames,
        less the image of ``minus`` when given (a future of this reader's, submitted before),
        and with two or more frames the temporal variance of one frame (DN^2, from the first
        pair)."""
        use = frames[:MAX_DARK_FRAMES]

        def run() -> _Mean:
            acc: np.ndarray | None = None
            var: float | None = None
            for k in range(0, len(use), 2):
                words = self._words(use[k : k + 2])
                if var is None and len(words) == 2:
                    var = stats_of(pair_sums(words[0].data, words[1].data,
                                             raw=words[0].raw)).var
                for i, w in enumerate(words):
                    last = k + i == len(use) - 1
                    if acc is None:
                        acc = np.empty(w.data.shape, dtype=np.float32)
                    accumulate(acc, w.data, raw=w.raw, first=k + i == 0,
                               scale=1.0 / len(use) if last else 1.0,
                               minus=minus.result()[0] if last and minus is not None else None)
            assert acc is not None
            return acc, var

        return self._pool.submit(run)

    def pair(self, frames: list[SensorFrame]) -> tuple[Image, Image]:
        if len(frames) < 2:
            raise ValueError(f"{frames[0].cell_key}: {len(frames)} frame, a pair is needed")
        return (read_image(self.root, frames[0], self._scratch()),
                read_image(self.root, frames[1], self._scratch()))

    def measure(self, frames: list[SensorFrame], pattern: str | None, shift: int,
                roi: float) -> Future[_Measured]:
        """Read a pair and measure it (:func:`_measure`) on a helper thread."""
        if len(frames) < 2:
            raise ValueError(f"{frames[0].cell_key}: {len(frames)} frame, a pair is needed")

        def run() -> _Measured:
            a, b = self._words(frames)
            return _measure(a.data, b.data, a.raw, pattern, shift, roi)

        return self._pool.submit(run)

    def clipped(self, frames: list[SensorFrame]) -> Future[tuple[int, int]]:
        """(pixels at zero, pixels) of up to two frames after undoing their left shift, on a
        helper thread."""
        def run() -> tuple[int, int]:
            words = self._words(frames)
            a, b = words[0], words[-1]
            s = pair_sums(a.data, b.data, raw=a.raw)
            zeros = s.zeros_a + (s.zeros_b if len(words) == 2 else 0)
            # A value shifted to zero was zero: its low bits are zero like every value's.
            return zeros, s.n * len(words)

        return self._pool.submit(run)


def _measure(a: np.ndarray, b: np.ndarray, raw: bool, pattern: str | None, shift: int,
             roi: float) -> _Measured:
    """Statistics and central blocks of a pair per channel, in the ``roi`` centre of each
    channel's plane, values shifted right by ``shift``; ``raw``: the arrays are the file's
    words (:class:`Words`). One pass over the pair for mono frames and for colour frames
    measured whole; a pass per channel otherwise."""
    pa, pb = planes(a, pattern), planes(b, pattern)
    stats: dict[str, PairStats] = {}
    blocks: dict[str, Blocks] = {}
    bits = 0
    whole = pattern is not None and roi >= 1.0
    if whole:
        sums = phase_sums(a, b, raw=raw, shift=shift)
        origins = channel_origins(pattern) if pattern is not None else {}
    for c in pa:
        x, y = centre(pa[c], roi), centre(pb[c], roi)
        if whole:
            r, col = origins[c]
            s = combine_phases(sums, a.shape, (r * 2 + col,))
        else:
            s = pair_sums(x, y, raw=raw, shift=shift)
        stats[c] = stats_of(s)
        bits |= s.bits
        blocks[c] = (decode(sample_block(x), raw, shift), decode(sample_block(y), raw, shift))
    return _Measured(stats, blocks, bits)


def _done(value: T) -> Future[T]:
    fut: Future[T] = Future()
    fut.set_result(value)
    return fut


def _transfer(reader: _Reader, g: Group, roi: float,
              queued: Callable[[], None] | None = None) -> dict[str, Any]:
    """Photon transfer of one setting, per channel. Every level's pairs are read and measured
    on the helper threads (``queued`` is called once they all are queued); the central blocks
    of every level's pairs are kept (a few MB each) for the PRNU at the level nearest half
    saturation."""
    sp = statistics.mode(f.setpoint_c for fs in g.ladder.values() for f in fs)
    bias_frames = g.bias.get(sp) or next(iter(g.bias.values()), [])
    if len(bias_frames) < 2:
        raise ValueError("no bias pair at the ladder's set-point")
    b1, b2 = reader.pair(bias_frames)
    levels = [lvl for lvl in sorted(g.ladder) if len(g.ladder[lvl]) >= 2]
    if not levels:
        raise ValueError("no flat pair on the ladder")
    pattern = b1.pattern
    # The left shift: from the bias pair and the first level's pair (measured again with it).
    first = reader.measure(g.ladder[levels[0]], pattern, 0, roi).result()
    shift = shift_of(pair_sums(b1.data, b2.data).bits | first.bits)
    if shift:
        first = reader.measure(g.ladder[levels[0]], pattern, shift, roi).result()
    bias = _measure(b1.data, b2.data, False, pattern, shift, roi)
    names = list(bias.stats)
    read = bias.stats
    dsnu = {c: dsnu_adu(*bias.blocks[c], read[c].var) for c in names}
    # Every level's flat pair and (once per exposure) dark pair, in ladder order.
    work: list[tuple[float, Future[_Measured], Future[_Measured] | None]] = []
    exposures: set[float] = set()
    try:
        for lvl in levels:
            frames = g.ladder[lvl]
            t = frames[0].exposure_s
            flat = _done(first) if lvl == levels[0] else \
                reader.measure(frames, pattern, shift, roi)
            dark: Future[_Measured] | None = None
            if t not in exposures:
                exposures.add(t)
                dark_frames = g.darkflats.get(t)
                dark = reader.measure(dark_frames, pattern, shift, roi) \
                    if dark_frames and len(dark_frames) >= 2 else _done(bias)
            work.append((t, flat, dark))
        if queued is not None:
            queued()
        darks: dict[float, _Measured] = {}
        points: dict[str, list[Point]] = {c: [] for c in names}
        blocks: dict[str, dict[float, Blocks]] = {c: {} for c in names}
        for t, flat, dark in work:
            if dark is not None:
                darks[t] = dark.result()
            m = flat.result()
            for c in names:
                s, d = m.stats[c], darks[t].stats[c]
                points[c].append(Point(t, s.mean, s.var, d.mean, d.var))
                blocks[c][t] = m.blocks[c]
    finally:
        for _, flat, dark in work:
            flat.cancel()
            if dark is not None:
                dark.cancel()
    channels: dict[str, Any] = {}
    for c in names:
        pre = fit_transfer(points[c], read[c].var)
        half = min(points[c], key=lambda p: abs(p.signal - 0.5 * pre.saturation_signal_adu))
        prnu = prnu_pct(blocks[c][half.exposure_s], darks[half.exposure_s].blocks[c],
                        half.var, half.dark_var)
        tr = fit_transfer(points[c], read[c].var, prnu_pct=prnu, dsnu_adu=dsnu[c])
        channels[c] = {**asdict(tr), "points": [asdict(p) for p in points[c]]}
    return {"setpoint_c": sp, "left_shift": shift, "bayer": pattern, "channels": channels}


class _DarkMeans:
    """The mean images of a setting's bias and darks per set-point (bias and darks at two or
    more exposures), averaged on the reader's helper threads one set-point ahead of
    :func:`_dark_model` (which takes them in order); :meth:`start` queues the first."""

    def __init__(self, reader: _Reader, g: Group) -> None:
        self.reader = reader
        self.setpoints: list[tuple[float, list[SensorFrame], dict[float, list[SensorFrame]]]] = []
        for sp in sorted({sp for sp, _ in g.darks}, reverse=True):
            darks = {t: fs for (s, t), fs in g.darks.items() if s == sp}
            if g.bias.get(sp) and len(darks) >= 2:
                self.setpoints.append((sp, g.bias[sp], darks))
        self._queued: dict[int, _Means] = {}

    def start(self, i: int = 0) -> None:
        if i < len(self.setpoints) and i not in self._queued:
            _, bias_frames, darks = self.setpoints[i]
            bias = self.reader.mean(bias_frames)
            self._queued[i] = bias, {t: self.reader.mean(darks[t], minus=bias)
                                     for t in sorted(darks)}

    def take(self, i: int) -> tuple[float | None, dict[float, np.ndarray]]:
        """Set-point ``i``'s bias temporal variance and mean darks less the mean bias (and the
        next set-point queued). Blocks; raises FrameReadError, ValueError."""
        self.start(i)
        bias, excess = self._queued.pop(i)
        read_var = bias.result()[1]
        images = {t: f.result()[0] for t, f in excess.items()}
        self.start(i + 1)
        return read_var, images

    def cancel(self) -> None:
        """Drop what is queued and not started."""
        for bias, excess in self._queued.values():
            for fut in (bias, *excess.values()):
                fut.cancel()
        self._queued.clear()


def _dark_model(means: _DarkMeans, e_per_adu: float) -> dict[str, Any] | None:
    """Dark current per set-point (bias and darks at two or more exposures), and T_d. The
    helper threads average the next set-point's frames while this one is modelled."""
    per_sp: list[SetpointDark] = []
    for i, (sp, bias_frames, darks) in enumerate(means.setpoints):
        read_var, images = means.take(i)
        temps = [f.ccd_temp_c for fs in darks.values() for f in fs[:MAX_DARK_FRAMES]
                 if f.ccd_temp_c is not None]
        temp = statistics.fmean(temps) if temps else sp
        per_sp.append(setpoint_dark(sp, temp, images, e_per_adu, (read_var or 1.0)
                                    / min(len(bias_frames), MAX_DARK_FRAMES)))
        del images
    if not per_sp:
        return None
    td = doubling_temperature(per_sp)
    return {"setpoints": [asdict(p) for p in per_sp],
            "doubling_c": None if td is None or not math.isfinite(td) else td}


def _offset_sweep(reader: _Reader, by_offset: dict[int, list[SensorFrame]]) -> dict[str, Any]:
    """Per offset the fraction of pixels clipped at zero in its bias frames (at most two)."""
    offsets = sorted(by_offset)
    counts = [reader.clipped(by_offset[off][:2]) for off in offsets]
    rows = []
    for off, fut in zip(offsets, counts, strict=True):
        clipped, pixels = fut.result()
        rows.append({"offset": off, "clipped_fraction": clipped / pixels})
    ok = [r["offset"] for r in rows if r["clipped_fraction"] <= CLIP_LIMIT]
    return {"sweep": rows, "recommended_offset": min(ok) if ok else None,
            "clip_limit": CLIP_LIMIT}
