"""The ledger behind one small protocol: where the record writer commits, reports read, and
proxy keys and their spend live. Two backends: the local SQLite file (the default,
store/sqlite.py) and a PostgreSQL server shared by a team (store/postgres.py). The writer, the
reports and the keys depend on this, never on a backend."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from meterfox_cli.errors import StoreError
from meterfox_cli.store.dialect import Dialect, LedgerConnection


class LedgerUnreachable(StoreError):
    """The ledger's server cannot be reached (a PostgreSQL server down, or a laptop offline):
    `serve` starts anyway, records wait in the outbox; unlike a schema behind or ahead."""


class KeyWatch(Protocol):
    """A ledger telling a daemon that its proxy keys changed, as it happens (PostgreSQL's
    LISTEN/NOTIFY), on top of the daemon's own polling; SQLite has no such channel."""

    @property
    def listening(self) -> bool:
        """Whether changes are being pushed right now (False: polling alone, until it is back)."""
        ...

    def close(self) -> None: ...


class Ledger(Protocol):
    dialect: Dialect

    def describe(self) -> str:
        """Where the ledger is, fit to print (a password masked)."""
        ...

    def open_writer(self, busy_timeout_ms: int) -> LedgerConnection:
        """A connection for writing records; the schema is current (SQLite migrates it,
        PostgreSQL refuses one behind or ahead: `meterfox db migrate`). StoreError if not."""
        ...

    def open_reader(self) -> LedgerConnection | None:
        """A connection for reports; None when nothing has been recorded yet."""
        ...

    def read_connection(self) -> LedgerConnection | None:
        """A connection for reading, recorded into yet or not (`tail` follows an empty ledger,
        the dashboard reads one); None when there is no ledger yet (no SQLite file, or one
        never migrated; a PostgreSQL database never migrated)."""
        ...

    def transaction(self, conn: LedgerConnection) -> AbstractContextManager[None]:
        """A write transaction: committed at the end, rolled back on any error."""
        ...

    def is_passing(self, exc: BaseException) -> bool:
        """A fault of the database as a whole (cannot connect, locked, full…) that may pass,
        as opposed to one batch's data the database will never take."""
        ...

    def is_lost(self, conn: LedgerConnection) -> bool:
        """The connection can no longer be used (the server dropped it): open another."""
        ...

    def migrate(self) -> list[str]:
        """Apply every migration not yet applied; their names."""
        ...

    def check(self) -> None:
        """Open a writing connection once, as `serve` does before its writer's process starts:
        the SQLite file is created and migrated here (so the writer, and another daemon, open
        it in milliseconds); StoreError, in one sentence, when `serve` must not write here (a
        database from a newer meterfox; a PostgreSQL schema behind or ahead of this version, or
        no server: LedgerUnreachable)."""
        ...

    def pending(self) -> tuple[list[str], list[str]]:
        """(migrations this version has that the database lacks, and those the database has
        that this version does not know)."""
        ...

    def watch_keys(self, changed: Callable[[], None]) -> KeyWatch:
        """Call `changed` (from another thread) soon after any proxy key is created, revoked
        or changed by anyone, and once each time the channel comes back after a loss."""
        ...


def schema_problem(where: str, missing: list[str], unknown: list[str]) -> str | None:
    """One sentence when the ledger's schema is behind or ahead of this version; else None."""
    if unknown:
        return (
            f"the ledger {where} has migrations this meterfox does not know "
            f"({', '.join(unknown)}): upgrade meterfox"
        )
    if missing:
        return (
            f"the ledger {where} is behind this meterfox ({len(missing)} migrations to apply): "
            "run `meterfox db migrate`"
        )
    return None


def as_ledger(ledger: Path | Ledger) -> Ledger:
    """A ledger, given one or the path of a SQLite file."""
    if isinstance(ledger, Path):
        from meterfox_cli.store.sqlite import SqliteLedger

        return SqliteLedger(ledger)
    return ledger


def ledger_at(url: str | None, sqlite_path: Path) -> Ledger:
    """The PostgreSQL ledger at `url`; without one, the SQLite file at `sqlite_path`."""
    if url is None:
        return as_ledger(sqlite_path)
    from meterfox_cli.store.postgres import PostgresLedger

    return PostgresLedger(url)
