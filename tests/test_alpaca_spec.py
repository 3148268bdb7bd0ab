"""Our Alpaca server against the protocol rules of the ASCOM Alpaca specification, over raw HTTP
and UDP to the session's server process, one test (group) per rule.

Sources checked: the ASCOM Alpaca API Reference (version 10, ascom-standards.org
"AlpacaDeveloper/ASCOMAlpacaAPIReference"): device API contract (URL form, lower-case paths,
GET parameters in the query string, PUT parameters form-encoded in the body), HTTP status codes
(400 with a plain-text message for a request the server cannot process, 200 with ErrorNumber for
a device-level error), ClientID/ClientTransactionID as unsigned 32-bit integers, Int32 parameters,
the setup pages and discovery (socket shared via SO_REUSEPORT since reference v12). ConformU's
"Check Alpaca Protocol" (Conform Universal 4.x protocol log): wrongly-cased or bad PUT parameters
and wrong HTTP methods must give HTTP 400, also for members the device does not implement. The
ASCOM Omni-Simulators behave the same way (a wrongly cased PUT form key is HTTP 400, as reported
against N.I.N.A., issue 1252 on its tracker): GET query parameter names are case-insensitive, PUT
form parameter names are case-sensitive.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.alpaca_servers import HOST
from tests.alpaca_servers import OurAlpacaServer
from tests.alpaca_servers import call
from tests.alpaca_servers import request

pytestmark = pytest.mark.alpaca

_DEVICES = ("camera", "covercalibrator", "dome", "filterwheel", "observingconditions",
            "safetymonitor", "telescope")


@pytest.fixture(scope="module")
def port(our_alpaca: OurAlpacaServer) -> int:
    return our_alpaca.port


@pytest.fixture
def connected_camera(port: int) -> Iterator[None]:
    """The camera connected for one test, left as it was found."""
    was = call(port, "GET", "camera/0/connected")["Value"]
    call(port, "PUT", "camera/0/connected", Connected="true")
    try:
        yield
    finally:
        call(port, "PUT", "camera/0/connected", Connected=str(was).lower())


def bad_request(port: int, method: str, path: str, params: dict[str, str] | None = None
                ) -> bytes:
    """Assert HTTP 400 with a plain-text message (Reference: "400 Bad Request" answers carry
    the reason as text, not the JSON envelope); returns the message."""
    status, content_type, body = request(port, method, path, params)
    assert (status, content_type.split(";")[0]) == (400, "text/plain"), (path, status, body)
    assert body and not body.startswith(b"{")
    return body


@pytest.mark.parametrize("path", ["/setup", *(f"/setup/v1/{d}/0/setup" for d in _DEVICES)])
def test_rule1_setup_pages_exist(port: int, path: str) -> None:
    """Reference, setup pages: ``/setup`` and ``/setup/v1/{type}/{n}/setup`` must answer an
    HTML page even when the device has nothing to configure."""
    status, content_type, body = request(port, "GET", path)
    assert (status, content_type.split(";")[0]) == (200, "text/html"), body
    assert body.startswith(b"<!DOCTYPE html>") and b"</html>" in body
    if path == "/setup":
        assert all(f"/setup/v1/{d}/0/setup".encode() in body for d in _DEVICES)
    bad_request(port, "GET", "/setup/v1/camera/7/setup")  # no such device


def test_rule2_parameters_are_checked_before_the_connection(port: int) -> None:
    """ASCOM decision order: a malformed request is HTTP 400 before the device is asked, so a
    disconnected device answers 400 (not 200 + NotConnected 0x407) to a missing or bad
    parameter, and NotConnected only to a well-formed call."""
    was = call(port, "GET", "observingconditions/0/connected")["Value"]
    call(port, "PUT", "observingconditions/0/connected", Connected="false")
    try:
        path = "/api/v1/observingconditions/0/averageperiod"
        assert b"AveragePeriod" in bad_request(port, "PUT", path, {})
        bad_request(port, "PUT", path, {"AveragePeriod": "soon"})
        bad_request(port, "GET", "/api/v1/observingconditions/0/sensordescription")
        assert call(port, "PUT", "observingconditions/0/averageperiod", AveragePeriod="0")[
            "ErrorNumber"] == 0x407
    finally:
        call(port, "PUT", "observingconditions/0/connected", Connected=str(was).lower())


@pytest.mark.parametrize(("method", "member", "params"), [
    ("PUT", "gains", {}),  # read-only property
    ("GET", "pulseguide", {}),  # method
    ("PUT", "fastreadout", {"fastreadout": "true"}),  # PUT form names are case-sensitive
    ("PUT", "fastreadout", {"FastReadout": "maybe"}),
    ("PUT", "pulseguide", {"Direction": "0", "Duration": "long"}),
    ("PUT", "subexposureduration", {}),
    ("PUT", "commandblind", {"Command": "x"}),  # Raw missing
])
def test_rule3_unimplemented_members_are_validated_too(
    port: int, method: str, member: str, params: dict[str, str]
) -> None:
    """ConformU: wrong HTTP method and wrongly cased or invalid parameters are HTTP 400 whether
    or not the member is implemented; only a well-formed call gets NotImplemented (0x400)."""
    bad_request(port, method, f"/api/v1/camera/0/{member}", params)
    assert call(port, "PUT", "camera/0/fastreadout", FastReadout="true")["ErrorNumber"] == 0x400
    assert call(port, "PUT", "camera/0/pulseguide", Direction="0", Duration="10")[
        "ErrorNumber"] == 0x400


@pytest.mark.usefixtures("connected_camera")
def test_rule4_action_needs_parameters(port: int) -> None:
    """Reference, Action(Action, Parameters): both form parameters are required (Parameters may
    be empty); a missing or wrongly cased one is HTTP 400."""
    path = "/api/v1/safetymonitor/0/action"
    assert b"Parameters" in bad_request(port, "PUT", path, {"Action": "SetCloudy"})
    bad_request(port, "PUT", path, {"Action": "SetCloudy", "parameters": "false"})
    assert call(port, "PUT", "camera/0/action", Action="Fly", Parameters="")[
        "ErrorNumber"] == 0x40C


@pytest.mark.usefixtures("connected_camera")
def test_rule5_integers_are_int32(port: int) -> None:
    """Reference: Int32 parameters outside -2**31..2**31-1 cannot be parsed, HTTP 400, and the
    property keeps its value; ClientTransactionID is a uint32 (2**32 is HTTP 400)."""
    before = call(port, "GET", "camera/0/numx")["Value"]
    for value in ("2147483648", "-2147483649", "9" * 40):
        bad_request(port, "PUT", "/api/v1/camera/0/numx", {"NumX": value})
    assert call(port, "GET", "camera/0/numx")["Value"] == before
    try:
        assert call(port, "PUT", "camera/0/numx", NumX="2147483647")["ErrorNumber"] == 0
        assert call(port, "GET", "camera/0/numx")["Value"] == 2147483647
    finally:
        call(port, "PUT", "camera/0/numx", NumX=str(before))
    bad_request(port, "GET", "/api/v1/camera/0/name", {"ClientTransactionID": str(2**32)})


@pytest.mark.parametrize("path", ["/apii/v1/camera/0/name", "/api/v2/camera/0/name",
                                  "/alpaca/v1/camera/0/name"])
def test_rule6_wrong_api_root_is_bad_request(port: int, path: str) -> None:
    """Reference, HTTP status codes: a URL that is not a valid Alpaca path is HTTP 400 (not
    404)."""
    bad_request(port, "GET", path)


def test_rule7_discovery_port_can_be_shared(our_alpaca: OurAlpacaServer) -> None:
    """Reference v12+, discovery: responders set SO_REUSEPORT so other Alpaca programs on the
    host can bind the discovery port too; the server keeps answering afterwards."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind((HOST, our_alpaca.discovery_port))  # EADDRINUSE unless the server shares
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(b"alpacadiscovery1", (HOST, our_alpaca.discovery_port))
        reply, _ = sock.recvfrom(1024)
    assert json.loads(reply) == {"AlpacaPort": our_alpaca.port}
