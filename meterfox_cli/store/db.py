"""Connections to the database: opening one (owner-only file, WAL, busy timeout, migrated to
the latest schema), and the write transaction every writer of it uses."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meterfox_cli.errors import StoreError
from meterfox_cli.store.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 5000


def connect(
    path: Path, *, readonly: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """A connection to the MeterFox database at `path`, created owner-only and migrated.

    Any failure to open it (a directory in its place, no permission, a full disk, a lock held
    through the migration) is a StoreError.
    """
    if readonly and not path.exists():
        raise StoreError(f"no database at {path}: start `meterfox serve` and send a request first")
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
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn)
        return conn
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open the database {path}: {exc}") from exc


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


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT on an autocommit connection; ROLLBACK on any error.

    A failed COMMIT (disk full, I/O error) rolls back too. SQLite may already have rolled the
    transaction back itself (SQLITE_FULL does): then there is nothing to undo, and the
    original error is the one raised, not "cannot rollback - no transaction is active".
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


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
