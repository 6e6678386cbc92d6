"""Connections to the database: opening one (owner-only file, WAL, busy timeout, migrated to
the latest schema; a database from a newer meterfox refused before a byte of it is written),
and the write transaction every writer of it uses."""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path

from meterfox_cli.errors import StoreError
from meterfox_cli.store.dialect import write_transaction
from meterfox_cli.store.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 5000
WAL_RETRY_S = 0.005  # between attempts to switch a fresh file to WAL while another holds it


def _null(value: None) -> None:
    return value


# sqlite3 binds None as NULL only after looking for an adapter: without one registered for
# NoneType, it asks the protocol for `__adapt__` and None for `__conform__`, each lookup failing
# with a formatted AttributeError (about 3,000 instructions per None; a record's row has five,
# about 4% of the record writer's CPU, measured with callgrind: docs/performance.md). An
# adapter registered for NoneType is found in sqlite3's table first; it returns None, which is
# bound as NULL, as before. (Process-wide, as every sqlite3 adapter is: the same NULL for all.)
sqlite3.register_adapter(type(None), _null)


def connect(
    path: Path, *, readonly: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """A connection to the MeterFox database at `path`, created owner-only and migrated.

    Any failure to open it (a directory in its place, no permission, a full disk, a lock held
    through the migration) is a StoreError, and so is a database a newer meterfox migrated
    (refused before anything is written to it). A read-only open of a database behind this
    version migrates it first: a newer meterfox brings the file forward on first use.
    """
    if readonly and not path.exists():
        raise StoreError(f"no database at {path}: start `meterfox serve` and send a request first")
    if path.exists():
        applied = refuse_newer(path)
        if readonly and applied and any(name not in applied for name, _ in MIGRATIONS):
            connect(path, busy_timeout_ms=busy_timeout_ms).close()  # opening migrates
    try:
        if not readonly:
            create_owner_only(path)
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if not readonly:
            use_wal(conn, busy_timeout_ms / 1000)
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn)
        return conn
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open the database {path}: {exc}") from exc


def use_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Put the database in WAL mode (it stays so). Switching a file still in rollback mode (a
    fresh one) needs its write lock, and while another connection holds that lock SQLite says
    "database is locked" at once, without waiting out the busy timeout: two daemons creating
    one database at the same moment. So the switch is tried again until `timeout_s` has passed;
    sqlite3.OperationalError after that."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        else:
            if mode == "wal":
                return
            if time.monotonic() >= deadline:
                raise sqlite3.OperationalError(f"database is locked (journal mode {mode}, not wal)")
        time.sleep(WAL_RETRY_S)


def refuse_newer(path: Path) -> set[str]:
    """The migrations recorded in the database at `path`; a StoreError, in one sentence, when
    it has one this version does not know (a newer meterfox wrote it)."""
    from meterfox_cli.store.backend import schema_problem

    applied = applied_migrations(path)
    unknown = sorted(applied - {name for name, _ in MIGRATIONS})
    problem = schema_problem(str(path), [], unknown)
    if problem is not None:
        raise StoreError(problem)
    return applied


def open_untouched(path: Path, timeout_s: float = BUSY_TIMEOUT_MS / 1000) -> sqlite3.Connection:
    """A read connection that writes nothing, not even a -wal or -shm file (which a `mode=ro`
    connection creates and leaves behind). Without a -wal beside it the file is whole (a WAL
    database's last connection folds the log in and removes it), so it is read as immutable,
    which opens neither; with one, the -wal and -shm are there already. sqlite3.Error if the
    file cannot be opened."""
    wal = path.with_name(f"{path.name}-wal")
    flags = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    return sqlite3.connect(f"file:{path}?{flags}", uri=True, timeout=timeout_s)


def applied_migrations(path: Path) -> set[str]:
    """The migrations recorded in the database at `path`, read without writing a byte."""
    try:
        conn = open_untouched(path)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from exc
    try:
        return {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):  # blank, or created but never migrated
            return set()
        raise StoreError(f"cannot open the database {path}: {exc}") from exc
    finally:
        conn.close()


def create_owner_only(path: Path) -> None:
    """Create the file owner-only before SQLite opens it (SQLite gives its -wal and -shm files
    the same mode).

    Never open and close a descriptor on a database this process may already have open:
    closing any descriptor drops every POSIX lock the process holds on the file, SQLite's
    included, and another process may then take itself for the last connection and reset the
    WAL under ours (records lost; sqlite.org/howtocorrupt.html §2.2). So the file is opened
    only when this call creates it, which no connection can have open yet.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
    else:
        os.close(fd)


def open_readonly(path: Path) -> sqlite3.Connection | None:
    """A read-only connection for reports, or None when nothing has been recorded yet (no
    database file, or one whose `requests` table is missing or empty)."""
    if not path.exists():
        return None
    conn = connect(path, readonly=True)
    try:
        conn.execute("SELECT 1 FROM requests LIMIT 1").fetchone()
    except sqlite3.OperationalError:  # created but never migrated: nothing recorded
        conn.close()
        return None
    return conn


def has_requests(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM requests LIMIT 1").fetchone() is not None


def transaction(conn: sqlite3.Connection) -> AbstractContextManager[None]:
    """BEGIN IMMEDIATE … COMMIT on an autocommit connection; ROLLBACK on any error
    (store/dialect.write_transaction, which both backends share)."""
    return write_transaction(conn)


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; return their names."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name, migration in MIGRATIONS:
        if name in done:
            continue
        with transaction(conn):
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                continue  # another process applied it while we waited for the lock
            migration(conn)
            conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
        applied.append(name)
    return applied
