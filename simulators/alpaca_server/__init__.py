"""An ASCOM Alpaca server for the simulated devices: camera, flat panel (CoverCalibrator), filter
wheel, safety monitor and ObservingConditions (cloud cover), with the management API and UDP
discovery, so the whole pipeline — and any other Alpaca client — can run over the real protocol.

:func:`serve` runs it until stopped (``calibd sim serve --alpaca``); :class:`SimAlpacaServer` runs
it inside another program (tests). Importing this package starts nothing. The server has no
authentication: keep it on 127.0.0.1 (the default) unless the network is trusted.
"""

from calibd.simulators.alpaca_server.discovery import DISCOVERY_PORT
from calibd.simulators.alpaca_server.server import DEFAULT_PORT
from calibd.simulators.alpaca_server.server import SimAlpacaServer
from calibd.simulators.alpaca_server.server import serve

__all__ = ["DEFAULT_PORT", "DISCOVERY_PORT", "SimAlpacaServer", "serve"]
