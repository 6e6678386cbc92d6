"""Reservations shared through the ledger: a budgeted request's worst case, held in the
`key_reservations` table from its admission until its record is inserted, so every worker and
every daemon on one ledger admits against the same sum.

Admission is one write transaction: the key's recorded spend this period, plus its live
reservations, plus this request's worst case, within the budget → a reservation row; else
nothing is written. SQLite's BEGIN IMMEDIATE serialises it with every other writer; on
PostgreSQL a transaction-scoped advisory lock per key name serialises the admissions of one
key (the record writer does not take it: its insert moves a cost from reserved to spent in one
transaction, and the sum is read in one statement, so either side of it is consistent).
When the request ends, its reservation is lowered to its real cost (`settle`, not awaited), and
the record's insert deletes it (a trigger, store/migrations.py 013), so nothing counts twice. A request that never records stops counting at `expires_at`, and `sweep` deletes
such rows. Blocking: call from a thread, never the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from meterfox_cli.config import Timeouts
from meterfox_cli.keys.budget import SPEND_SQL, spend_parameters
from meterfox_cli.store.backend import Ledger as StoreLedger
from meterfox_cli.store.dialect import LedgerConnection, dialect_of, write_transaction

log = logging.getLogger("meterfox.keys")

# Taken first in the admission's transaction, per dialect (SQLite's BEGIN IMMEDIATE already
# holds the one write lock). The lock goes at COMMIT or ROLLBACK.
_KEY_LOCK_SQL = {"postgresql": "SELECT pg_advisory_xact_lock(hashtext(CAST(? AS TEXT)))"}
_SPENT_AND_HELD_SQL = (
    f"SELECT {SPEND_SQL} + (SELECT COALESCE(SUM(nanousd), 0) FROM key_reservations "
    "WHERE key_name = ? AND expires_at > ?)"
)
_INSERT_SQL = (
    "INSERT INTO key_reservations (request_id, key_name, nanousd, expires_at) VALUES (?, ?, ?, ?)"
)


def hold_seconds(timeouts: Timeouts) -> float:
    """How long a reservation counts: the longest an admitted request can wait for its
    response to begin (connect + first_byte), plus one idle gap (a response that goes quiet
    that long is cut). A request still streaming after that stops being reserved; its record
    counts when it ends."""
    return timeouts.connect + timeouts.first_byte + timeouts.idle


HOLD_S = hold_seconds(Timeouts())


def reserve(
    conn: LedgerConnection,
    *,
    request_id: str,
    key_name: str,
    nanousd: int,
    budget_nanousd: int,
    since: float,
    now: float,
    hold_s: float = HOLD_S,
) -> int | None:
    """Reserve `nanousd` for `request_id` if the key's spend since `since`, plus its live
    reservations, plus `nanousd` stays within `budget_nanousd`: None. Otherwise write nothing
    and return what the key has spent and reserved."""
    lock = _KEY_LOCK_SQL.get(dialect_of(conn).name)
    with write_transaction(conn):
        if lock is not None:
            conn.execute(lock, (key_name,))
        held = spent_and_held(conn, key_name, since, now)
        if held + nanousd > budget_nanousd:
            return held
        conn.execute(_INSERT_SQL, (request_id, key_name, nanousd, now + hold_s))
    return None


def spent_and_held(conn: LedgerConnection, key_name: str, since: float, now: float) -> int:
    """A key's recorded spend since `since` plus its reservations live at `now`, read in one
    statement (one snapshot on either store)."""
    parameters = (*spend_parameters(key_name, since), key_name, now)
    return int(conn.execute(_SPENT_AND_HELD_SQL, parameters).fetchone()[0])


def settle(conn: LedgerConnection, request_id: str, nanousd: int) -> None:
    """The request ended, costing `nanousd`: its reservation holds that until its record is
    inserted (which deletes it), so the next admission need not wait for the record writer.
    Nothing when the record is in already."""
    conn.execute(
        "UPDATE key_reservations SET nanousd = ? WHERE request_id = ?", (nanousd, request_id)
    )


def release(conn: LedgerConnection, request_id: str) -> None:
    """Drop a reservation whose request will not record (refused after all, or cancelled)."""
    conn.execute("DELETE FROM key_reservations WHERE request_id = ?", (request_id,))


def sweep(conn: LedgerConnection, now: float) -> int:
    """Delete the reservations that expired (their requests never recorded); how many."""
    cursor = conn.execute("DELETE FROM key_reservations WHERE expires_at <= ?", (now,))
    return max(cursor.rowcount, 0)


class Reserver:
    """One thread and one ledger connection of its own that take this process's reservations,
    in order, so the event loop only awaits them."""

    def __init__(self, ledger: StoreLedger, hold_s: float = HOLD_S) -> None:
        self._ledger = ledger
        self.hold_s = hold_s
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="meterfox-reserve")
        self._conn: LedgerConnection | None = None

    async def reserve(
        self, *, request_id: str, key_name: str, nanousd: int, budget_nanousd: int, since: float
    ) -> int | None:
        """`reserve` in the thread, at the time it runs there. Cancelled, the reservation may
        still be taken: `release_soon` it (the thread runs both in order)."""
        job = partial(
            self._on_thread,
            reserve,
            request_id=request_id,
            key_name=key_name,
            nanousd=nanousd,
            budget_nanousd=budget_nanousd,
            since=since,
            hold_s=self.hold_s,
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    def release_soon(self, request_id: str) -> None:
        """Drop a reservation from the thread, after whatever it is doing (from any thread)."""
        self._soon(_release_at, request_id=request_id)

    def settle_soon(self, request_id: str, nanousd: int) -> None:
        """Lower a reservation to its request's real cost, from the thread, before any later
        reservation this process takes (from any thread)."""
        self._soon(_settle_at, request_id=request_id, nanousd=nanousd)

    def _soon(self, action: Callable[..., None], **arguments: Any) -> None:
        with contextlib.suppress(RuntimeError):  # shut down: the row expires instead
            self._executor.submit(self._quietly, action, **arguments)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._executor.submit(self._close_connection)
        self._executor.shutdown(wait=True)

    def _on_thread(self, action: Callable[..., Any], **arguments: Any) -> Any:
        if self._conn is None or self._ledger.is_lost(self._conn):
            self._close_connection()
            self._conn = self._ledger.open_writer()
        try:
            return action(self._conn, now=time.time(), **arguments)
        except Exception:
            if self._ledger.is_lost(self._conn):
                self._close_connection()
            raise

    def _quietly(self, action: Callable[..., None], **arguments: Any) -> None:
        try:
            self._on_thread(action, **arguments)
        except Exception as exc:  # the row goes with its record, or expires
            log.warning("cannot update a reservation in the ledger (%s)", exc)

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _release_at(conn: LedgerConnection, *, now: float, request_id: str) -> None:
    release(conn, request_id)


def _settle_at(conn: LedgerConnection, *, now: float, request_id: str, nanousd: int) -> None:
    settle(conn, request_id, nanousd)
