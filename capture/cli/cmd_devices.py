"""``calibd devices list`` and ``calibd devices discover``: what a server or bus offers."""

from __future__ import annotations

import argparse
from typing import Any

from calibd.capture.cli.common import command_group
from calibd.capture.cli.common import print_json
from calibd.capture.cli.common import table
from calibd.capture.devices import driver_module
from calibd.capture.errors import InputError
from calibd.capture.errors import Problem
from calibd.drivers.contracts import DeviceListing

NO_DEVICES = {
    "simulator": "",
    "indi": "no devices on this INDI server",
    "alpaca": "no devices on this Alpaca server",
    "zwo": "no ZWO cameras found",
}


def register(sub: Any) -> None:
    dsub = command_group(sub, "devices", "list or discover devices")
    lst = dsub.add_parser("list", help="devices a driver can see (an INDI or Alpaca server, "
                                       "ZWO cameras on USB, the simulator)")
    lst.add_argument("--driver", required=True, choices=("indi", "alpaca", "zwo", "simulator"))
    lst.add_argument("--host", help="server host (indi: localhost, alpaca: 127.0.0.1)")
    lst.add_argument("--port", type=int, help="server port (indi 7624, alpaca 11111)")
    lst.add_argument("--socket", metavar="PATH", help="indiserver's local socket")
    lst.add_argument("--sdk-path", metavar="FILE", help="libASICamera2.so to use (zwo)")
    lst.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=run_list)
    disc = dsub.add_parser("discover", help="find Alpaca servers by UDP discovery (sends only "
                                            "to the addresses or interface given)")
    disc.add_argument("--address", action="append", default=[], metavar="ADDR",
                      help="unicast or broadcast address to ask (repeatable)")
    disc.add_argument("--interface", metavar="IF", help="ask on this interface's broadcast")
    disc.add_argument("--port", type=int, default=32227, help="discovery port")
    disc.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS")
    disc.add_argument("--json", action="store_true")
    disc.set_defaults(handler=run_discover)


def _print(listing: list[DeviceListing], empty: str, as_json: bool) -> None:
    if as_json:
        print_json([d.__dict__ for d in listing])
        return
    if not listing:
        print(empty)
        return
    print(table([[d.kind, d.name, d.details] for d in listing], ["kind", "name", "details"]))


def run_list(args: argparse.Namespace) -> int:
    driver = args.driver
    module = driver_module(driver)
    if driver == "simulator":
        listing = module.list_devices()
    elif driver == "indi":
        listing = module.list_devices(args.host or "localhost", args.port or 7624,
                                      socket_path=args.socket, timeout_s=args.timeout)
    elif driver == "alpaca":
        listing = module.list_devices(args.host or "127.0.0.1", args.port or 11111,
                                      timeout_s=args.timeout)
    else:
        listing = module.list_devices(sdk_path=args.sdk_path, timeout_s=args.timeout)
    _print(list(listing), NO_DEVICES[driver], args.json)
    return 0


def run_discover(args: argparse.Namespace) -> int:
    module = driver_module("alpaca")
    try:
        servers = module.discover(args.address or None, args.interface, args.port,
                                  args.timeout)
    except ValueError as err:
        raise InputError([Problem(None, None, "--address/--interface", str(err))]) from None
    if args.json:
        print_json([{**s.__dict__, "devices": [d.__dict__ for d in s.devices]}
                    for s in servers])
        return 0
    if not servers:
        print("no Alpaca server answered")
    for s in servers:
        print(f"{s.host}:{s.port}  {s.server_name or '(no management API)'} "
              f"{s.manufacturer} {s.manufacturer_version}".rstrip())
        if s.error:
            print(f"  {s.error}")
        for d in s.devices:
            print(f"  {d.kind:12s} {d.name}  {d.details}")
    return 0
