"""A blank database migrated to the latest schema has exactly the expected tables and columns."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading

import pytest

from meterfox_cli.store.db import connect, migrate
from meterfox_cli.store.migrations import MIGRATIONS
from meterfox_cli.store.outbox import OutboxFile

REQUEST_COLUMNS = [
    "id", "ts", "day", "provider", "model", "endpoint", "method", "status", "streamed",
    "outcome", "key_name", "ttfb_ms", "latency_ms", "usage_known", "input_tokens",
    "cached_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens",
    "reasoning_tokens", "units", "price_context", "dedupe_key", "reported_cost_usd",
    "cost_nanousd", "cost_source", "price_detail", "host",
]  # fmt: skip


def test_blank_database_gets_every_migration_once(tmp_path):
    conn = connect(tmp_path / "m.db")
    names = [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY rowid")]
    assert names == [name for name, _ in MIGRATIONS]
    assert migrate(conn) == []  # idempotent
    columns = [row[1] for row in conn.execute("PRAGMA table_info(requests)")]
    assert columns[: len(REQUEST_COLUMNS)] == REQUEST_COLUMNS
    tag_columns = [row[1] for row in conn.execute("PRAGMA table_info(request_tags)")]
    assert tag_columns == ["request_id", "name", "value"]
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"requests_ts", "requests_day", "request_tags_name"} <= indexes


def test_database_is_wal_and_owner_only(tmp_path):
    path = tmp_path / "m.db"
    conn = connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("INSERT INTO _migrations VALUES ('probe', 0)")
    for file in tmp_path.iterdir():
        assert stat.S_IMODE(os.stat(file).st_mode) == 0o600, file.name


@pytest.mark.parametrize("opener", [connect, OutboxFile], ids=["database", "outbox"])
def test_a_fresh_file_another_connection_is_writing_is_waited_for_not_refused(tmp_path, opener):
    """Two daemons creating one database at the same moment: the second's switch to WAL met the
    first's write lock on the still rollback-mode file, and SQLite refused it at once ("database
    is locked") instead of waiting out the busy timeout. It waits now, like any other write."""
    path = tmp_path / "m.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE first (a)")  # the other daemon, half-way through creating it
    threading.Timer(0.3, other.execute, ("COMMIT",)).start()
    opener(path).close()
    other.close()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert check.execute("SELECT count(*) FROM first").fetchone() == (0,)
    finally:
        check.close()


def test_billed_tables_hold_every_bucket_field_and_no_secret(tmp_path):
    from meterfox_cli.store.billed import COLUMNS

    conn = connect(tmp_path / "m.db")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(billed_buckets)")]
    assert columns == [*COLUMNS, "synced_at"]
    state = [row[1] for row in conn.execute("PRAGMA table_info(sync_state)")]
    assert state == ["provider", "synced_from", "synced_until", "synced_at"]
    assert not any("key" in name and name != "api_key_id" for name in columns + state)


def test_alert_state_is_one_row_per_rule_period_and_threshold(tmp_path):
    conn = connect(tmp_path / "m.db")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(alerts_fired)")]
    assert columns == [
        "rule", "period_start", "threshold", "fired_at", "spend_nanousd", "budget_nanousd",
        "message",
    ]  # fmt: skip
    key = [row[1] for row in conn.execute("PRAGMA table_info(alerts_fired)") if row[5]]
    assert key == ["rule", "period_start", "threshold"]
