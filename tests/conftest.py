"""Fixtures only (helpers live in tests/support.py): a simulator configuration, and the device
servers the whole session shares (one indiserver with its simulators, one alpaca-simulators, one
of our Alpaca servers), each started on first use and stopped at the end of the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alpaca_servers import OUR_SCALE
from tests.alpaca_servers import AlpacaSimServer
from tests.alpaca_servers import OurAlpacaServer
from tests.alpaca_servers import require_alpaca
from tests.indi_server import INDI_POLL_MS
from tests.indi_server import MOUNT_SIMULATORS
from tests.indi_server import IndiTestServer
from tests.indi_server import running_indi_server
from tests.support import write_config


@pytest.fixture
def sim_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "calibd.yaml")


@pytest.fixture(scope="session")
def indi_server() -> Iterator[IndiTestServer]:
    """indiserver with the CCD, wheel, light panel and weather simulators (skips, or fails
    under ``CALIBD_REQUIRE=indi``, when INDI is missing). Tests that kill it start their own."""
    with running_indi_server(polling_ms=INDI_POLL_MS) as srv:
        yield srv


@pytest.fixture(scope="session")
def indi_mount_server() -> Iterator[IndiTestServer]:
    """indiserver with the telescope and dome simulators (skips, or fails under
    ``CALIBD_REQUIRE=indi``, when INDI is missing)."""
    with running_indi_server(drivers=MOUNT_SIMULATORS) as srv:
        yield srv


@pytest.fixture(scope="session")
def alpaca_simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlpacaSimServer]:
    """The third-party alpaca-simulators server (skips, or fails under
    ``CALIBD_REQUIRE=alpaca``, when it or alpyca is missing). Tests that kill it start their
    own."""
    require_alpaca()
    server = AlpacaSimServer(tmp_path_factory.mktemp("alpaca-sim"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def our_alpaca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OurAlpacaServer]:
    """Our Alpaca server process (``serve``, clock OUR_SCALE x real time, UDP discovery on a
    port of its own); must stop cleanly on SIGTERM. Tests that kill it start their own."""
    require_alpaca(server=False)
    proc = OurAlpacaServer(tmp_path_factory.mktemp("alpaca-server") / "server.log",
                           scale=OUR_SCALE)
    proc.start()
    try:
        yield proc
    finally:
        code = proc.stop()
    assert code == 0, f"SIGTERM did not stop the server cleanly ({code}):\n{proc.log()}"
