"""The record writer: one thread that commits records to SQLite in batches.

Guarantee: every record `submit`ted before `close()` returns is committed, unless the database
refuses writes for longer than the close deadline (then the loss is logged with its count).
While the database is locked or the disk is full, records wait in a bounded queue and the
writer retries with backoff; the proxy never waits on disk.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from meterfox_cli.pricing import UNPRICED, Price, price_record
from meterfox_cli.records import UsageRecord
from meterfox_cli.store.db import connect
from meterfox_cli.store.migrations import transaction

log = logging.getLogger("meterfox.writer")

# How long a record may wait for others to share its transaction. One commit per request costs
# far more than the insert; this is also the longest a SIGKILL can take records with it (plus
# the commit itself): see docs/performance.md.
BATCH_INTERVAL_S = 0.025
ALREADY_COUNTED = Price(None, "no_usage", "usage already recorded under the same dedupe key")

INSERT_REQUEST = """
INSERT OR IGNORE INTO requests (
    id, ts, day, provider, model, endpoint, method, status, streamed, outcome, key_name,
    ttfb_ms, latency_ms, usage_known, input_tokens, cached_tokens, cache_write_tokens,
    cache_write_1h_tokens, output_tokens, reasoning_tokens, units, price_context, dedupe_key,
    reported_cost_usd, cost_nanousd, cost_source, price_detail
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
INSERT_TAG = "INSERT OR IGNORE INTO request_tags (request_id, name, value) VALUES (?, ?, ?)"
SEEN_DEDUPE_KEY = "SELECT 1 FROM requests WHERE dedupe_key = ? AND usage_known = 1 LIMIT 1"


def record_row(record: UsageRecord, price: Price) -> tuple[object, ...]:
    reading = record.reading
    usage = reading.usage
    counts = (
        (
            usage.input_tokens,
            usage.cached_tokens,
            usage.cache_write_tokens,
            usage.cache_write_1h_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
        )
        if usage
        else (0, 0, 0, 0, 0, 0)
    )
    return (
        record.id,
        record.started_at,
        datetime.fromtimestamp(record.started_at).date().isoformat(),
        record.provider,
        reading.model or record.model,
        record.endpoint,
        record.method,
        record.status,
        int(record.streamed),
        str(record.outcome),
        record.key_name,
        record.ttfb_ms,
        record.latency_ms,
        int(usage is not None),
        *counts,
        json.dumps(dict(usage.units)) if usage and usage.units else None,
        json.dumps(dict(reading.price_context)) if reading.price_context else None,
        reading.dedupe_key,
        str(reading.reported_cost_usd) if reading.reported_cost_usd is not None else None,
        price.cost_nanousd,
        price.source,
        price.detail,
    )


class RecordWriter:
    def __init__(
        self,
        db_path: Path,
        *,
        pricer: Callable[[UsageRecord], Price] = price_record,
        batch_size: int = 1000,
        batch_interval_s: float = BATCH_INTERVAL_S,
        max_queue: int = 100_000,
        retry_max_s: float = 5.0,
    ) -> None:
        self._db_path = db_path
        self._pricer = pricer
        self._batch_size = batch_size
        self._batch_interval_s = batch_interval_s
        self._retry_max_s = retry_max_s
        self._max_queue = max_queue
        # A deque, not a queue.Queue: append and popleft are atomic under the GIL, so submitting
        # takes no lock and wakes no thread; the writer looks every batch interval instead.
        self._pending: deque[UsageRecord] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meterfox-writer", daemon=True)
        self._deadline: float | None = None
        self.written = 0
        self.dropped = 0
        self.failing_since: float | None = None

    @property
    def queued(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        connect(self._db_path).close()  # create and migrate now, so errors surface at start-up
        self._thread.start()

    def submit(self, record: UsageRecord) -> None:
        """Queue a record without blocking. A full queue (the disk has refused writes for a
        long time) drops the record and counts it: forwarding never stops for storage."""
        if len(self._pending) >= self._max_queue:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("record queue full: %d records dropped so far", self.dropped)
            return
        self._pending.append(record)

    def close(self, timeout: float = 30.0) -> None:
        """Commit everything queued, then stop. Blocks: call it off the event loop."""
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self._thread.join(timeout + 1)

    def _run(self) -> None:
        conn = connect(self._db_path)
        try:
            stopping = False
            while not stopping:
                stopping = self._stop.wait(self._batch_interval_s)
                while self._pending:
                    batch = self._take()
                    if not self._commit_with_retry(conn, batch):
                        log.error("gave up on %d records: database refused writes", len(batch))
                        break
            if self._pending:
                log.error("%d records were not written before shutdown", len(self._pending))
        finally:
            conn.close()

    def _take(self) -> list[UsageRecord]:
        pending = self._pending
        return [pending.popleft() for _ in range(min(self._batch_size, len(pending)))]

    def _commit_with_retry(self, conn: sqlite3.Connection, batch: list[UsageRecord]) -> bool:
        rows = [(record, self._price(record)) for record in batch]
        delay = 0.05
        while True:
            try:
                self._commit(conn, rows)
            except sqlite3.Error as exc:
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                    log.error("cannot write records (%s); %d waiting, retrying", exc, len(batch))
                if self._deadline is not None and time.monotonic() > self._deadline:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            if self.failing_since is not None:
                log.warning(
                    "writing records again after %.1fs", time.monotonic() - self.failing_since
                )
                self.failing_since = None
            self.written += len(batch)
            return True

    def _price(self, record: UsageRecord) -> Price:
        try:
            return self._pricer(record)
        except Exception:
            log.exception("pricing failed for %s; recorded as unpriced", record.id)
            return UNPRICED

    @staticmethod
    def _commit(conn: sqlite3.Connection, rows: list[tuple[UsageRecord, Price]]) -> None:
        with transaction(conn):
            rows = counted_once(conn, rows)
            conn.executemany(INSERT_REQUEST, [record_row(r, p) for r, p in rows])
            conn.executemany(
                INSERT_TAG, [(r.id, name, value) for r, _ in rows for name, value in r.tags]
            )


def counted_once(
    conn: sqlite3.Connection, rows: list[tuple[UsageRecord, Price]]
) -> list[tuple[UsageRecord, Price]]:
    """Rows whose dedupe key already has usage (stored, or earlier in this batch) lose theirs.

    The request is still recorded, with `usage_known = 0`, zero tokens and no cost, so a
    Replicate prediction polled twice is billed once. Runs inside the write transaction.
    """
    seen: set[str] = set()
    out = []
    for record, price in rows:
        key = record.reading.dedupe_key
        if key is not None and record.reading.usage is not None:
            if key in seen or conn.execute(SEEN_DEDUPE_KEY, (key,)).fetchone():
                reading = replace(record.reading, usage=None, reported_cost_usd=None)
                record, price = replace(record, reading=reading), ALREADY_COUNTED
            seen.add(key)
        out.append((record, price))
    return out
