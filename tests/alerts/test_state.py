"""The alert state table: a threshold is claimed once per rule and period, by whichever
connection (or daemon) comes first, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

from meterfox_cli.alerts.rules import Standing, budget_alert
from meterfox_cli.alerts.state import already_fired, claim, history
from meterfox_cli.store.db import connect, transaction
from meterfox_cli.store.postgres import PostgresLedger
from tests.fakes.records import at

USD = 10**9


def alert(spend: int, period_start: str = "2026-11-01 00:00", end: str = "2026-12-01 00:00"):
    standing = Standing(
        rule="key:alice",
        subject="proxy key 'alice'",
        spend_nanousd=spend,
        budget_nanousd=10 * USD,
        period="month",
        period_start=at(period_start),
        period_end=at(end),
        command="meterfox report --key alice",
    )
    return budget_alert(standing, 80, at("2026-11-20 00:00"))


def test_a_threshold_is_claimed_once_per_rule_and_period(conn):
    with transaction(conn):
        assert claim(conn, alert(8 * USD), [50, 80]) == [50, 80]
    other = connect(Path(conn.execute("PRAGMA database_list").fetchone()[2]))
    with transaction(other):
        assert claim(other, alert(9 * USD), [50, 80, 100]) == [100]  # another connection
        assert claim(other, alert(9 * USD), [100]) == []
    other.close()
    with transaction(conn):  # the next period starts afresh
        assert claim(conn, alert(6 * USD, "2026-12-01 00:00", "2027-01-01 00:00"), [50]) == [50]
    assert already_fired(conn, "key:alice", "2026-11-01") == {50, 80, 100}
    fired = history(conn)
    assert sorted((f.period_start, f.threshold) for f in fired) == [
        ("2026-11-01", 50),
        ("2026-11-01", 80),
        ("2026-11-01", 100),
        ("2026-12-01", 50),
    ]
    assert {f.threshold: f.spend_nanousd for f in fired if f.period_start == "2026-11-01"} == {
        50: 8 * USD,
        80: 8 * USD,
        100: 9 * USD,
    }


def test_on_postgresql_two_daemons_of_one_ledger_claim_a_threshold_once(pg_url):
    ledger = PostgresLedger(pg_url)
    ledger.migrate()
    first, second = ledger.open_writer(), ledger.open_writer()
    try:
        with ledger.transaction(first):
            assert claim(first, alert(8 * USD), [50, 80]) == [50, 80]
        with ledger.transaction(second):
            assert claim(second, alert(8 * USD), [50, 80]) == []
        assert already_fired(second, "key:alice", "2026-11-01") == {50, 80}
        assert [f.threshold for f in history(second)] == [80, 50]
    finally:
        first.close()
        second.close()
