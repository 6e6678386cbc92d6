"""Reading requests one by one, in the order they were recorded: `meterfox tail` and
`meterfox export`, on either backend. Both only read (a read-only connection works while
`serve` writes, thanks to WAL or PostgreSQL's MVCC), and both stream: rows are fetched as they
are used, never all held in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from meterfox_cli.store.dialect import LedgerConnection, dialect_of, streamed
from meterfox_cli.store.rows import LINE_COLUMNS, RequestLine, request_lines, tags_column
from meterfox_cli.store.select import NO_FILTERS, Filters, TimeRange, filter_sql, window_sql


def _where(filters: Filters, extra: list[str], params: list[object]) -> tuple[str, list[object]]:
    clauses, filter_params = filter_sql(filters, "r")
    clauses = [*clauses, *extra]
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), [*filter_params, *params]


def latest(conn: LedgerConnection, limit: int, filters: Filters = NO_FILTERS) -> list[RequestLine]:
    """The last `limit` requests recorded, oldest first."""
    if limit <= 0:
        return []
    where, params = _where(filters, [], [])
    sql = f"SELECT {LINE_COLUMNS} FROM requests r {where} ORDER BY r.rowid DESC LIMIT ?"
    lines = list(request_lines(conn.execute(sql, [*params, limit])))
    return lines[::-1]


def last_rowid(conn: LedgerConnection) -> int:
    return conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM requests").fetchone()[0]


def after(
    conn: LedgerConnection, rowid: int, filters: Filters = NO_FILTERS, limit: int = 1000
) -> list[RequestLine]:
    """Requests recorded after `rowid` (rowids grow as records are committed), oldest first."""
    where, params = _where(filters, ["r.rowid > ?"], [rowid])
    sql = f"SELECT {LINE_COLUMNS} FROM requests r {where} ORDER BY r.rowid LIMIT ?"
    return list(request_lines(conn.execute(sql, [*params, limit])))


def follow(
    conn: LedgerConnection,
    rowid: int,
    filters: Filters = NO_FILTERS,
    *,
    interval: float = 0.5,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[list[RequestLine]]:
    """Batches of new requests as they are committed, polling every `interval` seconds,
    until `deadline` (a `clock()` value) passes, or forever. Empty batches are not yielded."""
    while deadline is None or clock() < deadline:
        batch = after(conn, rowid, filters)
        if batch:
            rowid = batch[-1].rowid
            yield batch
            continue
        wait = interval if deadline is None else min(interval, max(deadline - clock(), 0))
        sleep(wait)


def export_rows(
    conn: LedgerConnection, window: TimeRange, filters: Filters = NO_FILTERS
) -> Iterator[RequestLine]:
    """Every request in the window with its tags, oldest first, fetched as iterated."""
    window_clause, window_params = window_sql(window)
    where, params = _where(filters, [window_clause] if window_clause else [], window_params)
    tags = tags_column(dialect_of(conn))
    sql = f"SELECT {LINE_COLUMNS}, {tags} FROM requests r {where} ORDER BY r.ts, r.rowid"
    cursor = streamed(conn, sql, params)
    try:
        yield from request_lines(cursor)
    finally:
        cursor.close()
