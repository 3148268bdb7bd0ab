"""Hostile and broken configurations and plans: each is refused with exit code 2 and a message
that names the file (and, where the problem has one, the line and key), within 2 s and 100 MB,
without a traceback and without echoing control characters.

Data-driven: :data:`PLAN_CASES` go through ``calibd plan check FILE``, :data:`CONFIG_CASES`
through ``calibd daemon --config FILE --check --offline``, in-process through the CLI's ``main``
(time measured, memory as tracemalloc's peak). :data:`SUBPROCESS_CASES` are the ones that hang
or exhaust memory when they go wrong (FIFO, ``/dev/zero``, alias bombs): a real process with a
timeout, its own peak RSS from ``wait4``. The online ``--check`` (devices contacted, plans
resolved against them) is at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support import REPO
from tests.support import run_cli
from tests.support import write_config

MAX_SECONDS = 2.0
MAX_BYTES = 100 * 1024 * 1024

PLAN = """\
name: t
defaults: {offset: 50}
sets:
  - kind: bias
    gains: [100]
    setpoints_c: [0]
    count: 2
"""

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
sets: [*i]
"""


@dataclass(frozen=True)
class Case:
    """``text`` (or ``make(tmp_path)`` returning the file to check) must fail with a message
    containing ``where`` (``file:line: key`` after the file name) and ``says``."""

    id: str
    text: str | bytes = ""
    where: str = ""  # e.g. ":3: sets[0].count:" (after the file name); "" = the file only
    says: str = ""
    make: Callable[[Path], Path] | None = None
    file: str = ""  # the file the message names, when not the one checked


def _plan(**replace: str) -> str:
    text = PLAN
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


PLAN_CASES = [
    Case("nul", _plan(**{"name: t": "name: t\x00"}), ":1: name:", "U+0000"),
    Case("escape-sequence", _plan(**{"name: t": "name: \x1b[2J\x1b[31mowned"}), ":1: name:",
         "U+001B"),
    Case("c1-control", _plan(**{"name: t": "name: t\x9b31m"}), ":1: name:", "U+009B"),
    Case("delete", _plan(**{"count: 2": "count: 2\x7f"}), ":7: count:", "U+007F"),
    Case("bell-in-key", "na\x07me: t\n", ":1:", "U+0007"),
    Case("recursive-alias", "a: &a [*a]\n" + PLAN, ":1: a:", "anchors"),
    Case("billion-laughs", BOMB, ":1: a:", "anchors"),
    Case("alias-merge", "base: &b {offset: 50}\n" + _plan(**{"defaults: {offset: 50}":
                                                               "defaults: {<<: *b}"}),
         ":1: base:", "anchors"),
    Case("alias-only", _plan(**{"gains: [100]": "gains: *g"}), ":5: gains:", "aliases"),
    Case("deep-lists", "sets: " + "[" * 5000 + "]" * 5000 + "\n", ":1: sets:", "nested"),
    Case("deep-maps", "sets:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)) +
         "  " * 60 + "v: 1\n", ":", "nested"),
    Case("huge-integer", _plan(**{"count: 2": "count: " + "9" * 5000}), ":7: sets[0].count:",
         "cannot read this value"),
    Case("bad-timestamp", _plan(**{"name: t": "name: !!timestamp 2026-13-45"}), ":1: name:",
         "cannot read this value"),
    Case("python-tag", _plan(**{"name: t": "name: !!python/object/apply:os.system [id]"}),
         ":1: name:", "tag"),
    Case("python-scalar-tag", _plan(**{"name: t": "name: !!python/name:os.system ''"}),
         ":1: name:", "constructor"),
    Case("duplicate-key", _plan(**{"count: 2": "count: 2\n    count: 3"}),
         ":8: sets[0].count:", "duplicate"),
    Case("long-unknown-key", _plan(**{"count: 2": "count: 2\n    " + "x" * 300 + ": 1"}),
         ":8: sets[0].", "unknown key"),
    Case("too-long-key", _plan(**{"count: 2": "count: 2\n    " + "x" * 5000 + ": 1"}),
         ":8: xxxx", "syntax error"),
    Case("tab-indent", _plan(**{"    count: 2": "\tcount: 2"}), ":7:", "syntax error"),
    Case("unclosed-bracket", _plan(**{"gains: [100]": "gains: [100"}), ":5: gains:",
         "syntax error"),
    Case("list-key", "? [1, 2]\n: 3\n" + PLAN, ":1:", "keys must be text"),
    Case("not-a-mapping", "- kind: bias\n- kind: dark\n", ":1:", "mapping"),
    Case("empty", "", ":1:", "empty"),
    Case("only-comments", "# nothing\n# here\n", ":1:", "empty"),
    Case("two-documents", PLAN + "---\n" + PLAN, ":1: name:", "another document"),
    Case("negative-count", _plan(**{"count: 2": "count: -5"}), ":7: sets[0].count:", ""),
    Case("absurd-count", _plan(**{"count: 2": "count: 1000000000000"}), ":7: sets[0].count:",
         ""),
    Case("nan-setpoint", _plan(**{"setpoints_c: [0]": "setpoints_c: [.nan]"}),
         ":6: sets[0].setpoints_c", ""),
    Case("huge-setpoint", _plan(**{"setpoints_c: [0]": "setpoints_c: [1e308]"}),
         ":6: sets[0].setpoints_c", ""),
    Case("unknown-kind", _plan(**{"kind: bias": "kind: shadow"}), ":4: sets[0].kind:",
         "unknown kind"),
    Case("binary-name", _plan(**{"name: t": "name: !!binary aGVsbG8="}), ":1: name:", ""),
    Case("no-sets", _plan(**{"sets:": "sets: []\nx:"}).split("\n  -")[0] + "\n", ":", ""),
    Case("not-utf8", b"name: \xff\xfe\n", "", "not UTF-8"),
    Case("too-large", "# " + "x" * (2 * 1024 * 1024) + "\n" + PLAN, "", "larger than"),
    Case("a-folder", make=lambda tmp: _mkdir(tmp / "plan.yaml"), says="folder"),
    Case("missing", make=lambda tmp: tmp / "nope.yaml", says="no such file"),
]


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _token(tmp: Path, text: str) -> Path:
    path = tmp / "token"
    path.write_text(text, encoding="utf-8")
    return path


def _config(tmp: Path, *, daemon: dict[str, object] | None = None,
            library: object = None, schedules: list[dict[str, object]] | None = None,
            extra: str = "") -> Path:
    """A daemon configuration whose folders all exist and are writable, changed by the case."""
    (tmp / "state").mkdir(exist_ok=True)
    (tmp / "lib").mkdir(exist_ok=True)
    data: dict[str, object] = {
        "library": {"root": str(library if library is not None else tmp / "lib")},
        "clock": {"kind": "simulated", "scale": 1000},
        "cameras": {"sim": {"driver": "simulator", "profile": "small", "offset": 50}},
        "daemon": {"state_dir": str(tmp / "state"), "timezone": "UTC",
                   "api": {"host": "127.0.0.1", "port": 0}, **(daemon or {})},
        "schedules": schedules or [],
    }
    path = tmp / "calibd.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False) + extra, encoding="utf-8")
    return path


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def _api(**kw: object) -> dict[str, object]:
    return {"api": {"host": "127.0.0.1", "port": 0, **kw}}


def _schedule_plan(tmp: Path, text: str) -> Path:
    (tmp / "p.yaml").write_text(text, encoding="utf-8")
    return _config(tmp, schedules=[{"name": "s", "trigger": "on_demand", "plan": "p.yaml"}])


def _indi_camera(tmp: Path) -> Path:
    """A real INDI camera on the simulated clock (only simulated and Alpaca cameras may be: our
    Alpaca server can share that clock, an INDI server cannot)."""
    path = _config(tmp)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["cameras"] = {"main": {"driver": "indi", "device": "CCD Simulator"}}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _file(path: Path) -> Path:
    path.write_text("not a folder\n", encoding="utf-8")
    return path


CONFIG_CASES = [
    Case("cfg-nul", make=lambda t: _config(t, extra="masters: {auto: true}\x00\n"),
         where=":", says="U+0000"),
    Case("cfg-bomb", make=lambda t: _config(t, extra=BOMB.replace("sets:", "zzz:")),
         where=":", says="anchors"),
    Case("cfg-unknown-key", make=lambda t: _config(t, extra="camras: {}\n"), where=":",
         says="unknown key 'camras'"),
    Case("cfg-sim-clock-indi", make=_indi_camera, where=":", says="a simulated clock only works"),
    Case("cfg-poll-zero", make=lambda t: _config(t, daemon={"weather_poll_s": 0}),
         where=": daemon.weather_poll_s:", says=""),
    Case("cfg-bad-timezone", make=lambda t: _config(t, daemon={"timezone": "Mars/Olympus"}),
         where=": daemon.timezone:", says="unknown time zone"),
    Case("token-missing", make=lambda t: _config(t, daemon=_api(token_file=str(t / "nope"))),
         where=": daemon.api.token_file:", says="no such file"),
    Case("token-empty", make=lambda t: _config(t, daemon=_api(
        token_file=str(_token(t, "\n")))), where=": daemon.api.token_file:", says="empty"),
    Case("token-two-words", make=lambda t: _config(t, daemon=_api(
        token_file=str(_token(t, "two words-0123456789\n")))),
        where=": daemon.api.token_file:", says="one word"),
    Case("token-a-folder", make=lambda t: _config(t, daemon=_api(
        token_file=str(_mkdir(t / "tokdir")))), where=": daemon.api.token_file:",
        says="folder"),
    Case("token-inline-spaces", make=lambda t: _config(t, daemon=_api(
        token="a token with spaces in it")), where=": daemon.api.token:", says="one word"),
    Case("api-host-bogus", make=lambda t: _config(t, daemon=_api(
        host="no such host!", token="t0ken-for-the-tests-0123456789")),
         where=": daemon.api.host:", says="cannot listen"),
    Case("state-under-a-file", make=lambda t: _config(t, daemon={
        "state_dir": str(_file(t / "f") / "state")}), where=": daemon.state_dir:",
        says="is a file"),
    Case("state-is-a-file", make=lambda t: _config(t, daemon={
        "state_dir": str(_file(t / "f"))}), where=": daemon.state_dir:", says="not a folder"),
    Case("library-is-a-file", make=lambda t: _config(t, library=_file(t / "libfile")),
         where=": library.root:", says="not a folder"),
    Case("library-under-a-file", make=lambda t: _config(t, library=_file(t / "lf") / "lib"),
         where=": library.root:", says="is a file"),
    Case("plans-dir-a-file", make=lambda t: _config(t, daemon={
        "plans_dir": str(_file(t / "pf"))}), where=": daemon.plans_dir:", says="folder"),
    Case("schedule-plan-nul", make=lambda t: _schedule_plan(t, PLAN.replace("t\n", "\x00\n", 1)),
         where=":1: name:", says="U+0000", file="p.yaml"),
    Case("schedule-plan-bomb", make=lambda t: _schedule_plan(t, BOMB), where=":1: a:",
         says="anchors", file="p.yaml"),
    Case("schedule-plan-missing", make=lambda t: _config(t, schedules=[
        {"name": "s", "trigger": "on_demand", "plan": "gone.yaml"}]), where="",
        says="no such file", file="gone.yaml"),
    Case("clock-start-year-1", make=lambda t: _edit(_config(t), "kind: simulated",
                                                     "kind: simulated\n  start: 0001-01-01"),
         where=": clock.start:", says="before 1970"),
    Case("library-root-nul", make=lambda t: _config(t, library="/tmp/a\x00b"),
         where=": library.root:", says="control character"),
    Case("library-root-escape", make=lambda t: _config(t, library="/tmp/a\x1b[31mb"),
         where=": library.root:", says="control character"),
    Case("library-root-long-name", make=lambda t: _config(t, library="/tmp/" + "a" * 5000),
         where=": library.root:", says="longer than"),
    Case("api-host-escape", make=lambda t: _config(t, daemon=_api(
        host="\x1b[31mevil", token="t0ken-for-the-tests-0123456789")),
         where=": daemon.api.host:", says="cannot listen"),
    Case("schedule-unknown-camera", make=lambda t: _config(t, schedules=[
        {"name": "s", "trigger": "on_demand", "plan": "p.yaml", "camera": "nope"}]),
        where=": schedules[0].camera:", says="no camera named"),
]


def _check(path: Path, kind: str) -> list[str]:
    if kind == "plan":
        return ["plan", "check", str(path)]
    return ["daemon", "--config", str(path), "--check", "--offline"]


def _case_file(case: Case, tmp_path: Path) -> Path:
    if case.make is not None:
        return case.make(tmp_path)
    path = tmp_path / "plan.yaml"
    if isinstance(case.text, bytes):
        path.write_bytes(case.text)
    else:
        path.write_text(case.text, encoding="utf-8")
    return path


def _assert_refused(case: Case, path: Path, code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert not any(c in err for c in "\x00\x1b\x07\x7f\x9b"), repr(err)
    first = next(line for line in err.splitlines() if line.startswith("error: "))
    assert len(first) < 600, first
    named = case.file or path.name
    assert first.startswith("error: /"), first
    assert named in first.split(": ")[1], first
    assert case.where in first, first
    assert case.says in err, err


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Import what both commands import once, so that the measurements are of the input."""
    from calibd.capture.cli.main import main

    tmp = tmp_path_factory.mktemp("warm")
    (tmp / "p.yaml").write_text(PLAN, encoding="utf-8")
    main(["plan", "check", str(tmp / "p.yaml")])
    main(["daemon", "--config", str(_config(tmp)), "--check", "--offline"])


@pytest.mark.parametrize("kind,case", [("plan", c) for c in PLAN_CASES] +
                         [("config", c) for c in CONFIG_CASES],
                         ids=lambda v: v if isinstance(v, str) else v.id)
def test_refused_in_process(kind: str, case: Case, tmp_path: Path, warm: None,
                            capsys: pytest.CaptureFixture[str]) -> None:
    path = _case_file(case, tmp_path)
    tracemalloc.start()
    began = time.monotonic()
    try:
        result = run_cli(capsys, *_check(path, kind))
        elapsed = time.monotonic() - began
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _assert_refused(case, path, result.code, result.err)
    assert elapsed < MAX_SECONDS
    assert peak < MAX_BYTES


def _fifo(tmp: Path) -> Path:
    path = tmp / "fifo.yaml"
    os.mkfifo(path)
    return path


SUBPROCESS_CASES = [
    ("plan", Case("plan-fifo", make=_fifo, says="not a regular file")),
    ("plan", Case("plan-dev-zero", make=lambda t: Path("/dev/zero"), where="",
                  says="not a regular file")),
    ("plan", Case("plan-proc-environ", make=lambda t: Path("/proc/self/environ"),
                  where=":1:", says="U+0000")),
    ("plan", Case("plan-billion-laughs", BOMB, ":1: a:", "anchors")),
    ("config", Case("cfg-token-fifo", make=lambda t: _config(t, daemon=_api(
        token_file=str(_fifo(t)))), where=": daemon.api.token_file:",
        says="not a regular file")),
    ("config", Case("cfg-schedule-plan-fifo", make=lambda t: (
        _fifo(t), _config(t, schedules=[{"name": "s", "trigger": "on_demand",
                                         "plan": "fifo.yaml"}]))[1], says="not a regular file",
        file="fifo.yaml")),
]


@pytest.fixture(scope="module")
def baseline() -> tuple[float, int]:
    """Seconds and peak RSS of a process refusing a trivially broken plan (imports included)."""
    return _measured_baseline()


def _measured_baseline() -> tuple[float, int]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        path.write_text("name: [\n", encoding="utf-8")
        code, _, seconds, rss = _spawn(["plan", "check", str(path)], 60)
    assert code == 2
    return seconds, rss


def _spawn(args: list[str], timeout_s: float) -> tuple[int, str, float, int]:
    """Run ``calibd args``: exit code, stderr, wall seconds, the process's own peak RSS (bytes,
    from wait4). Kills it after ``timeout_s``."""
    err_path = Path(f"/tmp/calibd-hostile-{os.getpid()}-{time.monotonic_ns()}.err")
    with err_path.open("w+", encoding="utf-8") as err_file:
        began = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "calibd", *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=err_file)
        deadline = began + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise AssertionError(f"calibd {' '.join(args)} still running after "
                                     f"{timeout_s} s")
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - began
        err_file.seek(0)
        err = err_file.read()
    err_path.unlink()
    return proc.returncode, err, elapsed, usage.ru_maxrss * 1024


@pytest.mark.parametrize("kind,case", SUBPROCESS_CASES, ids=[c.id for _, c in SUBPROCESS_CASES])
def test_refused_by_a_real_process(kind: str, case: Case, tmp_path: Path,
                                   baseline: tuple[float, int]) -> None:
    path = _case_file(case, tmp_path)
    code, err, seconds, rss = _spawn(_check(path, kind), timeout_s=30)
    _assert_refused(case, path, code, err)
    base_s, base_rss = baseline
    assert seconds - base_s < MAX_SECONDS, (seconds, base_s)
    assert rss - base_rss < MAX_BYTES, (rss, base_rss)


# ----- --check with the devices: connect each one, resolve every scheduled plan against it -----

FLATS = """\
name: flats
defaults: {offset: 50}
sets:
  - kind: flat
    source: panel
    filters: [L, Ha]
    gains: [100]
    setpoints_c: [0]
    count: 2
    panel: {mode: exposure, brightness: 512}
"""


def test_check_resolves_scheduled_plans_against_the_devices(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The wheel holds L, R, G, B: a scheduled plan asking for Ha passes the offline check
    but not the full one, which names the plan file, line and key."""
    config = write_config(tmp_path / "c.yaml", flats=True)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["filter_wheels"]["wheel"]["filters"] = ["L", "R", "G", "B"]
    data["library"] = {"root": str(tmp_path / "lib")}
    data["daemon"] = {"state_dir": str(tmp_path / "state"), "timezone": "UTC",
                      "api": {"port": 0}}
    data["schedules"] = [{"name": "flats", "trigger": "on_demand", "plan": "flats.yaml"}]
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (tmp_path / "flats.yaml").write_text(FLATS, encoding="utf-8")
    offline = run_cli(capsys, "daemon", "--config", config, "--check", "--offline")
    assert offline.code == 0, offline.err
    full = run_cli(capsys, "daemon", "--config", config, "--check")
    assert full.code == 2
    assert f"{tmp_path / 'flats.yaml'}:6: sets[0].filters[1]: no filter named 'Ha'" in full.err
    assert "Traceback" not in full.err
    data["filter_wheels"]["wheel"]["filters"] = ["L", "Ha"]
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    fixed = run_cli(capsys, "daemon", "--config", config, "--check")
    assert fixed.code == 0, fixed.err
    assert "devices answered" in fixed.out


def test_check_connects_to_each_device(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt INDI device name on a real indiserver: exit 2 naming the camera's key."""
    from tests.indi_server import CCD
    from tests.indi_server import running_indi_server

    with running_indi_server(drivers=("indi_simulator_ccd",)) as srv:
        def config(device: str) -> Path:
            path = _config(tmp_path)
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            data["clock"] = {"kind": "real"}
            data["cameras"] = {"main": {"driver": "indi", "host": srv.host, "port": srv.port,
                                        "device": device, "connect_timeout_s": 3}}
            path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            return path

        wrong = run_cli(capsys, "daemon", "--config", config(CCD + "x"), "--check")
        assert wrong.code == 2, wrong.err
        line = next(i for i, text in enumerate(
            (tmp_path / "calibd.yaml").read_text().splitlines(), 1) if "main:" in text)
        assert f"calibd.yaml:{line}: cameras.main: cannot connect" in wrong.err
        assert "Traceback" not in wrong.err
        right = run_cli(capsys, "daemon", "--config", config(CCD), "--check")
        assert right.code == 0, right.err


@pytest.mark.parametrize("case", [
    Case("token-file-empty", make=lambda t: _config(t, daemon=_api(
        token_file=str(_token(t, "  \n")))), where=": daemon.api.token_file:", says="empty"),
    Case("library-a-file", make=lambda t: _config(t, library=_file(t / "libfile")),
         where=": library.root:", says="not a folder"),
    Case("state-under-a-file", make=lambda t: _config(t, daemon={
        "state_dir": str(_file(t / "f") / "state")}), where=": daemon.state_dir:",
        says="is a file"),
], ids=lambda c: c.id)
def test_the_daemon_refuses_to_start_with_exit_2(case: Case, tmp_path: Path) -> None:
    """Not only --check: the service itself stops with exit code 2 (which systemd does not
    restart, RestartPreventExitStatus=2) before it listens, without a traceback."""
    path = _case_file(case, tmp_path)
    code, err, _, _ = _spawn(["daemon", "--config", str(path)], timeout_s=60)
    _assert_refused(case, path, code, err)
    assert not (tmp_path / "state" / "api.port").exists()


def test_device_text_is_escaped_and_capped_in_reasons_and_logs() -> None:
    """Error text from a device server reaches the status and the log only through the one
    sanitising function."""
    from calibd.capture.daemon.worker import REASON_MAX_CHARS
    from calibd.capture.daemon.worker import describe_error
    from calibd.drivers.errors import DeviceUnavailable

    reason = describe_error(DeviceUnavailable("\x1b[2J\x1b]0;owned\x07gone" + "x" * 5000))
    assert "\x1b" not in reason and "\x07" not in reason
    assert reason.startswith("DeviceUnavailable: \\x1b[2J\\x1b]0;owned\\x07gone")
    assert len(reason) <= REASON_MAX_CHARS
