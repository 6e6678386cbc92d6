"""Stored costs: one request's pricing facts (`explain`) and recomputing them (`reprice`).

A stored row holds everything pricing needs (provider, model, time, usage, price context and
the provider's reported cost), so any row can be priced again with today's overrides.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.pricing import PriceBook, Quote, price_reading
from meterfox_cli.store.db import transaction
from meterfox_cli.store.select import TimeRange
from meterfox_cli.usage import Reading, Usage

_COLUMNS = """
    id, ts, provider, model, endpoint, status, outcome, usage_known,
    input_tokens, cached_tokens, cache_write_tokens, cache_write_1h_tokens,
    output_tokens, reasoning_tokens, units, price_context, reported_cost_usd,
    cost_nanousd, cost_source, price_detail
"""
_UPDATE = "UPDATE requests SET cost_nanousd = ?, cost_source = ?, price_detail = ? WHERE id = ?"
MIN_PREFIX = 6
ALL_TIME = TimeRange()
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class StoredRequest:
    id: str
    ts: float
    provider: str
    model: str | None
    endpoint: str
    status: int
    outcome: str
    reading: Reading
    cost_nanousd: int | None
    cost_source: str
    price_detail: str | None

    @property
    def quote(self) -> Quote | None:
        return Quote.from_json(self.price_detail) if self.price_detail else None


def _stored(row: tuple) -> StoredRequest:
    (id_, ts, provider, model, endpoint, status, outcome, known, inp, cached, write, write_1h,
     out, reasoning, units, context, reported, nano, source, detail) = row  # fmt: skip
    usage = None
    if known:
        usage = Usage(
            input_tokens=inp,
            cached_tokens=cached,
            cache_write_tokens=write,
            cache_write_1h_tokens=write_1h,
            output_tokens=out,
            reasoning_tokens=reasoning,
            units=tuple(json.loads(units).items()) if units else (),
        )
    reading = Reading(
        model=model,
        usage=usage,
        reported_cost_usd=Decimal(reported) if reported is not None else None,
        price_context=tuple(json.loads(context).items()) if context else (),
    )
    return StoredRequest(
        id_, ts, provider, model, endpoint, status, outcome, reading, nano, source, detail
    )


def find_request(conn: sqlite3.Connection, request_id: str) -> StoredRequest:
    """The request with this id (from `X-MeterFox-Request-Id`), or a unique id prefix."""
    request_id = request_id.strip()
    row = conn.execute(f"SELECT {_COLUMNS} FROM requests WHERE id = ?", (request_id,)).fetchone()
    if row is not None:
        return _stored(row)
    if len(request_id) >= MIN_PREFIX and _HEX.issuperset(request_id.lower()):
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM requests WHERE id LIKE ? LIMIT 2", (request_id + "%",)
        ).fetchall()
        if len(rows) == 1:
            return _stored(rows[0])
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
    conn: sqlite3.Connection,
    book: PriceBook,
    window: TimeRange = ALL_TIME,
    *,
    dry_run: bool = False,
    batch: int = 2000,
) -> RepriceResult:
    """Price every stored request in the window again; write back what changed.

    Each batch is written in its own short transaction, so a running proxy's writer is held
    up for milliseconds at a time, not for the whole run.
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
            with transaction(conn):
                conn.executemany(_UPDATE, updates)
    return RepriceResult(examined, changed, newly_priced, newly_unpriced, before, after)


def _batches(
    conn: sqlite3.Connection, window: TimeRange, size: int
) -> Iterator[list[StoredRequest]]:
    """Rows in (ts, id) order, fetched by keyset so updates between batches are safe."""
    clauses, params = [], []
    if window.since is not None:
        clauses.append("ts >= ?")
        params.append(window.since)
    if window.until is not None:
        clauses.append("ts < ?")
        params.append(window.until)
    last: tuple[float, str] | None = None
    while True:
        where = list(clauses)
        args: list[object] = list(params)
        if last is not None:
            where.append("(ts > ? OR (ts = ? AND id > ?))")
            args += [last[0], last[0], last[1]]
        sql = f"SELECT {_COLUMNS} FROM requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = conn.execute(sql + " ORDER BY ts, id LIMIT ?", (*args, size)).fetchall()
        if not rows:
            return
        yield [_stored(row) for row in rows]
        last = (rows[-1][1], rows[-1][0])
