"""Shared reservations (keys/reservations.py) on both stores: a reservation counts until its
request's record is inserted (then the record's cost does, once), expires if no record comes,
and many connections reserving at once for one key never pass its budget together."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterfox_cli.keys.reservations import reserve, settle, spent_and_held, sweep
from meterfox_cli.pricing.quote import Price
from meterfox_cli.store.backend import Ledger
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.sqlite import SqliteLedger
from tests.fakes.records import usage_record
from tests.store.test_contract import write

SINCE = 0.0  # the period start: every record below is in it
HOLD_S = 60.0


@pytest.fixture(params=("sqlite", "postgresql"))
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        ledger: Ledger = SqliteLedger(tmp_path / "ledger.db")
    else:
        ledger = PostgresLedger(request.getfixturevalue("pg_url"))
    ledger.migrate()
    yield ledger


def take(conn, request_id: str, nanousd: int, budget: int, now: float) -> int | None:
    return reserve(
        conn,
        request_id=request_id,
        key_name="app",
        nanousd=nanousd,
        budget_nanousd=budget,
        since=SINCE,
        now=now,
        hold_s=HOLD_S,
    )


def test_a_reservation_counts_until_its_record_lands_then_the_record_counts_once(
    ledger: Ledger,
) -> None:
    conn = ledger.open_writer(1000)
    now = time.time()
    try:
        assert take(conn, "r1", 1_000, 2_500, now) is None
        assert take(conn, "r2", 1_000, 2_500, now) is None
        assert take(conn, "r3", 1_000, 2_500, now) == 2_000  # refused: nothing written
        assert spent_and_held(conn, "app", SINCE, now) == 2_000
        first = usage_record(id="r1", key_name="app", started_at=now)
        write(ledger, [first], {"r1": _price(30)})
        # r1's reservation went in the record's transaction: its real cost counts instead.
        assert spent_and_held(conn, "app", SINCE, now) == 30 + 1_000
        assert take(conn, "r3", 1_000, 2_500, now) is None
        other = usage_record(key_name="other", started_at=now)
        write(ledger, [other], {other.id: _price(5)})  # another key's record: no change here
        assert spent_and_held(conn, "app", SINCE, now) == 30 + 2_000
    finally:
        conn.close()


def test_a_reservation_whose_request_never_records_expires_and_is_swept(ledger: Ledger) -> None:
    conn = ledger.open_writer(1000)
    now = time.time()
    try:
        assert take(conn, "lost", 1_000, 1_000, now) is None
        assert take(conn, "next", 1, 1_000, now + HOLD_S - 1) == 1_000  # still held
        assert spent_and_held(conn, "app", SINCE, now + HOLD_S) == 0  # expired: not counted
        assert take(conn, "next", 1_000, 1_000, now + HOLD_S) is None
        assert sweep(conn, now + HOLD_S) == 1  # "lost" deleted; "next" lives on
        assert sweep(conn, now + HOLD_S) == 0
        assert spent_and_held(conn, "app", SINCE, now + HOLD_S) == 1_000
    finally:
        conn.close()


def test_eight_connections_reserving_at_once_admit_no_more_than_the_budget(
    ledger: Ledger,
) -> None:
    """Each of 8 connections (as 8 workers or daemons) tries 10 reservations of 100 against a
    budget of 1,000: exactly 10 are admitted. (On PostgreSQL without the per-key lock, read
    committed lets two admissions read the same sum and both insert.)"""
    conns = [ledger.open_writer(5000) for _ in range(8)]
    admitted: list[str] = []
    start = threading.Barrier(len(conns))

    def worker(number: int, conn) -> None:
        start.wait()
        for i in range(10):
            request_id = f"w{number}-{i}"
            if take(conn, request_id, 100, 1_000, time.time()) is None:
                admitted.append(request_id)

    threads = [threading.Thread(target=worker, args=(n, c)) for n, c in enumerate(conns)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert len(admitted) == 10
        assert spent_and_held(conns[0], "app", SINCE, time.time()) == 1_000
    finally:
        for conn in conns:
            conn.close()


def _price(nanousd: int) -> Price:
    return Price(nanousd, "computed")


def test_a_settled_reservation_holds_the_real_cost_until_its_record_lands(ledger: Ledger) -> None:
    """A request that ended cheaply frees the rest of its worst case at once, not when the
    record writer gets to it; its record then replaces it, counting the cost once."""
    conn = ledger.open_writer(1000)
    now = time.time()
    try:
        assert take(conn, "done", 1_000, 1_500, now) is None
        assert take(conn, "next", 1_000, 1_500, now) == 1_000
        settle(conn, "done", 30)
        assert spent_and_held(conn, "app", SINCE, now) == 30
        assert take(conn, "next", 1_000, 1_500, now) is None
        write(
            ledger, [usage_record(id="done", key_name="app", started_at=now)], {"done": _price(30)}
        )
        assert spent_and_held(conn, "app", SINCE, now) == 30 + 1_000
        settle(conn, "done", 99)  # the record is in: nothing left to lower
        assert spent_and_held(conn, "app", SINCE, now) == 30 + 1_000
    finally:
        conn.close()
