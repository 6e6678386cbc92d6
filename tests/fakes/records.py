"""Records for tests: `usage_record` builds one UsageRecord; `Req` / `insert` write recorded
requests for report tests through the record writer's own INSERT path; `SlowToArrive` is a
pricer that makes a writer's process slow to start."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from meterfox_cli.pricing.quote import NO_USAGE, UNPRICED, Price
from meterfox_cli.records import Outcome, UsageRecord, new_request_id
from meterfox_cli.store.db import connect, transaction
from meterfox_cli.store.rows import (
    INSERT_REQUEST,
    INSERT_TAG,
    REQUEST_COLUMNS,
    insert_records,
    record_tags,
    request_row,
)
from meterfox_cli.usage import Reading, Usage

_ids = itertools.count(1)


def usage_record(**fields: object) -> UsageRecord:
    """A plausible OpenAI chat record; a test passes only the fields it is about."""
    defaults: dict[str, object] = {
        "id": new_request_id(),
        "started_at": time.time(),
        "provider": "openai",
        "model": "gpt-4o",
        "endpoint": "/v1/chat/completions",
        "method": "POST",
        "status": 200,
        "streamed": False,
        "outcome": Outcome.OK,
        "key_name": "passthrough",
        "ttfb_ms": 1.0,
        "latency_ms": 2.0,
        "reading": Reading(model="gpt-4o"),
    }
    return UsageRecord(**{**defaults, **fields})


@dataclass(frozen=True)
class Req:
    """One request to record, with test-friendly defaults. cost_nano None + unpriced=True
    records cost_source 'unpriced'; cost_nano None + unpriced=False records 'no_usage'."""

    ts: float
    provider: str = "openai"
    model: str | None = "gpt-4o"
    key: str = "passthrough"
    endpoint: str = "/v1/chat/completions"
    status: int = 200
    outcome: Outcome = Outcome.OK
    input_tokens: int = 100
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 10
    reasoning_tokens: int = 0
    cost_nano: int | None = 1000
    unpriced: bool = False
    latency_ms: float = 500.0
    ttfb_ms: float | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def record(self) -> UsageRecord:
        has_usage = self.cost_nano is not None or self.unpriced
        usage = (
            Usage(
                input_tokens=self.input_tokens,
                cached_tokens=self.cached_tokens,
                cache_write_tokens=self.cache_write_tokens,
                output_tokens=self.output_tokens,
                reasoning_tokens=self.reasoning_tokens,
            )
            if has_usage
            else None
        )
        return UsageRecord(
            id=f"{int(self.ts * 1000):011x}{next(_ids):010x}",
            started_at=self.ts,
            provider=self.provider,
            model=self.model,
            endpoint=self.endpoint,
            method="POST",
            status=self.status,
            streamed=self.ttfb_ms is not None,
            outcome=self.outcome,
            key_name=self.key,
            ttfb_ms=self.ttfb_ms,
            latency_ms=self.latency_ms,
            reading=Reading(model=self.model, usage=usage),
            tags=self.tags,
        )

    def price(self) -> Price:
        if self.cost_nano is not None:
            return Price(self.cost_nano, "computed", "test")
        return UNPRICED if self.unpriced else NO_USAGE


def insert(conn: sqlite3.Connection, *requests: Req) -> None:
    """Commit requests exactly as RecordWriter does (`insert_records` in a transaction)."""
    with transaction(conn):
        insert_records(conn, [(req.record(), req.price()) for req in requests])


def insert_as_before_016(
    conn: sqlite3.Connection, records: Sequence[tuple[UsageRecord, Price]], host: str = ""
) -> None:
    """Commit records as `insert_records` did before migration 016: the tags, then the
    requests, plain INSERTs skipping an id already stored, the rollups left to that schema's
    triggers. For a database migrated only part of the way (not past 015)."""
    rows = [request_row(record, price, host) for record, price in records]
    with transaction(conn):
        conn.executemany(INSERT_TAG, record_tags(record for record, _ in records))
        conn.executemany(INSERT_REQUEST, [[row[c] for c in REQUEST_COLUMNS] for row in rows])


def record_to(path: Path, *requests: Req) -> None:
    conn = connect(path)
    try:
        insert(conn, *requests)
    finally:
        conn.close()


def at(text: str) -> float:
    """Unix seconds for a local date/time, e.g. at('2026-11-03 14:00')."""
    return datetime.fromisoformat(text).timestamp()


class SlowToArrive:
    """A pricer (price_record, as it is) that a writer's process takes `delay_s` to unpickle:
    a child that is slow to start, as on a loaded machine."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def __call__(self, record: UsageRecord) -> Price:
        from meterfox_cli.pricing.book import price_record

        return price_record(record)

    def __setstate__(self, state: dict[str, float]) -> None:
        time.sleep(state["delay_s"])
        self.__dict__.update(state)
