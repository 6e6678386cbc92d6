"""The few places where the ledger's SQL differs between SQLite and PostgreSQL, one frozen
Dialect per backend (everything else the write and report paths run is the same text on both,
with `?` placeholders), and the connection both backends give: a sqlite3.Connection, or a
PostgreSQL one shaped like it (store/postgres.py). `dialect_of(conn)` tells which it speaks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

HOUR_S = 3600


class LedgerConnection(Protocol):
    """What the write and report paths use of a connection (sqlite3.Connection has it all)."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    insert_ignoring_sql: str  # an INSERT that skips a row whose key is already stored
    hour_sql: str  # the hour number of unix seconds {ts}: truncated, as SQLite's CAST does
    week_sql: str  # the Monday (ISO date) of the ISO week of an ISO day {day}
    char_sql: str  # the character with code {code}
    table_exists_sql: str  # one row when the table named by the parameter exists
    begin_snapshot_sql: str  # a read transaction whose statements all see one snapshot
    # Taken first in a write transaction that reads before it writes (one live key per name):
    # other writers of {table} wait, readers do not. SQLite's BEGIN IMMEDIATE already holds
    # the database's one write lock: nothing to add.
    lock_table_sql: str

    def insert_ignoring(self, table: str, columns: Sequence[str]) -> str:
        values = ", ".join("?" * len(columns))
        return self.insert_ignoring_sql.format(
            table=table, columns=", ".join(columns), values=values
        )

    def hour(self, ts: str) -> str:
        return self.hour_sql.format(ts=ts, seconds=HOUR_S)

    def week(self, day: str) -> str:
        return self.week_sql.format(day=day)

    def char(self, code: int) -> str:
        return self.char_sql.format(code=int(code))

    def lock_table(self, table: str) -> str | None:
        return self.lock_table_sql.format(table=table) if self.lock_table_sql else None


SQLITE = Dialect(
    name="sqlite",
    insert_ignoring_sql="INSERT OR IGNORE INTO {table} ({columns}) VALUES ({values})",
    hour_sql="CAST({ts} / {seconds} AS INTEGER)",
    week_sql="date({day}, 'weekday 0', '-6 days')",  # the Monday that starts the ISO week
    char_sql="char({code})",
    table_exists_sql="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    begin_snapshot_sql="BEGIN",  # under WAL a read transaction is one snapshot
    lock_table_sql="",
)

POSTGRES = Dialect(
    name="postgresql",
    insert_ignoring_sql=(
        "INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING"
    ),
    hour_sql="CAST(TRUNC({ts} / {seconds}) AS BIGINT)",
    week_sql="to_char(date_trunc('week', CAST({day} AS date)), 'YYYY-MM-DD')",
    char_sql="chr({code})",
    table_exists_sql="SELECT 1 WHERE to_regclass(?) IS NOT NULL",
    begin_snapshot_sql="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    lock_table_sql="LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE",
)


def dialect_of(conn: LedgerConnection) -> Dialect:
    """SQLite for a sqlite3 connection; otherwise the dialect the connection carries (a
    PostgreSQL connection of store/postgres.py)."""
    if isinstance(conn, sqlite3.Connection):
        return SQLITE
    return conn.dialect  # type: ignore[attr-defined]
