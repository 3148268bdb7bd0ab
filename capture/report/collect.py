"""What the calibration report plots, worked out from the library's index (through named
:class:`Index` methods), its bad pixel maps' headers and the stored sensor analysis.

Every number comes from the index rows the runs wrote: a frame's ``level_adu`` is the median of
its central region and ``noise_adu`` 1.4826 × the MAD of the same sample (see
:func:`capture.sequencer.checks.frame_stats`). Nothing here reads pixels.
"""

from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from pathlib import Path
from typing import Any

from calibd.capture.library.frame_queries import ReportFrame
from calibd.capture.library.index import Index

log = logging.getLogger(__name__)


@dataclass
class Series:
    label: str
    points: list[tuple[float | datetime, float]] = field(default_factory=list)


@dataclass
class Plot:
    """One figure: ``series`` of (x, y) points; ``x_time`` when x are datetimes; ``bars`` for
    a bar chart (x are the series' labels)."""

    ident: str
    title: str
    x_label: str
    y_label: str
    series: list[Series]
    note: str = ""
    log_y: bool = False
    x_time: bool = False
    bars: bool = False


@dataclass
class Report:
    library: str
    frames: int
    cameras: list[str]
    plots: list[Plot]
    sensor: list[dict[str, Any]] = field(default_factory=list)  # stored results per camera


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


def _bias_levels(frames: list[ReportFrame]) -> dict[tuple[str, int, int, int], float]:
    """(camera, gain, offset, binning) -> [ADU] mean bias level."""
    acc: dict[tuple[str, int, int, int], list[float]] = defaultdict(list)
    for f in frames:
        if f.kind == "bias" and f.level_adu is not None:
            acc[(f.camera, f.gain, f.offset, f.binning)].append(f.level_adu)
    return {k: _mean(v) for k, v in acc.items()}


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y on x; None with fewer than two distinct x."""
    xs = [p[0] for p in points]
    if len(set(xs)) < 2:
        return None
    mx, my = _mean(xs), _mean([p[1] for p in points])
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def dark_plots(frames: list[ReportFrame]) -> list[Plot]:
    """Dark level above the bias against exposure (per camera, gain and set-point), and the dark
    current (the slope of that line) against the sensor temperature."""
    bias = _bias_levels(frames)
    groups: dict[tuple[str, int, int, int, float], dict[float, list[float]]] = defaultdict(
        lambda: defaultdict(list))
    temps: dict[tuple[str, int, int, int, float], list[float]] = defaultdict(list)
    for f in frames:
        if f.kind != "dark" or f.level_adu is None:
            continue
        key = (f.camera, f.gain, f.offset, f.binning, f.setpoint_c)
        groups[key][f.exposure_s].append(f.level_adu)
        if f.ccd_temp_c is not None:
            temps[key].append(f.ccd_temp_c)
    vs_exposure: list[Series] = []
    rate: dict[tuple[str, int, int, int], Series] = {}
    noted = False
    for key in sorted(groups):
        cam, gain, offset, binning, setpoint = key
        base = bias.get((cam, gain, offset, binning))
        noted |= base is None
        pts = sorted((t, _mean(v) - (base or 0.0)) for t, v in groups[key].items())
        vs_exposure.append(Series(f"{cam} g{gain} b{binning} {setpoint:g} °C",
                                  [(t, round(y, 3)) for t, y in pts]))
        slope = _slope(pts)
        if slope is None and base is not None and pts and pts[0][0] > 0:
            slope = pts[0][1] / pts[0][0]
        if slope is not None:
            temp = _mean(temps[key]) if temps[key] else setpoint
            series = rate.setdefault((cam, gain, offset, binning),
                                     Series(f"{cam} g{gain} b{binning}"))
            series.points.append((round(temp, 2), round(slope, 6)))
    for s in rate.values():
        s.points.sort(key=lambda p: float(p[0]))  # type: ignore[arg-type]
    note = "" if not noted else "Some dark groups have no bias at their settings: raw level shown."
    out = []
    if vs_exposure:
        out.append(Plot("dark-exposure", "Dark level against exposure", "exposure (s)",
                        "mean level above bias (ADU)", vs_exposure, note))
    if rate:
        out.append(Plot("dark-temperature", "Dark current against sensor temperature",
                        "sensor temperature (°C)", "dark current (ADU/s)", list(rate.values()),
                        "Slope of the dark level over exposure at each set-point.",
                        log_y=all(float(y) > 0 for s in rate.values() for _, y in s.points)))
    return out


def bias_plots(frames: list[ReportFrame]) -> list[Plot]:
    """Bias level and frame noise against gain (per camera, offset and binning)."""
    levels: dict[tuple[str, int, int], dict[int, list[float]]] = defaultdict(
        lambda: defaultdict(list))
    noise: dict[tuple[str, int, int], dict[int, list[float]]] = defaultdict(
        lambda: defaultdict(list))
    for f in frames:
        if f.kind != "bias":
            continue
        key = (f.camera, f.offset, f.binning)
        if f.level_adu is not None:
            levels[key][f.gain].append(f.level_adu)
        if f.noise_adu is not None:
            noise[key][f.gain].append(f.noise_adu)

    def series(acc: dict[tuple[str, int, int], dict[int, list[float]]]) -> list[Series]:
        return [Series(f"{cam} offset {off} b{binning}",
                       [(float(g), round(_mean(v), 3)) for g, v in sorted(acc[k].items())])
                for k in sorted(acc) for cam, off, binning in [k]]

    out = []
    if levels:
        out.append(Plot("bias-gain", "Bias level against gain", "gain", "mean bias level (ADU)",
                        series(levels)))
    if noise:
        out.append(Plot("noise-gain", "Read noise against gain", "gain",
                        "bias frame noise (ADU, 1.4826 × MAD)", series(noise),
                        "One bias frame's spread: read noise plus the fixed pattern."))
    return out


def flat_plots(frames: list[ReportFrame]) -> list[Plot]:
    """Flat levels (above the bias) and exposures per filter over time."""
    bias = _bias_levels(frames)
    levels: dict[tuple[str, str], Series] = {}
    exposures: dict[tuple[str, str], Series] = {}
    for f in frames:
        when = _time(f.date_obs)
        if f.kind != "flat" or when is None:
            continue
        key = (f.camera, f.filter or "-")
        label = f"{f.camera} {f.filter or 'no filter'}"
        if f.level_adu is not None:
            base = bias.get((f.camera, f.gain, f.offset, f.binning), 0.0)
            levels.setdefault(key, Series(label)).points.append(
                (when, round(f.level_adu - base, 1)))
        exposures.setdefault(key, Series(label)).points.append((when, f.exposure_s))
    out = []
    if levels:
        out.append(Plot("flat-levels", "Flat levels per filter over time", "time (UTC)",
                        "level above bias (ADU)", [levels[k] for k in sorted(levels)],
                        x_time=True))
    if exposures:
        out.append(Plot("flat-exposures", "Flat exposures per filter over time", "time (UTC)",
                        "exposure (s)", [exposures[k] for k in sorted(exposures)], x_time=True))
    return out


def cooler_plot(frames: list[ReportFrame]) -> list[Plot]:
    """Sensor temperature of every frame over time, per camera and set-point."""
    acc: dict[tuple[str, float], Series] = {}
    for f in frames:
        when = _time(f.date_obs)
        if when is None or f.ccd_temp_c is None:
            continue
        acc.setdefault((f.camera, f.setpoint_c), Series(
            f"{f.camera} set-point {f.setpoint_c:g} °C")).points.append((when, f.ccd_temp_c))
    if not acc:
        return []
    return [Plot("cooler", "Cooler log: sensor temperature of each frame", "time (UTC)",
                 "sensor temperature (°C)", [acc[k] for k in sorted(acc)], x_time=True)]


def hot_pixel_plot(index: Index, root: Path) -> list[Plot]:
    """Hot and cold pixel counts of the bad pixel maps (their NHOT / NCOLD cards)."""
    from calibd.capture.library.fitsio import read_complete_header

    hot, cold = Series("hot"), Series("cold or dead")
    labels: list[str] = []
    for m in index.masters("bpm"):
        if not m.current:
            continue
        try:
            header = read_complete_header(root / m.path)
        except Exception as err:  # a map that cannot be read is left out, and said
            log.warning("report: cannot read %s: %s", m.path, err)
            continue
        n_hot, n_cold = header.get("NHOT"), header.get("NCOLD")
        if not isinstance(n_hot, int) or not isinstance(n_cold, int):
            continue
        label = f"{m.camera} g{m.gain} b{m.binning}"
        labels.append(label)
        hot.points.append((float(len(labels) - 1), float(n_hot)))
        cold.points.append((float(len(labels) - 1), float(n_cold)))
    if not labels:
        return []
    return [Plot("hot-pixels", "Bad pixel maps: hot and cold pixels", "map", "pixels",
                 [hot, cold], "; ".join(f"{i}: {label}" for i, label in enumerate(labels)),
                 bars=True)]


def sensor_plots(results: list[dict[str, Any]]) -> list[Plot]:
    """From the stored sensor analysis: read noise (e⁻) and conversion gain against gain, and
    the modelled dark current (e⁻/s) against temperature."""
    from calibd.capture.sensor import store

    noise: dict[str, Series] = {}
    conv: dict[str, Series] = {}
    dark: dict[str, Series] = {}
    for result in results:
        for r in store.transfer_rows(result):
            label = f"{r['camera']} {r['channel']} b{r['binning']}"
            if isinstance(r.get("read_noise_e"), int | float):
                noise.setdefault(label, Series(label)).points.append(
                    (float(r["gain"]), round(float(r["read_noise_e"]), 4)))
            if isinstance(r.get("e_per_adu"), int | float):
                conv.setdefault(label, Series(label)).points.append(
                    (float(r["gain"]), round(float(r["e_per_adu"]), 5)))
        for d in result.get("dark", []):
            label = f"{d['camera']} g{d['gain']} b{d['binning']}"
            for sp in d.get("setpoints", []):
                if isinstance(sp.get("rate_e_per_s"), int | float):
                    dark.setdefault(label, Series(label)).points.append(
                        (round(float(sp["temperature_c"]), 2),
                         round(float(sp["rate_e_per_s"]), 6)))
    out = []
    for ident, title, y_label, acc in (
            ("sensor-noise", "Sensor analysis: read noise against gain", "read noise (e⁻)",
             noise),
            ("sensor-gain", "Sensor analysis: conversion gain against gain", "e⁻/ADU", conv)):
        if acc:
            for s in acc.values():
                s.points.sort(key=lambda p: float(p[0]))  # type: ignore[arg-type]
            out.append(Plot(ident, title, "gain", y_label, list(acc.values()),
                            log_y=ident == "sensor-gain"))
    if dark:
        for s in dark.values():
            s.points.sort(key=lambda p: float(p[0]))  # type: ignore[arg-type]
        out.append(Plot("sensor-dark", "Sensor analysis: dark current against temperature",
                        "sensor temperature (°C)", "dark current (e⁻/s)", list(dark.values()),
                        log_y=all(float(y) > 0 for s in dark.values() for _, y in s.points)))
    return out


def collect(root: Path, index: Index) -> Report:
    """Everything the report shows. Reads the index, the bad pixel maps' headers and the
    stored sensor results; raises LibraryError for an unreadable index."""
    from calibd.capture.errors import InputError
    from calibd.capture.sensor import store

    frames = index.report_frames()
    results: list[dict[str, Any]] = []
    for cam in store.cameras(root):
        try:
            loaded = store.load(root, cam)
        except InputError as err:
            log.warning("report: the sensor result of %s is unusable: %s", cam, err)
            continue
        if loaded is not None:
            results.append(loaded)
    plots = [*dark_plots(frames), *bias_plots(frames), *flat_plots(frames),
             *hot_pixel_plot(index, root), *cooler_plot(frames), *sensor_plots(results)]
    return Report(str(root), len(frames), sorted({f.camera for f in frames}), plots, results)
