"""What the index's table modules build on: reads and write transactions on the library's
SQLite database (one connection per thread), provided by :class:`capture.library.index.Index`.

The SQL of calibd lives in ``capture/library`` only, behind named methods (tests/test_structure.py
enforces it); the rest of the code calls those methods.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

from calibd.drivers.clock import Clock


def index_damaged(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) says the SQLite index itself is damaged (not merely
    busy, locked or full): retrying later does not help; the camera pauses instead."""
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, sqlite3.DatabaseError) and not isinstance(
                seen, sqlite3.OperationalError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def utc_now_text(clock: Clock | None = None) -> str:
    """Now in UTC as the index stores times: from ``clock`` (the capture clock, so the journal
    and the frames agree), else the system's."""
    now = clock.now() if clock is not None else datetime.now(UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Base of the table mixins of ``Index``. Blocking SQLite calls; raise LibraryError (as
    ``Index.query`` and ``Index.tx`` do: ``IndexDamaged`` for a damaged file)."""

    root: Path
    clock: Clock | None  # what rows are stamped with (see utc_now_text)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError
