"""Stored costs: one request's pricing facts (`explain`) and recomputing them (`reprice`).

A stored row holds everything pricing needs (provider, model, time, usage, price context and
the provider's reported cost), so any row can be priced again with today's overrides.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.pricing.book import PriceBook, price_reading
from meterfox_cli.store.dialect import LedgerConnection, write_transaction
from meterfox_cli.store.rows import STORED_COLUMNS, StoredRequest, named_rows, stored_request
from meterfox_cli.store.select import TimeRange, window_sql

_UPDATE = "UPDATE requests SET cost_nanousd = ?, cost_source = ?, price_detail = ? WHERE id = ?"
MIN_PREFIX = 6
ALL_TIME = TimeRange()
_HEX = frozenset("0123456789abcdef")


def find_request(conn: LedgerConnection, request_id: str) -> StoredRequest:
    """The request with this id (from `X-MeterFox-Request-Id`), or a unique id prefix."""
    request_id = request_id.strip()
    sql = f"SELECT {STORED_COLUMNS} FROM requests"
    rows = named_rows(conn.execute(f"{sql} WHERE id = ?", (request_id,)))
    if rows:
        return stored_request(rows[0])
    if len(request_id) >= MIN_PREFIX and _HEX.issuperset(request_id.lower()):
        rows = named_rows(conn.execute(f"{sql} WHERE id LIKE ? LIMIT 2", (request_id + "%",)))
        if len(rows) == 1:
            return stored_request(rows[0])
        if len(rows) > 1:
            raise MeterFoxError(f"request id {request_id!r} is ambiguous: give more of it")
    raise MeterFoxError(f"no request with id {request_id!r} (see X-MeterFox-Request-Id)")


@dataclass(frozen=True, slots=True)
class RepriceResult:
    examined: int
    changed: int  # rows whose cost or cost source changed
    newly_priced: int
    newly_unpriced: int
    before_nanousd: int  # the sum of the known costs, before and after
    after_nanousd: int

    @property
    def delta_nanousd(self) -> int:
        return self.after_nanousd - self.before_nanousd


def reprice(
    conn: LedgerConnection,
    book: PriceBook,
    window: TimeRange = ALL_TIME,
    *,
    dry_run: bool = False,
    batch: int = 2000,
) -> RepriceResult:
    """Price every stored request in the window again; write back what changed.

    Each batch is written in its own short transaction, on either backend: a batch is
    stored whole or not at all, and a running proxy's writer (which takes the same rollup rows
    on PostgreSQL) is held up for milliseconds at a time, not for the whole run.
    """
    examined = changed = newly_priced = newly_unpriced = before = after = 0
    for rows in _batches(conn, window, batch):
        updates = []
        for stored in rows:
            price = price_reading(stored.provider, stored.model, stored.ts, stored.reading, book)
            examined += 1
            before += stored.cost_nanousd or 0
            after += price.cost_nanousd or 0
            old = (stored.cost_nanousd, stored.cost_source)
            if old != (price.cost_nanousd, price.source):
                changed += 1
                newly_priced += stored.cost_nanousd is None and price.cost_nanousd is not None
                newly_unpriced += stored.cost_nanousd is not None and price.cost_nanousd is None
            if (*old, stored.price_detail) != (price.cost_nanousd, price.source, price.detail):
                updates.append((price.cost_nanousd, price.source, price.detail, stored.id))
        if updates and not dry_run:
            with write_transaction(conn):
                conn.executemany(_UPDATE, updates)
    return RepriceResult(examined, changed, newly_priced, newly_unpriced, before, after)


def _batches(conn: LedgerConnection, window: TimeRange, size: int) -> Iterator[list[StoredRequest]]:
    """Rows in (ts, id) order, fetched by keyset so updates between batches are safe."""
    window_clause, params = window_sql(window)
    last: StoredRequest | None = None
    while True:
        where = [window_clause] if window_clause else []
        args: list[object] = list(params)
        if last is not None:
            where.append("(r.ts > ? OR (r.ts = ? AND r.id > ?))")
            args += [last.ts, last.ts, last.id]
        sql = f"SELECT {STORED_COLUMNS} FROM requests r"
        if where:
            sql += " WHERE " + " AND ".join(where)
        cursor = conn.execute(sql + " ORDER BY r.ts, r.id LIMIT ?", (*args, size))
        batch = [stored_request(row) for row in named_rows(cursor)]
        if not batch:
            return
        yield batch
        last = batch[-1]
