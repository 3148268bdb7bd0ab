"""systemd/calibd.service: ``systemd-analyze verify`` accepts it, ``systemd-analyze security``
rates it 2.0 or lower ("OK"), and the hardening keeps what the daemon needs (USB cameras,
INDI/Alpaca over the LAN, notify, watchdog, the library and state directories).

``verify`` runs on a copy whose ExecStart= is this checkout's ``calibd`` console script, because
verify insists that the executable exists and /opt/calibd is not installed here. User=calibd is
kept: systemd-analyze verify (252) checks the user name's syntax but does not look the user up,
so the dedicated account need not exist on the test machine. ``security --offline=true`` rates
the unchanged file.

Skipped when systemd-analyze is missing; a failure when CALIBD_REQUIRE contains ``systemd``.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from calibd.capture.cli.main import EXIT_BAD_INPUT
from tests.support import REPO
from tests.support import skip_or_fail

UNIT = REPO / "systemd" / "calibd.service"
EXAMPLE = REPO / "systemd" / "calibd.yaml.example"
MAX_EXPOSURE = 2.0

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """Sections -> key -> every value given (in order); an empty assignment resets the list."""
    unit: Unit = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        values = unit[section][key.strip()]
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
            values.append("")
    return unit


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def _one(unit: Unit, key: str, section: str = "Service") -> str:
    values = unit[section].get(key)
    assert values, f"{key}= is not set in [{section}]"
    return values[-1]


def _words(unit: Unit, key: str, section: str = "Service") -> list[str]:
    return [w for v in unit[section].get(key, []) for w in v.split()]


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m)?", value)
    assert match, f"unexpected time span {value!r}"
    return float(match[1]) * (60 if match[2] in ("min", "m") else 1)


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        skip_or_fail("systemd", "systemd-analyze is not installed (Debian: apt-get install "
                                "systemd)")
    assert tool is not None
    return tool


def _calibd_script() -> Path:
    script = Path(sys.executable).parent / "calibd"
    if not script.exists():
        skip_or_fail("systemd", f"no calibd console script next to {sys.executable} "
                                "(pip install -e .)")
    return script


# -- systemd-analyze ---------------------------------------------------------------------------

def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    text = UNIT.read_text(encoding="utf-8")
    copy = tmp_path / "calibd.service"
    copy.write_text(text.replace("/opt/calibd/.venv/bin/calibd", str(_calibd_script())),
                    encoding="utf-8")
    result = subprocess.run([tool, "verify", "--man=no", str(copy)], capture_output=True,
                            text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    print(f"systemd-analyze verify (exit {result.returncode}):\n{output}")
    assert result.returncode == 0, output
    # verify exits 0 even for unknown keys and unparsable values: any line about our unit fails
    about_unit = [line for line in output.splitlines()
                  if str(copy) in line or "calibd.service" in line]
    assert about_unit == []


def test_systemd_analyze_security_exposure_is_ok() -> None:
    tool = _systemd_analyze()
    result = subprocess.run([tool, "security", "--offline=true", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    print(output)
    match = re.search(r"Overall exposure level for calibd\.service: (\d+(?:\.\d+)?) (\w+)",
                      output)
    assert match, f"no exposure level in:\n{output}"
    exposure, verdict = float(match[1]), match[2]
    assert exposure <= MAX_EXPOSURE, output
    assert verdict == "OK"
    # the same limit through systemd-analyze's own threshold (exposure x 10)
    limited = subprocess.run([tool, "security", "--offline=true", "--no-pager",
                              f"--threshold={round(MAX_EXPOSURE * 10)}", str(UNIT)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert limited.returncode == 0, limited.stdout + limited.stderr


# -- what the daemon needs from its unit -------------------------------------------------------

def test_service_type_notify_and_watchdog(unit: Unit) -> None:
    assert _one(unit, "Type") == "notify"
    assert _one(unit, "NotifyAccess") == "main"
    assert _seconds(_one(unit, "WatchdogSec")) >= 10
    assert _one(unit, "Restart") == "on-failure"
    assert _seconds(_one(unit, "RestartSec")) > 0
    assert str(EXIT_BAD_INPUT) in _words(unit, "RestartPreventExitStatus")
    assert _seconds(_one(unit, "TimeoutStopSec")) >= 30
    exec_start = _one(unit, "ExecStart").split()
    assert exec_start[0] == "/opt/calibd/.venv/bin/calibd"
    assert exec_start[1:] == ["daemon", "--config", "/etc/calibd/calibd.yaml"]
    assert re.fullmatch(r"\S*kill -HUP \$MAINPID", _one(unit, "ExecReload"))
    assert _one(unit, "WantedBy", "Install") == "multi-user.target"


def test_dedicated_user_and_read_only_system(unit: Unit) -> None:
    assert _one(unit, "User") == "calibd"
    assert _one(unit, "Group") == "calibd"
    assert _one(unit, "ProtectSystem") == "strict"
    assert _one(unit, "ProtectHome") == "yes"
    assert _one(unit, "PrivateTmp") == "yes"
    assert _one(unit, "NoNewPrivileges") == "yes"
    assert _one(unit, "CapabilityBoundingSet") == ""


def test_usb_cameras_stay_reachable(unit: Unit) -> None:
    assert _one(unit, "DevicePolicy") in ("closed", "strict")
    allowed = [v.split() for v in unit["Service"]["DeviceAllow"]]
    assert any(a[0] in ("char-usb_device", "char-189", "/dev/bus/usb") and "rw" in a[1:]
               for a in allowed), allowed
    # PrivateDevices=yes would hide /dev/bus/usb
    assert unit["Service"].get("PrivateDevices", ["no"])[-1] in ("no", "false")
    # libusb hot-plug events
    assert "AF_NETLINK" in _words(unit, "RestrictAddressFamilies")


def test_network_for_indi_alpaca_api_and_notify(unit: Unit) -> None:
    families = _words(unit, "RestrictAddressFamilies")
    assert not families[0].startswith("~")
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families)
    assert unit["Service"].get("PrivateNetwork", ["no"])[-1] in ("no", "false")
    if "any" in _words(unit, "IPAddressDeny"):
        allowed = _words(unit, "IPAddressAllow")
        assert {"localhost", "link-local", "multicast"} <= set(allowed)
        nets = [ipaddress.ip_network(a) for a in allowed if a[0].isdigit() or ":" in a]
        for needed in ("192.168.1.20", "10.0.0.5", "172.16.3.4", "255.255.255.255",
                       "fd00::5"):
            address = ipaddress.ip_address(needed)
            assert any(address in n for n in nets if n.version == address.version), needed


def test_numba_and_write_execute_memory_agree(unit: Unit) -> None:
    environment = _words(unit, "Environment")
    if unit["Service"].get("MemoryDenyWriteExecute", ["no"])[-1] in ("yes", "true"):
        assert "CALIBD_NO_NUMBA=1" in environment, \
            "MemoryDenyWriteExecute=yes breaks numba's JIT: set CALIBD_NO_NUMBA=1 too"
    cache = [e for e in environment if e.startswith("NUMBA_CACHE_DIR=")]
    assert cache and cache[0].startswith("NUMBA_CACHE_DIR=%C/")
    assert _one(unit, "CacheDirectory") == "calibd"


def test_library_and_state_are_writable(unit: Unit) -> None:
    from calibd.capture.config import load_config

    config, _ = load_config(EXAMPLE)
    state_dir = _one(unit, "StateDirectory")
    assert config.daemon.state_dir == Path("/var/lib") / state_dir
    assert _one(unit, "ConfigurationDirectory") == "calibd"
    writable = [Path(p.lstrip("-")) for p in _words(unit, "ReadWritePaths")]
    library = config.library.root
    assert library is not None
    assert any(library == w or w in library.parents for w in writable), (library, writable)
    assert str(library) in _words(unit, "RequiresMountsFor", "Unit")
    assert config.daemon.stop_timeout_s < _seconds(_one(unit, "TimeoutStopSec"))
