"""The SQLite ledger: the per-user file, the default. A thin Ledger (store/backend.py) over
store/db.py, which owns opening, migrating and the write transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from meterfox_cli.errors import StoreError
from meterfox_cli.store import db
from meterfox_cli.store.dialect import SQLITE, Dialect
from meterfox_cli.store.migrations import MIGRATIONS


@dataclass(frozen=True, slots=True)
class PollingOnly:
    """SQLite pushes nothing: a daemon notices key changes by polling (keys/authorizer.py)."""

    listening: bool = False

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class SqliteLedger:
    path: Path
    dialect: ClassVar[Dialect] = SQLITE

    def describe(self) -> str:
        return str(self.path)

    def open_writer(self, busy_timeout_ms: int = db.BUSY_TIMEOUT_MS) -> sqlite3.Connection:
        return db.connect(self.path, busy_timeout_ms=busy_timeout_ms)

    def open_reader(self) -> sqlite3.Connection | None:
        conn = db.open_readonly(self.path)
        if conn is not None and not db.has_requests(conn):
            conn.close()
            return None
        return conn

    def read_connection(self) -> sqlite3.Connection | None:
        return db.open_readonly(self.path)

    def transaction(self, conn: sqlite3.Connection) -> AbstractContextManager[None]:
        return db.transaction(conn)

    def is_passing(self, exc: BaseException) -> bool:
        return is_passing_sqlite(exc)

    def is_lost(self, conn: sqlite3.Connection) -> bool:
        return False

    def migrate(self) -> list[str]:
        missing, _ = self.pending()
        db.connect(self.path).close()  # opening migrates
        return missing

    def check(self) -> None:
        self.open_writer().close()  # creates and migrates the file

    def pending(self) -> tuple[list[str], list[str]]:
        known = [name for name, _ in MIGRATIONS]
        if not self.path.exists():
            return known, []
        applied = db.applied_migrations(self.path)
        return [n for n in known if n not in applied], sorted(applied - set(known))

    def watch_keys(self, changed: Callable[[], None]) -> PollingOnly:
        return PollingOnly()


def is_passing_sqlite(exc: BaseException) -> bool:
    """A fault of a SQLite file as a whole (cannot open, locked, full…) that may pass, as
    opposed to one batch's data it will never take."""
    return isinstance(exc, StoreError | sqlite3.OperationalError) or type(exc) is (
        sqlite3.DatabaseError
    )
