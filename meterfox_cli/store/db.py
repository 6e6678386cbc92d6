"""Opening the database: owner-only file, WAL, busy timeout, migrated to the latest schema."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from meterfox_cli.errors import StoreError
from meterfox_cli.store.migrations import migrate

BUSY_TIMEOUT_MS = 5000


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the MeterFox database at `path`, created owner-only and migrated."""
    if not readonly:
        _create_owner_only(path)
    elif not path.exists():
        raise StoreError(f"no database at {path}: start `meterfox serve` and send a request first")
    try:
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn)
        return conn
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from exc


def _create_owner_only(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


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
