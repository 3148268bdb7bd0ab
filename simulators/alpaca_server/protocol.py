"""The Alpaca wire protocol, server side: error numbers, request parameters, the JSON envelope.

Rules followed (ASCOM Alpaca API reference, as ConformU checks them):

* GET parameters come in the query string and their *names* are case-insensitive; PUT parameters
  come form-encoded in the body and their names are case-sensitive. A required PUT parameter sent
  with other casing is therefore missing, which is an HTTP 400; a wrongly cased ``ClientID`` /
  ``ClientTransactionID`` is ignored (the transaction id then echoes as 0).
* A request the server cannot parse (unknown device or member, wrong HTTP method for the member,
  missing or unparsable parameter, an integer outside Int32, malformed ids) is answered with HTTP
  400 and a plain-text message, whether or not the member is implemented and whether or not the
  device is connected (:mod:`.members` checks it first). Everything the device itself refuses is
  HTTP 200 with a non-zero ``ErrorNumber`` and an ``ErrorMessage``.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable
from datetime import UTC
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import NotSupported
from calibd.drivers.errors import SettingRejected

_UINT32_MAX = 0xFFFFFFFF
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_MAX_DIGITS = 32  # longer integer texts are refused before int() (which caps at 4300 digits)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
_MAX_FIELDS = 64


class ErrorCode(enum.IntEnum):
    """ASCOM Alpaca error numbers used by this server."""

    OK = 0
    NOT_IMPLEMENTED = 0x400
    INVALID_VALUE = 0x401
    VALUE_NOT_SET = 0x402
    NOT_CONNECTED = 0x407
    INVALID_WHILE_PARKED = 0x408
    INVALID_OPERATION = 0x40B
    ACTION_NOT_IMPLEMENTED = 0x40C
    UNSPECIFIED = 0x500


class AlpacaError(Exception):
    """A device-level refusal: answered with HTTP 200, ``ErrorNumber`` and ``ErrorMessage``."""

    def __init__(self, number: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.number = number
        self.message = message


class BadRequest(Exception):
    """A request the server cannot parse or route: answered with HTTP 400 and the message as
    plain text."""


def not_implemented(message: str) -> AlpacaError:
    return AlpacaError(ErrorCode.NOT_IMPLEMENTED, message)


def invalid_value(message: str) -> AlpacaError:
    return AlpacaError(ErrorCode.INVALID_VALUE, message)


def invalid_operation(message: str) -> AlpacaError:
    return AlpacaError(ErrorCode.INVALID_OPERATION, message)


def value_not_set(message: str) -> AlpacaError:
    return AlpacaError(ErrorCode.VALUE_NOT_SET, message)


def alpaca_error_from(err: DeviceError) -> AlpacaError:
    """Map a :mod:`drivers.errors` exception raised by a simulated device to its Alpaca error,
    keeping the device's own message: SettingRejected -> InvalidValue (0x401),
    DeviceUnavailable -> NotConnected (0x407), NotSupported -> NotImplemented (0x400), anything
    else -> UnspecifiedError (0x500)."""
    message = str(err.args[0]) if err.args else str(err)
    if isinstance(err, SettingRejected):
        return AlpacaError(ErrorCode.INVALID_VALUE, message)
    if isinstance(err, DeviceUnavailable):
        return AlpacaError(ErrorCode.NOT_CONNECTED, message)
    if isinstance(err, NotSupported):
        return AlpacaError(ErrorCode.NOT_IMPLEMENTED, message)
    return AlpacaError(ErrorCode.UNSPECIFIED, message)


class Params:
    """The parameters of one request.

    ``case_sensitive`` is False for GET (names are matched ignoring case) and True for PUT. The
    first occurrence of a repeated name wins. Accessors raise :class:`BadRequest` for a missing
    or unparsable value.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]], *, case_sensitive: bool) -> None:
        self._case_sensitive = case_sensitive
        self._values: dict[str, str] = {}
        for name, value in pairs:
            self._values.setdefault(self._key(name), value)

    @classmethod
    def from_query(cls, query: str) -> Params:
        """GET: parameters from the URL query string. Raises BadRequest when malformed."""
        return cls(_parse_form(query), case_sensitive=False)

    @classmethod
    def from_form(cls, body: str) -> Params:
        """PUT: parameters from an ``application/x-www-form-urlencoded`` body. Raises
        BadRequest when malformed."""
        return cls(_parse_form(body), case_sensitive=True)

    def _key(self, name: str) -> str:
        return name if self._case_sensitive else name.lower()

    def raw(self, name: str) -> str | None:
        """The value of ``name`` as sent, or None when absent."""
        return self._values.get(self._key(name))

    def text(self, name: str) -> str:
        """A required string parameter."""
        value = self.raw(name)
        if value is None:
            raise BadRequest(f"missing parameter {name}")
        return value

    def integer(self, name: str) -> int:
        """A required Int32 parameter (decimal digits, optional sign, -2**31..2**31-1)."""
        value = self.text(name).strip()
        if (
            len(value) > _MAX_DIGITS
            or not _INTEGER.fullmatch(value)
            or not _INT32_MIN <= int(value) <= _INT32_MAX
        ):
            raise BadRequest(f"parameter {name}={value[:40]!r} is not a 32-bit integer")
        return int(value)

    def number(self, name: str) -> float:
        """A required finite floating-point parameter."""
        value = self.text(name).strip()
        try:
            number = float(value)
        except ValueError:
            raise BadRequest(f"parameter {name}={value[:40]!r} is not a number") from None
        if not math.isfinite(number):
            raise BadRequest(f"parameter {name}={value[:40]!r} is not a finite number")
        return number

    def boolean(self, name: str) -> bool:
        """A required boolean parameter: ``true`` or ``false`` in any casing."""
        value = self.text(name).strip().lower()
        if value not in ("true", "false"):
            raise BadRequest(f"parameter {name}={self.text(name)!r} is not true or false")
        return value == "true"

    def transaction(self) -> tuple[int, int]:
        """(ClientID, ClientTransactionID), 0 when absent. Raises BadRequest when present but not
        an unsigned 32-bit integer (empty, blank, negative, text)."""
        return self._uint32("ClientID"), self._uint32("ClientTransactionID")

    def _uint32(self, name: str) -> int:
        value = self.raw(name)
        if value is None:
            return 0
        text = value.strip()
        if len(text) > _MAX_DIGITS or not _DIGITS.fullmatch(text) or int(text) > _UINT32_MAX:
            raise BadRequest(f"{name}={value[:40]!r} is not an unsigned 32-bit integer")
        return int(text)


def _parse_form(text: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except ValueError as err:
        raise BadRequest(f"malformed parameters: {err}") from err


def envelope(
    client_transaction_id: int,
    server_transaction_id: int,
    *,
    value: Any = None,
    has_value: bool = False,
    error: AlpacaError | None = None,
) -> dict[str, Any]:
    """The JSON answer of one device or management call. ``Value`` is present when
    ``has_value`` (GET calls and methods that return something) and there is no error."""
    doc: dict[str, Any] = {}
    if has_value and error is None:
        doc["Value"] = value
    doc["ClientTransactionID"] = client_transaction_id
    doc["ServerTransactionID"] = server_transaction_id
    doc["ErrorNumber"] = int(error.number) if error is not None else 0
    doc["ErrorMessage"] = error.message if error is not None else ""
    return doc


def format_utc(when: datetime) -> str:
    """An Alpaca date-time: ``CCYY-MM-DDThh:mm:ss.ffffff`` in UTC, without a zone suffix (the
    form LastExposureStartTime uses)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
