"""The calibration report as one self-contained HTML page: matplotlib (Agg) draws each plot to
inline SVG, and every plot carries the table of the values it shows (for readers, screen
readers and tests). Light and dark mode: the axes and text are drawn in ``currentColor`` and
the page's colours follow ``prefers-color-scheme``. Nothing is loaded from elsewhere.
"""

from __future__ import annotations

import html
import io
from datetime import UTC
from datetime import datetime
from typing import Any

from calibd.capture import __version__
from calibd.capture.report.collect import Plot
from calibd.capture.report.collect import Report

_INK = "#010203"  # drawn by matplotlib, replaced by currentColor in the SVG
# Mid-tone colours that read on white and on near-black (Okabe-Ito, colour-blind safe).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999",
           "#F0E442"]
MAX_TABLE_ROWS = 400  # rows of a plot's value table shown (the plot has them all)

CSS = """
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1b1d21; --muted: #5b6170;
  --rule: #d8dbe2; --card: #f6f7f9; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #121417; --fg: #e6e8ec; --muted: #a3a9b6; --rule: #2c3038; --card: #1a1d22; }
}
body { background: var(--bg); color: var(--fg); margin: 0 auto; max-width: 62rem;
  padding: 1rem; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size: 1.5rem; margin: .2rem 0; } h2 { font-size: 1.15rem; margin: 0 0 .4rem; }
.muted { color: var(--muted); }
figure { background: var(--card); border: 1px solid var(--rule); border-radius: 8px;
  margin: 1rem 0; padding: .8rem; }
figure svg { width: 100%; height: auto; color: var(--fg); }
table { border-collapse: collapse; font-size: .85rem; }
td, th { border-bottom: 1px solid var(--rule); padding: .15rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
nav a { color: inherit; margin-right: .8rem; }
"""


def _svg(plot: Plot) -> str:
    """The plot as an SVG element (text and axes in currentColor)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.2))
    ax = fig.add_subplot()
    for spine in ax.spines.values():
        spine.set_color(_INK)
    ax.tick_params(which="both", colors=_INK)
    ax.set_title(plot.title, color=_INK)
    ax.set_xlabel(plot.x_label, color=_INK)
    ax.set_ylabel(plot.y_label, color=_INK)
    ax.grid(True, alpha=0.25, color=_INK)
    if plot.bars:
        width = 0.8 / max(1, len(plot.series))
        for i, s in enumerate(plot.series):
            ax.bar([float(x) + i * width for x, _ in s.points], [y for _, y in s.points],  # type: ignore[arg-type]
                   width=width, label=s.label, color=PALETTE[i % len(PALETTE)])
        ticks = sorted({float(x) for s in plot.series for x, _ in s.points})  # type: ignore[arg-type]
        ax.set_xticks([t + 0.4 - width / 2 for t in ticks], [str(int(t)) for t in ticks])
    else:
        for i, s in enumerate(plot.series):
            xs: list[Any] = [x for x, _ in s.points]
            ys = [y for _, y in s.points]
            style = "o" if plot.x_time else "o-"
            ax.plot(xs, ys, style, label=s.label, color=PALETTE[i % len(PALETTE)],
                    markersize=3 if plot.x_time else 4, linewidth=1.2)
    if plot.log_y:
        ax.set_yscale("log")
    if plot.x_time:
        fig.autofmt_xdate()
    if len(plot.series) > 1 or plot.bars:
        legend = ax.legend(fontsize=8, frameon=False, ncols=2 if len(plot.series) > 6 else 1)
        for text in legend.get_texts():
            text.set_color(_INK)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", transparent=True, metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML declaration and DOCTYPE
    svg = svg.replace(_INK, "currentColor")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(plot.title)}" ', 1)


def _x_text(x: Any) -> str:
    if isinstance(x, datetime):
        return x.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{x:g}"


def _values(plot: Plot) -> str:
    rows = [(s.label, _x_text(x), f"{y:g}") for s in plot.series for x, y in s.points]
    shown = rows[:MAX_TABLE_ROWS]
    body = "".join(f'<tr data-series="{html.escape(a)}"><td>{html.escape(a)}</td>'
                   f'<td class="x">{html.escape(b)}</td><td class="y">{c}</td></tr>'
                   for a, b, c in shown)
    more = (f'<p class="muted">{len(rows) - len(shown)} more values in the plot.</p>'
            if len(rows) > len(shown) else "")
    return (f'<details><summary>Values ({len(rows)})</summary><table class="values" '
            f'data-plot="{plot.ident}"><thead><tr><th>series</th>'
            f"<th>{html.escape(plot.x_label)}</th><th>{html.escape(plot.y_label)}</th></tr>"
            f"</thead><tbody>{body}</tbody></table>{more}</details>")


def _sensor_table(report: Report) -> str:
    from calibd.capture.sensor import store

    rows = [r for result in report.sensor for r in store.transfer_rows(result)]
    if not rows:
        return ""
    cols = ("camera", "gain", "offset", "binning", "channel", "e_per_adu", "read_noise_e",
            "full_well_e", "dynamic_range_stops")

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, '-'))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return (f'<figure id="sensor-table"><h2>Sensor analysis (photon transfer)</h2>'
            f'<table class="sensor"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></figure>")


def render_body(report: Report) -> str:
    """The report's content (no <html>/<head>): the web view embeds it as well."""
    parts = [f"<h1>Calibration library report</h1><p class='muted'>"
             f"{html.escape(report.library)} · {report.frames} frames · cameras: "
             f"{html.escape(', '.join(report.cameras) or 'none')} · calibd {__version__}</p>"]
    if report.plots:
        parts.append("<nav>" + "".join(f'<a href="#{p.ident}">{html.escape(p.title)}</a>'
                                       for p in report.plots) + "</nav>")
    else:
        parts.append("<p>No frames in this library yet.</p>")
    for plot in report.plots:
        note = f'<p class="muted">{html.escape(plot.note)}</p>' if plot.note else ""
        parts.append(f'<figure id="{plot.ident}" data-plot="{plot.ident}">{_svg(plot)}'
                     f"<figcaption>{note}{_values(plot)}</figcaption></figure>")
    parts.append(_sensor_table(report))
    return "\n".join(parts)


def render_html(report: Report) -> str:
    """The whole self-contained page."""
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<meta name='color-scheme' content='light dark'>"
            f"<title>calibd report: {html.escape(report.library)}</title>"
            f"<style>{CSS}</style></head><body>{render_body(report)}</body></html>\n")
