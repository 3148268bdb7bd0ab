"""``calibd report --library DIR -o report.html``: one self-contained HTML page with plots of
the library (dark current, bias and read noise, flats over time, bad pixels, cooler log, the
sensor analysis)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from calibd.capture.cli.common import add_config_args
from calibd.capture.cli.common import library_from_args
from calibd.capture.errors import LibraryError
from calibd.capture.library.atomic import write_text
from calibd.capture.library.rescan import open_existing


def register(sub: Any) -> None:
    report = sub.add_parser("report", help="an HTML report with plots of the library")
    add_config_args(report, camera=False)
    report.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="the HTML file to write (replaced atomically)")
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from calibd.capture.report.collect import collect
    from calibd.capture.report.render import render_html

    _, root = library_from_args(args)
    index = open_existing(root)
    try:
        report = collect(root, index)
    finally:
        index.close()
    page = render_html(report)
    try:
        write_text(args.output, page)
    except OSError as err:
        raise LibraryError(f"cannot write {args.output}: {err.strerror or err}") from None
    print(f"wrote {args.output} ({len(report.plots)} plots, {report.frames} frames)")
    return 0
