"""The local outbox of a PostgreSQL ledger: a SQLite file in the data dir (owner-only) where
each record waits, as the row the ledger will store, until a PostgreSQL commit holds it; and
the drain, the thread that moves it there.

Guarantees (tests/store/test_outbox.py, tests/cli/test_outbox_serve.py):
- Write-ahead: with a PostgreSQL ledger, the record writer puts every batch here (a local
  commit, no network), never straight into PostgreSQL. Once `put` returns, the records survive
  SIGTERM or SIGKILL of the daemon and PostgreSQL being away, slow or restarted: they stay in
  this file until a commit in PostgreSQL holds them. (As durable as the local SQLite ledger:
  WAL, synchronous=NORMAL, so a power cut may take the last commits; a dead process never.)
- The drain sends them oldest first, each exactly once: the insert skips a record id the
  ledger already has (ON CONFLICT DO NOTHING on its primary key), and a record leaves the
  outbox only after the commit that holds it. A crash between the two sends it again; the
  ledger skips it.
- The drain runs on its own thread: a ledger that is away or slow holds up only the drain,
  never the record writer or the proxy. On start it drains what a previous run left.
- A record PostgreSQL refuses for its data (not for being away) is dropped, counted and logged,
  as the record writer does: retried, it would hold back every later record forever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from meterfox_cli.errors import StoreError
from meterfox_cli.store.backend import Ledger
from meterfox_cli.store.db import create_owner_only, use_wal
from meterfox_cli.store.dialect import LedgerConnection
from meterfox_cli.store.faults import Faults
from meterfox_cli.store.rows import Row, Tag, counted_once, insert_rows
from meterfox_cli.store.sqlite import is_passing_sqlite

log = logging.getLogger("meterfox.outbox")

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order records were put: drained oldest first
    row TEXT NOT NULL,  -- the `requests` row, a JSON object by column name
    tags TEXT NOT NULL  -- its tags, a JSON list of [name, value]
)
"""
IDLE_WAKE_S = 1.0  # the drain looks at the outbox this often even when nothing wakes it
RETRY_FIRST_S = 0.05


@dataclass(frozen=True, slots=True)
class Waiting:
    """The oldest records in the outbox: the `seq` range they hold, their rows and tags."""

    first: int
    last: int
    rows: list[Row]
    tags: list[Tag]


class OutboxFile:
    """One connection to the outbox file (each thread opens its own)."""

    def __init__(self, path: Path, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        try:
            create_owner_only(path)
            self._conn = sqlite3.connect(  # made by `start`, used by the drain's thread
                path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
            use_wal(self._conn, busy_timeout_ms / 1000)
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute(OUTBOX_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the outbox {path}: {exc}") from exc

    def put(self, records: Sequence[tuple[Row, Sequence[tuple[str, str]]]]) -> None:
        """Keep (row, its tags) pairs, in one transaction: all of them or, on error, none."""
        values = [(json.dumps(row), json.dumps(list(tags))) for row, tags in records]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany("INSERT INTO outbox (row, tags) VALUES (?, ?)", values)
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def oldest(self, limit: int) -> Waiting | None:
        """Up to `limit` of the oldest records; None when the outbox is empty."""
        found = self._conn.execute(
            "SELECT seq, row, tags FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        if not found:
            return None
        rows = [json.loads(row) for _, row, _ in found]
        tags = [
            (row["id"], name, value)
            for row, (_, _, pairs) in zip(rows, found, strict=True)
            for name, value in json.loads(pairs)
        ]
        return Waiting(found[0][0], found[-1][0], rows, tags)

    def remove(self, waiting: Waiting) -> None:
        """Forget records once a ledger commit holds them."""
        self._conn.execute(
            "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (waiting.first, waiting.last)
        )

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


def waiting_in(path: Path) -> int:
    """How many records the outbox at `path` holds (0 when there is none), read-only: for
    `meterfox doctor`, while a daemon may be writing it."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    except sqlite3.OperationalError:  # created but never given its table
        return 0
    finally:
        conn.close()


class Outbox:
    """The outbox of one daemon: `put` (called by the record writer's thread) keeps records in
    the file; the drain thread moves them into the ledger, in batches, oldest first.

    `waiting` counts the records in the outbox; `caught_up` is False from the first failure
    until a read of the outbox finds less than a batch (the backlog is gone): `health` says
    `degraded` meanwhile. `faults` says since when and why the ledger refuses.
    """

    def __init__(
        self,
        path: Path,
        ledger: Ledger,
        *,
        batch_size: int = 1000,
        retry_max_s: float = 5.0,
        busy_timeout_ms: int = 5000,
        on_connect: Callable[[LedgerConnection], None] | None = None,
    ) -> None:
        self.path = path
        self._ledger = ledger
        self._batch_size = batch_size
        self._retry_max_s = retry_max_s
        self._busy_timeout_ms = busy_timeout_ms
        self._on_connect = on_connect  # a test hook: runs on each new ledger connection
        self._thread = threading.Thread(target=self._run, name="meterfox-drain", daemon=True)
        self._spool: OutboxFile | None = None  # the record writer's connection
        self._file: OutboxFile | None = None  # the drain's
        self._counting = threading.Lock()
        self._more = threading.Event()
        self._closing = threading.Event()
        self._deadline = float("inf")
        self._conn: LedgerConnection | None = None
        # `waiting` = found at start + put since - removed since (put and found: under the lock).
        self._found = 0
        self._put = 0
        self._removed = 0
        self.drained = 0
        self.dropped = 0
        self.caught_up = True
        self.faults = Faults(
            log, "write records to the ledger", "draining the outbox", lambda: self.waiting
        )

    @property
    def waiting(self) -> int:
        return self._found + self._put - self._removed

    def start(self) -> None:
        """Open the file (created, in WAL mode, before the record writer's first batch: two
        connections setting it up at once may find it locked) and start the drain. A file that
        cannot be opened yet is logged; the drain keeps trying."""
        try:
            self._file = self._open_file()
        except StoreError as exc:
            self.faults.failing(exc)
        self._thread.start()

    def put(self, records: Sequence[tuple[Row, Sequence[tuple[str, str]]]]) -> None:
        """Keep (row, its tags) pairs in the file, in one transaction, and wake the drain.
        Called from one thread (the record writer's); an error (StoreError, sqlite3.Error)
        means none was kept."""
        if self._spool is None:
            self._spool = OutboxFile(self.path, self._busy_timeout_ms)
        with self._counting:
            self._spool.put(records)
            self._put += len(records)
        self._more.set()

    def close_spool(self) -> None:
        """Close the record writer's connection (from its thread, when it stops)."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def close(self, deadline: float) -> None:
        """Drain what the outbox holds until it is empty, the ledger fails, or the monotonic
        `deadline` passes; then stop. Whatever is left stays in the outbox for the next start."""
        self._deadline = deadline
        self._closing.set()
        self._more.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()) + 1)

    def _run(self) -> None:
        outbox = self._file
        try:
            if outbox is None:
                outbox = self._open()
            if outbox is not None:
                self._drain(outbox)
        except Exception as exc:  # a bug, or an outbox file that is not one: said, not hidden
            log.exception(
                "the outbox drain stopped; %d records wait in %s", self.waiting, self.path
            )
            self.caught_up = False
            self.faults.failing(exc)
        finally:
            if outbox is not None:
                outbox.close()
            if self._conn is not None:
                self._conn.close()

    def _open(self) -> OutboxFile | None:
        """The outbox, retried while it cannot be opened; None if the close deadline passes
        first."""
        delay = RETRY_FIRST_S
        while time.monotonic() < self._deadline:
            try:
                return self._open_file()
            except StoreError as exc:
                self.faults.failing(exc)
            time.sleep(delay)
            delay = min(delay * 2, self._retry_max_s)
        return None

    def _open_file(self) -> OutboxFile:
        outbox = OutboxFile(self.path, self._busy_timeout_ms)
        try:
            with self._counting:  # what is put so far is in the file
                self._found = outbox.count() - self._put
        except sqlite3.Error as exc:
            outbox.close()
            raise StoreError(f"cannot read the outbox {self.path}: {exc}") from exc
        return outbox

    def _drain(self, outbox: OutboxFile) -> None:
        delay = RETRY_FIRST_S
        while time.monotonic() < self._deadline:
            closing = self._closing.is_set()  # before the read: then the outbox is complete
            self._more.clear()
            try:
                moved = self._move(outbox)
            except Exception as exc:
                if not self._is_passing(exc):
                    raise
                self.caught_up = False
                self.faults.failing(exc)
                self._reconnect()
                if closing or self._closing.wait(delay):
                    return  # stopping: what is left stays in the outbox
                delay = min(delay * 2, self._retry_max_s)
                continue
            delay = RETRY_FIRST_S
            self.faults.recovered()
            if moved < self._batch_size:
                self.caught_up = True
                if closing:
                    return
                self._more.wait(IDLE_WAKE_S)

    def _move(self, outbox: OutboxFile) -> int:
        """Commit the oldest batch to the ledger, then remove it from the outbox; its size."""
        waiting = outbox.oldest(self._batch_size)
        if waiting is None:
            return 0
        if self._conn is None:
            self._conn = self._ledger.open_writer(self._busy_timeout_ms)
            if self._on_connect is not None:
                self._on_connect(self._conn)
        try:
            self._commit(waiting.rows, waiting.tags)
        except Exception as exc:
            if self._is_passing(exc):
                raise
            self._commit_each(waiting, exc)
        else:
            self.drained += len(waiting.rows)
        outbox.remove(waiting)
        self._removed += len(waiting.rows)
        return len(waiting.rows)

    def _commit(self, rows: list[Row], tags: list[Tag]) -> None:
        with self._ledger.transaction(self._conn):
            insert_rows(self._conn, counted_once(self._conn, rows), tags)

    def _commit_each(self, waiting: Waiting, exc: Exception) -> None:
        """A batch failed for its data: commit its records one at a time; drop (count, log)
        only those the ledger refuses. A passing fault meanwhile stops this: retried later."""
        log.error(
            "a batch of %d records failed (%r); writing them one by one", len(waiting.rows), exc
        )
        for row in waiting.rows:
            tags = [tag for tag in waiting.tags if tag[0] == row["id"]]
            try:
                self._commit([row], tags)
            except Exception as each:
                if self._is_passing(each):
                    raise
                self.dropped += 1
                log.error("record %s dropped: the ledger refused it (%r)", row["id"], each)
            else:
                self.drained += 1

    def _is_passing(self, exc: BaseException) -> bool:
        """A fault of the ledger or of the outbox file that may pass."""
        return self._ledger.is_passing(exc) or is_passing_sqlite(exc)

    def _reconnect(self) -> None:
        """After a fault the next batch goes on a new connection: one the fault left half-way
        (a pipeline the server hung up on in the middle) is never reused."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
