"""The library's SQLite index and run journal (``<library>/calibd.sqlite``, WAL mode).

It indexes frames (one row per complete FITS file) and journals runs: the cells each run planned,
their state (pending, complete, skipped, failed) and events (rejected frames, skipped cells,
reconnects). Everything but the events can be rebuilt from the FITS headers
(:mod:`capture.library.rescan`). One connection per thread; safe across processes.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

from calibd.capture.errors import LibraryError
from calibd.capture.library.flat_memory import FlatMemoryTable
from calibd.capture.library.frame_queries import FrameQueries
from calibd.capture.library.masters_table import MastersTable
from calibd.capture.library.runs_table import RunsTable
from calibd.capture.library.validity_queries import ValidityQueries
from calibd.drivers.clock import Clock

SCHEMA_VERSION = 1
COLOUR_FLAT_COLUMNS = ("cfa_r_adu", "cfa_g1_adu", "cfa_g2_adu", "cfa_b_adu", "flat_bias_adu")
#: ``frames`` columns added after the first libraries were indexed: (name, declaration, the
#: value of an older row as an SQL expression). A writable open adds them (:class:`Index`); a
#: read-only one shows them through a temporary view (:func:`_older_frames_view`).
ADDED_FRAME_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("mtime_ns", "INTEGER", "NULL"),  # checksums
    *((name, "REAL", "NULL") for name in COLOUR_FLAT_COLUMNS),  # colour flats
    # SENSSET: of an older library's sensor frames only the ladder flats (SENSLVL) are known,
    # by their cells' keys lvl<n>; `library rescan` gives the same.
    ("sensor", "INTEGER NOT NULL DEFAULT 0", "COALESCE(cell_key LIKE '%|lvl%', 0)"),
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY,
    plan_name TEXT NOT NULL,
    plan_path TEXT,
    plan_digest TEXT,
    camera TEXT NOT NULL,
    folder TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    reason TEXT,
    started_utc TEXT NOT NULL,
    updated_utc TEXT,
    finished_utc TEXT
);
CREATE TABLE IF NOT EXISTS run_cells(
    run_id INTEGER NOT NULL REFERENCES runs(id),
    cell_key TEXT NOT NULL,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL,
    gain INTEGER, "offset" INTEGER, binning INTEGER, readout_mode TEXT,
    setpoint_c REAL, exposure_s REAL, filter TEXT,
    planned INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    PRIMARY KEY(run_id, cell_key)
);
CREATE TABLE IF NOT EXISTS frames(
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    run_id INTEGER,
    cell_key TEXT,
    seq INTEGER,
    camera TEXT, camera_id TEXT, kind TEXT,
    gain INTEGER, "offset" INTEGER, binning INTEGER, readout_mode TEXT,
    setpoint_c REAL, ccd_temp_c REAL, exposure_s REAL, filter TEXT,
    date_obs TEXT, width INTEGER, height INTEGER, bytes INTEGER,
    level_adu REAL, noise_adu REAL, mtime_ns INTEGER,
    cfa_r_adu REAL, cfa_g1_adu REAL, cfa_g2_adu REAL, cfa_b_adu REAL, flat_bias_adu REAL,
    sensor INTEGER NOT NULL DEFAULT 0,
    UNIQUE(run_id, cell_key, seq)
);
CREATE INDEX IF NOT EXISTS frames_cell ON frames(run_id, cell_key);
CREATE TABLE IF NOT EXISTS flat_memory(
    camera TEXT NOT NULL, filter TEXT NOT NULL, binning INTEGER NOT NULL, gain INTEGER NOT NULL,
    "offset" INTEGER NOT NULL, readout_mode TEXT NOT NULL, mode TEXT NOT NULL,
    fixed REAL NOT NULL, value REAL NOT NULL, level REAL NOT NULL, updated_utc TEXT NOT NULL,
    PRIMARY KEY(camera, filter, binning, gain, "offset", readout_mode, mode, fixed)
);
CREATE TABLE IF NOT EXISTS masters(
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    camera TEXT, camera_id TEXT, instrument TEXT,
    run_id INTEGER, cell_key TEXT,
    gain INTEGER, "offset" INTEGER, binning INTEGER, readout_mode TEXT, bit_depth INTEGER,
    setpoint_c REAL, exposure_s REAL, filter TEXT, width INTEGER, height INTEGER,
    ncombine INTEGER, inputs_digest TEXT, calibration TEXT, date_obs TEXT, created_utc TEXT,
    UNIQUE(kind, run_id, cell_key)
);
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY,
    run_id INTEGER,
    time_utc TEXT NOT NULL,
    level TEXT NOT NULL,
    kind TEXT NOT NULL,
    cell_key TEXT,
    message TEXT NOT NULL,
    data TEXT
);
"""

class IndexDamaged(LibraryError):
    """The index file is damaged (not a database, malformed pages). It can be rebuilt from the
    FITS headers and run manifests (:func:`capture.library.rescan.open_index` does so)."""


SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 10, 11, 13, 26
RECOVERY_HINT = ("run `calibd library rescan` to rebuild it from the FITS files (the next "
                 "`calibd run` or `calibd masters build` does so by itself)")


def index_error(err: sqlite3.Error | OSError, path: Path) -> LibraryError:
    """The LibraryError for an SQLite (or file system) failure on the index at ``path``: a
    damaged file, a full disk, a read-only file, or anything else, each said plainly."""
    code = (getattr(err, "sqlite_errorcode", None) or 0) & 0xFF
    text = str(err)
    if code in (SQLITE_CORRUPT, SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return IndexDamaged(f"the library index {path} is damaged ({text}): {RECOVERY_HINT}")
    if code == SQLITE_FULL or "disk is full" in text or getattr(err, "errno", None) == 28 \
            or (code == SQLITE_IOERR and _nearly_full(path.parent)):
        return LibraryError(f"disk full while updating the library index {path}: free space, "
                            "then run again (nothing counted was lost)")
    if "readonly" in text or "read-only" in text:
        return LibraryError(f"the library index {path} is read-only ({text})")
    return LibraryError(f"library index {path}: {text}")


def _nearly_full(folder: Path) -> bool:
    """True when the file system of ``folder`` has (almost) no space left: SQLite reports some
    writes that fail for want of space (its shared-memory file) as a "disk I/O error"."""
    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


class Index(ValidityQueries, RunsTable, FrameQueries, MastersTable, FlatMemoryTable):
    """Access to one library's index. Creates it on first use. Its tables' named queries live
    in the mixins (:mod:`capture.library.runs_table`, :mod:`~capture.library.frame_queries`,
    :mod:`~capture.library.masters_table`, :mod:`~capture.library.flat_memory`,
    :mod:`~capture.library.validity_queries`); :meth:`query`
    is for them and for tests.

    ``clock``: what runs and journal events are stamped with (the camera's clock while
    capturing; the system's otherwise). ``readonly`` opens an existing index without writing
    to it (``library status`` on a read-only file or folder). ``check`` runs ``PRAGMA
    quick_check`` first (linear in the file's size; done once per process by the commands) and
    raises :class:`IndexDamaged` on damage. Every SQLite error of any method is raised as
    :class:`LibraryError` (``IndexDamaged`` for a damaged file), never as ``sqlite3``
    exceptions.
    """

    def __init__(self, root: Path, clock: Clock | None = None, *, readonly: bool = False,
                 check: bool = False, name: str = "calibd.sqlite") -> None:
        self.root = root
        self.clock = clock
        self.path = root / name  # ``name``: another file, e.g. an index being rebuilt
        self.readonly = readonly
        self._local = threading.local()
        try:
            if readonly:
                if not self.path.is_file():
                    raise LibraryError(f"no calibd library at {root} (no {self.path.name})")
                db = self._db()
            else:
                root.mkdir(parents=True, exist_ok=True)
                db = self._db()
            if check:
                problems = [r[0] for r in db.execute("PRAGMA quick_check(5)")]
                if problems != ["ok"]:
                    raise IndexDamaged(f"the library index {self.path} is damaged "
                                       f"({'; '.join(map(str, problems))[:300]}): "
                                       f"{RECOVERY_HINT}")
            if not readonly:
                db.executescript(SCHEMA)  # idempotent; executescript manages its transaction
                columns = {r["name"] for r in db.execute("PRAGMA table_info(frames)")}
                with self.tx() as tx:
                    for column, decl, older in ADDED_FRAME_COLUMNS:
                        if column not in columns:
                            tx.execute(f"ALTER TABLE frames ADD COLUMN {column} {decl}")
                            if older != "NULL":
                                tx.execute(f"UPDATE frames SET {column}={older}")
                    tx.execute("INSERT OR IGNORE INTO meta(key, value) VALUES('schema', ?)",
                               (str(SCHEMA_VERSION),))
        except LibraryError:
            self.close()
            raise
        except (OSError, sqlite3.Error) as err:
            self.close()
            raise index_error(err, self.path) from err

    # ----- connections -----------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                if self.readonly:
                    db = _connect_readonly(self.path)
                    _older_frames_view(db)
                else:
                    db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as err:
                if db is not None:
                    db.close()
                raise index_error(err, self.path) from err
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT/ROLLBACK). SQLite errors inside it
        are raised as LibraryError (after the rollback)."""
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise index_error(err, self.path) from err
        try:
            yield db
        except BaseException as err:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            if isinstance(err, sqlite3.Error):
                raise index_error(err, self.path) from err
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as err:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise index_error(err, self.path) from err

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Rows of a read query. Raises LibraryError (IndexDamaged on a damaged file)."""
        try:
            return list(self._db().execute(sql, args))
        except sqlite3.Error as err:
            raise index_error(err, self.path) from err

    def seal(self) -> None:
        """Leave the file complete on its own: the write-ahead log folded in and the journal
        mode set to DELETE (no ``-wal`` beside it), so it may be renamed into place. The next
        open sets WAL again. Only with no other connection open. Raises LibraryError."""
        try:
            self._db().execute("PRAGMA journal_mode=DELETE").fetchall()
        except sqlite3.Error as err:
            raise LibraryError(f"cannot finish the library index {self.path}: {err}") from err

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            with suppress(sqlite3.Error):
                db.close()
            self._local.db = None


def _older_frames_view(db: sqlite3.Connection) -> None:
    """On a read-only connection to an index written before some ``frames`` columns existed
    (:data:`ADDED_FRAME_COLUMNS`), a temporary view ``frames`` that adds them with the values
    the upgrade of a writable open gives older rows, so the
    queries run unchanged: SQLite finds temporary objects before the file's. Nothing is
    written to the file. Raises sqlite3.Error."""
    have = {row[1] for row in db.execute("PRAGMA main.table_info(frames)")}
    if not have:
        return
    added = [f"{older} AS {name}" for name, _, older in ADDED_FRAME_COLUMNS
             if name not in have]
    if added:
        db.execute(f"CREATE TEMP VIEW frames AS SELECT *, {', '.join(added)} FROM main.frames")


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that never writes: ``mode=ro``; when SQLite cannot even create its
    shared-memory file beside a WAL database (read-only folder), ``immutable=1`` (safe: nothing
    can write to a read-only folder either)."""
    uri = f"file:{quote(str(path))}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
        return db
    except sqlite3.OperationalError:
        db.close()
    db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro&immutable=1", uri=True,
                         timeout=30.0, isolation_level=None)
    return db

