"""``calibd status`` (what the running daemon does) and ``calibd control start|pause|resume|stop``
(commands), both through the daemon's local HTTP API (:mod:`capture.daemon.api`).

The token for commands (and for a status on a non-loopback address) comes from ``--token``,
``--token-file`` or the ``CALIBD_API_TOKEN`` environment variable, in that order. Proxies from the
environment are ignored: the token goes straight to the daemon. Exit codes: 0 ok, 1 the daemon is
unreachable or refused the request, 2 bad arguments (URL, token file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import urllib.error
import urllib.request
from datetime import datetime
from datetime import timedelta
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import quote
from urllib.parse import urlsplit

from calibd.capture.cli.common import command_group
from calibd.capture.cli.common import print_json
from calibd.capture.cli.common import table
from calibd.capture.errors import InputError
from calibd.capture.errors import Problem
from calibd.capture.inputfile import InputFileError
from calibd.capture.inputfile import read_input_text
from calibd.capture.textsafe import shown

DEFAULT_URL = "http://127.0.0.1:8765"
DEFAULT_TIMEOUT_S = 5.0
TOKEN_ENV = "CALIBD_API_TOKEN"
URL_ENV = "CALIBD_API_URL"
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a status of many cameras and runs is tens of KB
MAX_TOKEN_FILE_BYTES = 4096


class ApiUnreachable(Exception):
    """The daemon did not answer (refused, timed out, not HTTP) or answered with an error."""


def register(sub: Any) -> None:
    status = sub.add_parser("status", help="what the running calibd daemon is doing")
    _add_client_args(status)
    status.add_argument("--json", action="store_true", help="the raw status as JSON")
    status.set_defaults(handler=run_status)

    csub = command_group(sub, "control", "start, pause, resume or stop runs in the daemon")
    start = csub.add_parser("start", help="queue a plan file or a configured schedule's plan now")
    what = start.add_mutually_exclusive_group(required=True)
    what.add_argument("--plan", metavar="NAME",
                      help="a plan file in the daemon's plans folder (daemon.plans_dir)")
    what.add_argument("--schedule", metavar="NAME", help="a schedule from the configuration")
    start.add_argument("--camera", metavar="NAME", help="camera (default: the plan's, or the "
                                                        "only one)")
    _add_client_args(start)
    start.set_defaults(handler=run_control, action="start")
    for action, text in (("pause", "stop the camera's run cleanly (resumable) and hold its queue"),
                         ("resume", "release a paused camera"),
                         ("stop", "stop the camera's run cleanly and drop its queued runs")):
        cmd = csub.add_parser(action, help=text)
        cmd.add_argument("camera", metavar="CAMERA")
        _add_client_args(cmd)
        cmd.set_defaults(handler=run_control, action=action)


def _add_client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, metavar="URL",
                        help=f"the daemon's API (default: ${URL_ENV}, else {DEFAULT_URL})")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", metavar="TOKEN",
                       help=f"API token (visible to other local users: prefer --token-file or "
                            f"${TOKEN_ENV})")
    token.add_argument("--token-file", type=Path, metavar="FILE", help="file holding the token")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help=f"give up after this long (default {DEFAULT_TIMEOUT_S:g} s)")


# -- handlers --------------------------------------------------------------------------------

def run_status(args: argparse.Namespace) -> int:
    """``calibd status``: GET the status and print it. Blocks up to ``--timeout`` seconds."""
    url, token = _endpoint(args)
    try:
        data = request_json("GET", f"{url}/api/v1/status", token=token, timeout_s=args.timeout)
    except ApiUnreachable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print_json(data)
        return 0
    try:
        text = format_status(_safe(data), url)
    except (ValueError, TypeError, OverflowError, KeyError, AttributeError):
        print(f"error: {shown(url, 200)} answered something that is not a calibd status",
              file=sys.stderr)
        return 1
    print(text)
    return 0


def run_control(args: argparse.Namespace) -> int:
    """``calibd control ...``: POST one command and print the daemon's answer."""
    url, token = _endpoint(args)
    if args.action == "start":
        path = "/api/v1/runs"
        body: dict[str, Any] | None = {"camera": args.camera, "plan": args.plan,
                                       "schedule": args.schedule}
    else:
        path = f"/api/v1/cameras/{quote(args.camera, safe='')}/{args.action}"
        body = None
    try:
        data = request_json("POST", url + path, token=token, body=body, timeout_s=args.timeout)
    except ApiUnreachable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(shown(data.get("message") or "ok", 500))
    return 0


def _endpoint(args: argparse.Namespace) -> tuple[str, str | None]:
    """The API base URL and the token from the arguments or environment. Raises InputError."""
    url = (args.url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise InputError([Problem(None, None, "--url",
                                  f"expected http://HOST:PORT, got {url!r}")])
    token: str | None = args.token
    if args.token_file is not None:
        try:
            token = read_input_text(args.token_file, MAX_TOKEN_FILE_BYTES).strip()
        except InputFileError as err:
            raise InputError([Problem(args.token_file, None, "",
                                      f"cannot read the token file: it {err}")]) from None
        if not token:
            raise InputError([Problem(args.token_file, None, "", "the token file is empty")])
    elif token is None:
        token = os.environ.get(TOKEN_ENV) or None
    return url, token


# -- HTTP ------------------------------------------------------------------------------------

def request_json(method: str, url: str, *, token: str | None = None,
                 body: dict[str, Any] | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """One request to the API; returns the JSON object it answered. Blocks up to about
    ``timeout_s`` seconds per network operation. Ignores proxy settings.

    Raises ApiUnreachable (with a message for the user, safe to print) when the daemon cannot
    be reached, does not answer in time (``timeout_s`` per network operation, about
    ``timeout_s`` for the whole exchange), answers with an HTTP error, answers more than
    :data:`MAX_ANSWER_BYTES`, or answers something not a JSON object. The answer's texts are
    as sent: print them through :func:`_safe` or :func:`shown` (``--json`` output escapes
    control characters by itself)."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    where = url.split("/api/", 1)[0]
    # The whole exchange runs in a helper thread so that a server dripping its answer (each
    # read within the socket timeout) cannot hold the command past the deadline.
    outcome: list[bytes | BaseException] = []
    worker = threading.Thread(target=_exchange, args=(req, timeout_s, outcome),
                              name="calibd-api-client", daemon=True)
    worker.start()
    worker.join(timeout_s + 1.0)
    if not outcome:
        raise ApiUnreachable(f"calibd daemon at {where} did not answer within "
                             f"{timeout_s:g} s")
    result = outcome[0]
    if not isinstance(result, bytes):
        raise _unreachable(result, where, timeout_s, token is not None)
    try:
        answer = json.loads(result.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ApiUnreachable(f"{where} did not answer with JSON (is it calibd?)") from None
    if not isinstance(answer, dict):
        raise ApiUnreachable(f"{where} answered {type(answer).__name__}, expected an object")
    try:
        json.dumps(answer)  # printable with --json: not nested past what dumps can walk
    except (RecursionError, ValueError):
        raise ApiUnreachable(f"{where} answered a JSON nested too deep") from None
    return answer


def _exchange(req: urllib.request.Request, timeout_s: float,
              outcome: list[bytes | BaseException]) -> None:
    """Send ``req`` and put at most :data:`MAX_ANSWER_BYTES` of the answer (or what was
    raised) into ``outcome``. Runs in :func:`request_json`'s helper thread."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout_s) as resp:
            raw = resp.read(MAX_ANSWER_BYTES + 1)
        if len(raw) > MAX_ANSWER_BYTES:
            raise ApiUnreachable(f"the answer is larger than {MAX_ANSWER_BYTES:,} bytes "
                                 "(is it calibd?)")
        outcome.append(raw)
    except urllib.error.HTTPError as err:
        try:
            body = err.read(MAX_ANSWER_BYTES)
        except (OSError, HTTPException, ValueError):
            body = b""
        outcome.append(_Refused(err.code, err.reason, body))
    except Exception as err:  # reported by request_json, in the caller's thread
        outcome.append(err)


class _Refused(Exception):
    """An HTTP error answer: its status code, reason phrase and (bounded) body."""

    def __init__(self, code: int, reason: object, body: bytes) -> None:
        super().__init__(code)
        self.code, self.reason, self.body = code, reason, body


def _unreachable(err: BaseException, where: str, timeout_s: float,
                 had_token: bool) -> ApiUnreachable:
    """The user's message (safe to print) for what :func:`_exchange` raised."""
    if isinstance(err, ApiUnreachable):
        return err
    if isinstance(err, _Refused):
        return ApiUnreachable(_http_error(err, had_token))
    if isinstance(err, urllib.error.URLError):
        reason = err.reason
        if isinstance(reason, ConnectionRefusedError):
            text = "connection refused (is the calibd service running?)"
        elif isinstance(reason, TimeoutError):
            text = f"no answer within {timeout_s:g} s"
        else:
            text = shown(getattr(reason, "strerror", None) or reason, 200)
        return ApiUnreachable(f"calibd daemon not reachable at {where}: {text}")
    if isinstance(err, TimeoutError):
        return ApiUnreachable(f"calibd daemon at {where} did not answer within {timeout_s:g} s")
    # OSError, HTTPException (a status line that is not HTTP), ...
    return ApiUnreachable(f"calibd daemon not reachable at {where}: {shown(err, 200)}")


def _http_error(err: _Refused, had_token: bool) -> str:
    try:
        message = shown(json.loads(err.body.decode("utf-8")).get("error"), 500)
    except (ValueError, AttributeError, RecursionError):
        message = shown(err.reason, 200) if isinstance(err.reason, str) else "error"
    text = f"the daemon refused the request (HTTP {err.code}): {message}"
    if err.code == 401 and not had_token:
        text += f" - pass --token-file FILE or set ${TOKEN_ENV}"
    return text


def _safe(value: Any) -> Any:
    """The decoded answer with every text made safe to print (:func:`shown`, at most 500
    characters): checked once here, so no later print echoes what the server sent."""
    if isinstance(value, str):
        return shown(value, 500)
    if isinstance(value, dict):
        return {shown(k, 100): _safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe(v) for v in value]
    return value


# -- formatting ------------------------------------------------------------------------------

def format_status(data: dict[str, Any], url: str = DEFAULT_URL) -> str:
    """The status snapshot as text: daemon line, cameras table, schedules, library."""
    daemon = _dict(data.get("daemon"))
    lines = [_daemon_line(daemon, url)]
    cameras = _dict(data.get("cameras"))
    notes: list[str] = []
    if cameras:
        rows = []
        for name, raw in cameras.items():
            row, note = _camera_row(str(name), _dict(raw), daemon.get("now_utc"))
            rows.append(row)
            notes += note
        lines += ["", table(rows, ["camera", "state", "plan", "run", "cell", "frames",
                                   "cooler", "ETA"], right={3, 5})]
        lines += notes
    else:
        lines += ["", "no cameras"]
    schedules = [s for s in data.get("schedules") or [] if isinstance(s, dict)]
    if schedules:
        rows = [[str(s.get("name", "?")), str(s.get("camera") or "-"),
                 str(s.get("trigger") or "-"),
                 _when(s.get("next_run_utc")) if s.get("enabled", True) else "disabled",
                 Path(str(s["plan"])).name if s.get("plan") else "-"] for s in schedules]
        lines += ["", table(rows, ["schedule", "camera", "trigger", "next run", "plan"])]
    library = _dict(data.get("library"))
    if library:
        lines += ["", _library_line(library)]
        lines += _goal_lines(library)
    return "\n".join(lines)


def _goal_lines(library: dict[str, Any]) -> list[str]:
    """Per library goal: what the library lacks and when it is filled (text from the daemon:
    escaped and capped)."""
    out = []
    for g in library.get("goals") or []:
        if not isinstance(g, dict):
            continue
        lacking = [x for x in g.get("lacking") or [] if isinstance(x, dict)]
        head = f"goal {shown(g.get('schedule'), 64)} ({shown(g.get('plan'), 64)}): "
        if not lacking:
            out.append(head + ("complete" if g.get("complete") else
                               shown(g.get("fills") or "nothing known yet", 120)))
            continue
        out.append(head + f"lacks {len(lacking)} cell(s), filled "
                   + shown(g.get("fills") or "-", 120))
        for x in lacking[:10]:
            out.append(f"  {shown(x.get('key'), 80)}: {shown(x.get('reason'), 120)}")
    return out


def _daemon_line(daemon: dict[str, Any], url: str) -> str:
    parts = [f"calibd {daemon.get('version', '?')} at {url}"]
    facts = []
    if daemon.get("pid") is not None:
        facts.append(f"pid {daemon['pid']}")
    started = _parse_time(daemon.get("started_utc"))
    now = _parse_time(daemon.get("now_utc"))
    if started and now:
        facts.append(f"up {_duration((now - started).total_seconds())}")
    if daemon.get("healthy") is False:
        facts.append("UNHEALTHY")
    if daemon.get("safe") is not None:
        facts.append("weather safe" if daemon["safe"] else "weather unsafe")
    return parts[0] + (f" ({', '.join(facts)})" if facts else "")


def _camera_row(name: str, cam: dict[str, Any], now_utc: Any) -> tuple[list[str], list[str]]:
    run = _dict(cam.get("run")) or cam  # the sequencer's snapshot, or flat keys
    plan = run.get("plan") or cam.get("plan")
    state = str(cam.get("state") or "?")
    phase = run.get("phase")
    if phase and state == "running" and phase != "exposing":
        state = f"running ({phase})"
    frames = "-"
    if run.get("frames_total"):
        frames = f"{run.get('frames_done', 0)}/{run['frames_total']}"
    cell = str(run.get("cell") or "-")
    if run.get("cell") and run.get("cell_total"):
        cell += f" ({run.get('cell_done', 0)}/{run['cell_total']})"
    row = [name, state, Path(str(plan)).stem if plan else "-",
           str(run.get("run_id")) if run.get("run_id") is not None else "-", cell, frames,
           _cooler(run), _eta(run.get("eta_s"), now_utc)]
    notes = []
    if cam.get("reason"):
        notes.append(f"  {name}: paused: {cam['reason']} (calibd control resume {name})")
    elif run.get("message") and run is not cam:
        notes.append(f"  {name}: {run['message']}")
    queue = cam.get("queue") or []
    if queue:
        notes.append(f"  {name}: {len(queue)} queued run(s)")
    last = _dict(cam.get("last"))
    if last.get("ok") is False and last.get("message"):
        notes.append(f"  {name}: last run: {last['message']}")
    return row, notes


def _cooler(run: dict[str, Any]) -> str:
    cooler = _dict(run.get("cooler")) or run
    temp, setpoint = cooler.get("temperature_c"), cooler.get("setpoint_c")
    power = cooler.get("power_pct")
    if temp is None:
        return "-"
    text = f"{float(temp):.1f} °C"
    if setpoint is not None:
        text += f" (→ {float(setpoint):g})"
    if power is not None:
        text += f" {float(power):.0f} %"
    return text


def _eta(eta_s: Any, now_utc: Any) -> str:
    if not isinstance(eta_s, int | float) or not 0 <= eta_s < 10 * 365 * 86400:
        return "-"
    text = _duration(float(eta_s))
    now = _parse_time(now_utc)
    if now is not None:
        text += f" ({(now + timedelta(seconds=float(eta_s))).strftime('%H:%M')} UTC)"
    return text


def _library_line(library: dict[str, Any]) -> str:
    text = f"library {library.get('root', '?')}"
    if library.get("error"):
        return f"{text}: {library['error']}"
    facts = []
    if isinstance(library.get("frames"), int):
        facts.append(f"{library['frames']:,} frames")
    if isinstance(library.get("bytes"), int | float):
        facts.append(_bytes(float(library["bytes"])))
    runs = [r for r in library.get("runs") or [] if isinstance(r, dict)]
    if runs:
        planned = sum(int(r.get("planned") or 0) for r in runs)
        done = sum(int(r.get("done") or 0) for r in runs)
        complete = sum(1 for r in runs if r.get("state") == "complete")
        facts.append(f"{complete}/{len(runs)} runs complete, {done:,}/{planned:,} planned "
                     "frames")
    return text + (f": {', '.join(facts)}" if facts else "")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _when(value: Any) -> str:
    when = _parse_time(value)
    if when is None:
        return "-" if value is None else str(value)
    return when.strftime("%Y-%m-%d %H:%M %Z").strip()


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
