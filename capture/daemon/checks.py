"""Start-up checks of the daemon, shared by ``calibd daemon`` and ``calibd daemon --check``.

Everything that would stop the service at start is found here first and reported as a located
configuration problem (exit 2, which systemd does not restart): the API token file, the state
folder and the library root. :func:`device_problems` (``--check`` without ``--offline``) also
connects each configured device and resolves every scheduled plan against its camera, through
the same :func:`capture.runner.prepare` that a run uses.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from pathlib import Path

from calibd.capture.config import Config
from calibd.capture.errors import InputError
from calibd.capture.errors import Problem
from calibd.capture.yamlsrc import KeyPath
from calibd.capture.yamlsrc import Located
from calibd.drivers.clock import Clock
from calibd.drivers.contracts import Camera
from calibd.drivers.contracts import FilterWheel
from calibd.drivers.contracts import FlatPanel
from calibd.drivers.errors import DeviceError

log = logging.getLogger(__name__)


def startup_problems(config: Config, located: Located) -> list[Problem]:
    """What would keep the daemon from starting, located in the configuration. Creates no
    folder; writes and removes one probe file in each existing folder it must write to."""
    problems: list[Problem] = []
    problems += _api_problems(config, located)
    problems += _folder_problems(config.daemon.state_dir, located, ("daemon", "state_dir"),
                                 "the state folder")
    if config.library.root is not None:
        problems += _folder_problems(config.library.root, located, ("library", "root"),
                                     "the library root")
    plans = config.daemon.plans_dir
    if plans is not None:
        folder = plans if plans.is_absolute() or located.file is None \
            else located.file.parent / plans
        if not folder.is_dir():
            problems.append(located.problem(("daemon", "plans_dir"),
                                            f"the plans folder {folder} is not a folder"))
    return problems


def _api_problems(config: Config, located: Located) -> list[Problem]:
    from calibd.capture.daemon.api import check_token
    from calibd.capture.daemon.api import read_token_file

    api = config.daemon.api
    if not api.enabled:
        return []
    out: list[Problem] = []
    if api.token is not None:
        try:
            check_token(api.token)
        except ValueError as err:
            out.append(located.problem(("daemon", "api", "token"), str(err)))
    elif api.token_file is not None:
        try:
            read_token_file(api.token_file)
        except (OSError, ValueError) as err:
            out.append(located.problem(("daemon", "api", "token_file"),
                                       f"cannot use the token file {api.token_file}: {err}"))
    try:
        socket.getaddrinfo(api.host.strip("[]") or None, api.port, type=socket.SOCK_STREAM,
                           flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as err:
        out.append(located.problem(("daemon", "api", "host"),
                                   f"cannot listen on {api.host!r}: {err}"))
    return out


def _folder_problems(path: Path, located: Located, key: KeyPath, what: str) -> list[Problem]:
    """``path`` must be a writable folder, or creatable under the nearest existing one."""
    def problem(message: str) -> list[Problem]:
        return [located.problem(key, f"{what} {path}: {message}")]

    try:
        existing = path
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            if existing == path:
                return problem("is a file, not a folder")
            return problem(f"cannot be created: {existing} is a file")
    except OSError as err:  # a folder on the way that may not be searched
        return problem(f"cannot be reached ({err.strerror or err})")
    if existing != path:
        if not os.access(existing, os.W_OK | os.X_OK):
            return problem(f"cannot be created: {existing} is not writable")
        return []
    try:
        fd, probe = tempfile.mkstemp(prefix=".calibd-probe-", dir=path)
    except OSError as err:
        return problem(f"is not writable ({err.strerror or err})")
    os.close(fd)
    os.unlink(probe)
    return []


def device_problems(config: Config, located: Located, plans: dict[str, list[Path]],
                    clock: Clock) -> list[Problem]:
    """Connect every configured camera (with its wheel and panel) and the safety monitor, and
    resolve each camera's scheduled ``plans`` against it. Blocks while connecting (each driver
    bounds its own wait). Device problems are located at the device's configuration key; plan
    problems at the plan file's line and key."""
    from calibd.capture.devices import make_safety
    from calibd.capture.devices import make_setup
    from calibd.capture.runner import prepare

    problems: list[Problem] = []
    for name, cam in config.cameras.items():
        try:
            setup = make_setup(name, config, clock)
        except DeviceError as err:
            problems.append(located.problem(("cameras", name, "driver"), str(err)))
            continue
        parts: list[tuple[KeyPath, Camera | FilterWheel | FlatPanel]] = [
            (("cameras", name), setup.camera)]
        if setup.wheel is not None:
            parts.append((("filter_wheels", str(cam.filter_wheel)), setup.wheel))
        if setup.panel is not None:
            parts.append((("flat_panels", str(cam.flat_panel)), setup.panel))
        connected = True
        for key, device in parts:
            try:
                device.connect()
            except DeviceError as err:
                problems.append(located.problem(key, f"cannot connect: {err}"))
                connected = False
        setup.disconnect()
        if not connected:
            continue
        for plan in plans.get(name, []):
            log.info("checking %s against %s", plan, name)
            prepared = None
            try:
                prepared = prepare(plan, config, located, name, clock=clock)
            except InputError as err:
                problems += err.problems
            except DeviceError as err:
                problems.append(located.problem(("cameras", name),
                                                f"{plan}: cannot connect: {err}"))
            finally:
                if prepared is not None:
                    prepared.setup.disconnect()
    if config.safety is not None:
        try:
            monitor = make_safety(config.safety, clock)
            monitor.connect()
            monitor.is_safe()
            monitor.disconnect()
        except DeviceError as err:
            problems.append(located.problem(("safety",), f"cannot use the safety monitor: "
                                                         f"{err}"))
    return problems
