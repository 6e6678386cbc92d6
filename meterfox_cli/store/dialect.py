"""The few places where the ledger's SQL differs between SQLite and PostgreSQL, one frozen
Dialect per backend (everything else the write and report paths run is the same text on both,
with `?` placeholders), and the connection both backends give: a sqlite3.Connection, or a
PostgreSQL one shaped like it (store/postgres.py). `dialect_of(conn)` tells which it speaks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

HOUR_S = 3600
DAY_S = 86400


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
    begin_write_sql: str  # a write transaction, its write lock taken at once where it matters
    utc_day_sql: str  # the UTC day (YYYY-MM-DD) of unix seconds {ts}
    # a request's tags as one JSON object text, compact and by name, over tag rows {t}
    tags_object_sql: str
    # {expr} over the rows of the SELECT {rows} concatenated in byte order of {order} ('' for
    # no row): a scalar subquery
    concat_ordered_sql: str
    # latency percentiles: taken by the database (PostgreSQL's percentile_disc, so rows never
    # cross the wire), or by Python over the rows read (SQLite, in-process: cheap to read)
    percentiles_in_sql: bool
    # after `requests r`: about {percent}% of its rows, whole pages at a time ('' if none)
    sample_sql: str
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
        return self.bucket(ts, HOUR_S)

    def bucket(self, ts: str, seconds: int) -> str:
        """The number of the `seconds`-long span (from the epoch) holding unix seconds `ts`."""
        return self.hour_sql.format(ts=ts, seconds=seconds)

    def week(self, day: str) -> str:
        return self.week_sql.format(day=day)

    def char(self, code: int) -> str:
        return self.char_sql.format(code=int(code))

    def utc_day(self, ts: str) -> str:
        return self.utc_day_sql.format(ts=ts)

    def tags_object(self, t: str) -> str:
        return self.tags_object_sql.format(t=t)

    def concat_ordered(self, expr: str, rows: str, order: str) -> str:
        return self.concat_ordered_sql.format(expr=expr, rows=rows, order=order)

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
    begin_write_sql="BEGIN IMMEDIATE",
    utc_day_sql="date({ts}, 'unixepoch')",
    tags_object_sql="json_group_object({t}.name, {t}.value)",  # read by the (request, name) key
    # group_concat keeps the inner ORDER BY; text compares byte by byte (BINARY)
    concat_ordered_sql="IFNULL((SELECT group_concat({expr}, '') FROM ({rows} ORDER BY {order})), '')",
    percentiles_in_sql=False,
    sample_sql="",  # SQLite samples one row in n by rowid instead (store/latency.py)
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
    # without JIT: compiling a report's query (0.3-0.6 s, whenever a sample's plan looks
    # costly) takes longer than running it
    begin_snapshot_sql="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL jit = off",
    begin_write_sql="BEGIN",
    utc_day_sql="to_char(to_timestamp({ts}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    # SQLite's text exactly: no spaces, names in byte order
    tags_object_sql=(
        "'{{' || string_agg(to_json({t}.name)::text || ':' || to_json({t}.value)::text, ',' "
        "ORDER BY {t}.name COLLATE \"C\") || '}}'"
    ),
    concat_ordered_sql=(
        "COALESCE((SELECT string_agg({expr}, '' ORDER BY {order} COLLATE \"C\") FROM ({rows}) s), '')"
    ),
    percentiles_in_sql=True,
    sample_sql="TABLESAMPLE SYSTEM ({percent}) REPEATABLE (0)",
    lock_table_sql="LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE",
)


def dialect_of(conn: LedgerConnection) -> Dialect:
    """SQLite for a sqlite3 connection; otherwise the dialect the connection carries (a
    PostgreSQL connection of store/postgres.py)."""
    if isinstance(conn, sqlite3.Connection):
        return SQLITE
    return conn.dialect  # type: ignore[attr-defined]


@contextmanager
def write_transaction(conn: LedgerConnection) -> Iterator[None]:
    """BEGIN … COMMIT on an autocommit connection of either backend; ROLLBACK on any error.

    A failed COMMIT rolls back too. The database may already have rolled the transaction back
    itself (SQLite's SQLITE_FULL does): then there is nothing to undo, and the original error
    is the one raised, not "cannot rollback - no transaction is active"."""
    conn.execute(dialect_of(conn).begin_write_sql)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def streamed(conn: LedgerConnection, sql: str, parameters: Sequence[Any] = ()) -> Any:
    """A cursor over `sql` whose rows come from the database as they are fetched (fetchmany),
    never all at once: SQLite steps its statement; PostgreSQL reads through a server-side
    cursor (store/postgres.py). Close it when done."""
    if isinstance(conn, sqlite3.Connection):
        return conn.execute(sql, parameters)
    return conn.stream(sql, parameters)  # type: ignore[attr-defined]
