"""The record writer: one thread that commits records in batches, to the ledger itself (the
SQLite file) or, for a PostgreSQL ledger, to its local outbox (store/outbox.py), whose drain
takes them on to the ledger. It depends on store/backend.Ledger, never on a backend.

Guarantee: every record `submit`ted before `close()` returns is committed (to the ledger, or
to the outbox, which keeps it until the ledger has it), unless the database refuses writes for
longer than the close deadline (then the loss is logged with its count). While the database
is locked or the disk is full, records wait in a bounded queue and the writer retries with
backoff; the proxy never waits on disk, nor on a PostgreSQL server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from meterfox_cli.errors import StoreError
from meterfox_cli.pricing.book import price_record
from meterfox_cli.pricing.quote import UNPRICED, Price
from meterfox_cli.records import UsageRecord
from meterfox_cli.store.backend import Ledger, as_ledger
from meterfox_cli.store.db import BUSY_TIMEOUT_MS
from meterfox_cli.store.dialect import LedgerConnection
from meterfox_cli.store.faults import Faults
from meterfox_cli.store.observers import InWriter, Observers, RecordObserver
from meterfox_cli.store.outbox import Outbox
from meterfox_cli.store.rows import (
    ALREADY_COUNTED,
    counted_once,
    insert_rows,
    record_tags,
    request_row,
)
from meterfox_cli.store.sqlite import is_passing_sqlite

log = logging.getLogger("meterfox.writer")

# How long a record may wait for others to share its transaction. One commit per request costs
# far more than the insert; this (plus the commit itself, and any wait for a busy CPU) is the
# longest a SIGKILL can take records with it: see docs/performance.md.
BATCH_INTERVAL_S = 0.025


class RecordWriter:
    """Commits submitted records from one thread, in batches of whatever is queued.

    A record waits in memory from `submit` until its batch commits: that is the window a
    SIGKILL can lose (measured in docs/performance.md, "Load"). A database that cannot be
    opened, is locked or is full only delays records; `failing_since` and `last_error` say so
    (the health endpoint shows them), and the log says so when it starts and when it ends.

    With `outbox` (the file's path; for a PostgreSQL ledger), batches commit to the outbox,
    always (write-ahead: a record is as safe as in the SQLite file as soon as its batch is
    there), and the outbox's own thread drains them into the ledger.
    """

    def __init__(
        self,
        ledger: Path | Ledger,
        *,
        pricer: Callable[[UsageRecord], Price] = price_record,
        batch_size: int = 1000,
        batch_interval_s: float = BATCH_INTERVAL_S,
        max_queue: int = 100_000,
        retry_max_s: float = 5.0,
        busy_timeout_s: float = BUSY_TIMEOUT_MS / 1000,
        on_connect: Callable[[LedgerConnection], None] | None = None,
        host: str = "",
        outbox: Path | None = None,
    ) -> None:
        """`host`: the name each record is stored with (`report --by host`); `outbox`: the
        file records wait in for the ledger (None: they go to it directly)."""
        self._ledger = as_ledger(ledger)
        self._host = host
        self._pricer = pricer
        self._batch_size = batch_size
        self._retry_max_s = retry_max_s
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._on_connect = on_connect  # a test hook: runs on each new connection
        self._batch_interval_s = batch_interval_s
        self._max_queue = max_queue
        # A deque, not a queue.Queue: append and popleft are atomic under the GIL, so submitting
        # takes no lock and wakes no thread; the writer looks every batch interval instead.
        self._pending: deque[UsageRecord] = deque()
        self._thread = threading.Thread(target=self._run, name="meterfox-writer", daemon=True)
        self._closing = threading.Event()
        self._deadline: float | None = None
        self._conn: LedgerConnection | None = None
        self._in_hand = 0  # records of the batch being written (retried while the DB refuses)
        self._written = 0
        self._dropped = 0
        self._faults = Faults(log, "write records", "writing records again", lambda: self.queued)
        self._observers = Observers()
        self._outbox = None
        if outbox is not None:
            self._outbox = Outbox(
                outbox,
                self._ledger,
                batch_size=batch_size,
                retry_max_s=retry_max_s,
                busy_timeout_ms=self._busy_timeout_ms,
                on_connect=on_connect,
            )
        self.max_batch = 0
        self.max_commit_lag_s = 0.0

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def db_path(self) -> Path:
        return ledger_file(self._ledger)

    @property
    def queued(self) -> int:
        """Records accepted but not yet committed (to the ledger, or to its outbox)."""
        return len(self._pending) + self._in_hand

    @property
    def waiting(self) -> int | None:
        """Records in the outbox, not yet in the ledger; None without an outbox."""
        return None if self._outbox is None else self._outbox.waiting

    @property
    def written(self) -> int:
        """Records committed to the ledger."""
        drained = 0 if self._outbox is None else self._outbox.drained
        return self._written + drained

    @property
    def dropped(self) -> int:
        """Records lost: the queue was full, or the ledger refused them for their data."""
        refused = 0 if self._outbox is None else self._outbox.dropped
        return self._dropped + refused

    @property
    def failing_since(self) -> float | None:
        """Since when (monotonic) records cannot be written, to the ledger or its outbox."""
        if self._faults.failing_since is not None or self._outbox is None:
            return self._faults.failing_since
        return self._outbox.faults.failing_since

    @property
    def last_error(self) -> str | None:
        if self._faults.last_error is not None or self._outbox is None:
            return self._faults.last_error
        return self._outbox.faults.last_error

    @property
    def healthy(self) -> bool:
        """Records reach the ledger as they come: no failure now, and no backlog left by one
        in the outbox."""
        caught_up = self._outbox is None or self._outbox.caught_up
        return self.failing_since is None and caught_up

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        """Open (create, migrate) the database and start the thread. A database that cannot be
        opened yet is logged, not fatal: the thread keeps trying while records queue. With an
        outbox, its drain starts too (taking on what a previous run left)."""
        if self._outbox is not None:
            self._outbox.start()
        else:
            try:
                self._conn = self._connect()
            except StoreError as exc:
                self._faults.failing(exc)
        self._thread.start()

    def add_observer(self, observer: RecordObserver | InWriter) -> None:
        """Show `observer` every batch committed from now on (on this writer's thread; an
        `InWriter` is built here). Register before `start`."""
        self._observers.add(observer)

    def close_observers(self) -> None:
        """Let each observer flush and stop; after `close`, so it has seen every record."""
        self._observers.close()

    def submit(self, record: UsageRecord) -> None:
        """Queue a record without blocking. A full queue (the disk has refused writes for a
        long time) drops the record and counts it: forwarding never stops for storage."""
        if len(self._pending) >= self._max_queue:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.error("record queue full: %d records dropped so far", self._dropped)
            return
        self._pending.append(record)

    def close(self, timeout: float = 30.0) -> None:
        """Commit everything queued, then stop. Blocks: call it off the event loop. Returns
        within about `timeout` seconds even if the database refuses every write. With an
        outbox: what the ledger has not taken by then stays there for the next start."""
        self._deadline = time.monotonic() + timeout
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout + self._busy_timeout_ms / 1000 + 1)
        elif self._conn is not None:  # never started
            self._conn.close()
        if self._outbox is not None:
            self._outbox.close(self._deadline)

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                stopping = self._closing.wait(self._batch_interval_s)
                while self._pending:
                    batch = self._take()
                    if not self._write(batch):
                        lost = len(batch) + self._discard_queue()
                        log.error(
                            "gave up on %d records at shutdown: database refused writes", lost
                        )
                        return
        finally:
            if self._conn is not None:
                self._conn.close()
            if self._outbox is not None:
                self._outbox.close_spool()

    def _take(self) -> list[UsageRecord]:
        pending = self._pending
        return [pending.popleft() for _ in range(min(self._batch_size, len(pending)))]

    def _write(self, batch: list[UsageRecord]) -> bool:
        """Commit one batch, retrying while the database refuses; False only when the close
        deadline passes first."""
        self._in_hand = len(batch)
        try:
            rows = [(record, self._price(record)) for record in batch]
            delay = 0.05
            while True:
                try:
                    stored = self._store(rows)
                except Exception as exc:
                    if not self._is_passing(exc):
                        self._store_each(rows, exc)
                        return True
                    self._faults.failing(exc)
                    self._drop_if_lost()
                    if self._deadline is not None and time.monotonic() > self._deadline:
                        return False
                    time.sleep(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                self._faults.recovered()
                if self._outbox is None:
                    self._written += len(rows)
                self._note_batch(rows)
                self._observers.notify(stored)
                return True
        finally:
            self._in_hand = 0

    def _note_batch(self, rows: list[tuple[UsageRecord, Price]]) -> None:
        """The largest batch and the longest a record waited from its response's end (when
        it was submitted) to its commit: what a SIGKILL at the worst moment would lose."""
        submitted = min(record.started_at + record.latency_ms / 1000 for record, _ in rows)
        self.max_commit_lag_s = max(self.max_commit_lag_s, time.time() - submitted)
        self.max_batch = max(self.max_batch, len(rows))

    def _store(self, rows: list[tuple[UsageRecord, Price]]) -> list[tuple[UsageRecord, Price]]:
        """Commit `rows` to the outbox if there is one, else to the ledger; the rows as stored
        (for the observers). Through the outbox, a duplicate keeps its usage here: the drain
        removes it in the ledger."""
        if self._outbox is not None:
            self._outbox.put([(request_row(r, p, self._host), r.tags) for r, p in rows])
            return rows
        if self._conn is None:
            self._conn = self._connect()
        return self._commit(self._conn, rows)

    def _is_passing(self, exc: BaseException) -> bool:
        """A fault of the outbox file or the ledger, as a whole, that may pass."""
        if self._outbox is not None:
            return is_passing_sqlite(exc)
        return self._ledger.is_passing(exc)

    def _store_each(self, rows: list[tuple[UsageRecord, Price]], exc: Exception) -> None:
        """A batch failed for its data, not the database: write its records one at a time and
        drop (count, log) only those the database cannot take. Never retried: it would fail
        forever and hold every later record back."""
        log.error("a batch of %d records failed (%r); writing them one by one", len(rows), exc)
        for row in rows:
            try:
                stored = self._store([row])
            except Exception as each:
                self._dropped += 1
                log.error("record %s dropped: the database refused it (%r)", row[0].id, each)
            else:
                if self._outbox is None:  # else the drain counts it, once in the ledger
                    self._written += 1
                self._observers.notify(stored)

    def _connect(self) -> LedgerConnection:
        conn = self._ledger.open_writer(self._busy_timeout_ms)
        if self._on_connect is not None:
            self._on_connect(conn)
        return conn

    def _drop_if_lost(self) -> None:
        """A connection the server has dropped (a PostgreSQL restart) is closed, so the next
        attempt connects afresh; a SQLite connection is kept (it recovers from a lock)."""
        if self._conn is not None and self._ledger.is_lost(self._conn):
            self._conn.close()
            self._conn = None

    def _discard_queue(self) -> int:
        count = len(self._pending)
        self._pending.clear()
        return count

    def _price(self, record: UsageRecord) -> Price:
        try:
            return self._pricer(record)
        except Exception:
            log.exception("pricing failed for %s; recorded as unpriced", record.id)
            return UNPRICED

    def _commit(
        self, conn: LedgerConnection, rows: list[tuple[UsageRecord, Price]]
    ) -> list[tuple[UsageRecord, Price]]:
        """Insert `rows` in one transaction; the rows as stored (for the observers)."""
        with self._ledger.transaction(conn):
            built = [request_row(record, price, self._host) for record, price in rows]
            stored = counted_once(conn, built)
            insert_rows(conn, stored, record_tags(r for r, _ in rows))
        return [
            pair if row["usage_known"] or pair[0].reading.usage is None else _as_stored(pair)
            for pair, row in zip(rows, stored, strict=True)
        ]


def ledger_file(ledger: Ledger) -> Path:
    """The SQLite file a writer writes to (a PostgreSQL ledger has none)."""
    path = getattr(ledger, "path", None)
    if path is None:
        raise StoreError(f"the writer writes to {ledger.describe()}, not a file")
    return path


def _as_stored(pair: tuple[UsageRecord, Price]) -> tuple[UsageRecord, Price]:
    """A record whose stored row has no usage though the record has (its usage was already
    counted under the same dedupe key) as the row holds it: without usage, ALREADY_COUNTED."""
    record = pair[0]
    reading = replace(record.reading, usage=None, reported_cost_usd=None)
    return replace(record, reading=reading), ALREADY_COUNTED
