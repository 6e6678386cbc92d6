"""The PostgreSQL ledger's migrations: a blank database migrated equals the expected schema;
migrating again does nothing; a ledger behind or ahead is refused in one sentence."""

from __future__ import annotations

import psycopg
import pytest

from meterfox_cli.errors import StoreError
from meterfox_cli.store.migrations import (
    HOST_DAY_ROLLUP_KEYS,
    ROLLUP_KEYS,
    ROLLUP_SUMS,
    TAG_ROLLUP_KEYS,
)
from meterfox_cli.store.pg_migrations import PG_MIGRATIONS
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.rows import REQUEST_COLUMNS

TEXT, BIGINT, INT, REAL = "text", "bigint", "integer", "double precision"
SUMS = {name: BIGINT for name, _ in ROLLUP_SUMS}
REQUESTS = {
    "rowid": BIGINT, "id": TEXT, "ts": REAL, "day": TEXT, "provider": TEXT, "model": TEXT,
    "endpoint": TEXT, "method": TEXT, "status": INT, "streamed": INT, "outcome": TEXT,
    "key_name": TEXT, "ttfb_ms": REAL, "latency_ms": REAL, "usage_known": INT,
    "input_tokens": BIGINT, "cached_tokens": BIGINT, "cache_write_tokens": BIGINT,
    "cache_write_1h_tokens": BIGINT, "output_tokens": BIGINT, "reasoning_tokens": BIGINT,
    "units": TEXT, "price_context": TEXT, "dedupe_key": TEXT, "reported_cost_usd": TEXT,
    "cost_nanousd": BIGINT, "cost_source": TEXT, "price_detail": TEXT, "host": TEXT,
}  # fmt: skip
EXPECTED = {
    "_migrations": {"name": TEXT, "applied_at": REAL},
    "requests": REQUESTS,
    "request_tags": {"request_id": TEXT, "name": TEXT, "value": TEXT},
    "request_rollup": {
        **{name: BIGINT if name == "hour" else TEXT for name, _ in ROLLUP_KEYS},
        **{name: BIGINT for name, _ in ROLLUP_SUMS},
    },
    # SQLite's columns, in SQLite's order (store/rollups.py writes both with one UPSERT)
    "day_rollup": {
        **{name: BIGINT if name == "utc_day" else TEXT for name, _ in HOST_DAY_ROLLUP_KEYS},
        **SUMS,
    },
    "tag_rollup": {
        **{name: BIGINT if name == "utc_day" else TEXT for name, _ in TAG_ROLLUP_KEYS},
        "tagset": TEXT,
        **SUMS,
    },
    "billed_buckets": {
        "provider": TEXT, "bucket_start": BIGINT, "bucket_end": BIGINT, "model": TEXT,
        "project_id": TEXT, "workspace_id": TEXT, "api_key_id": TEXT, "service_tier": TEXT,
        "batch": TEXT, "requests": BIGINT, "input_tokens": BIGINT, "cached_tokens": BIGINT,
        "cache_write_tokens": BIGINT, "cache_write_1h_tokens": BIGINT, "output_tokens": BIGINT,
        "reasoning_tokens": BIGINT, "cost_nanousd": BIGINT, "cost_source": TEXT,
        "synced_at": REAL,
    },
    "sync_state": {
        "provider": TEXT, "synced_from": BIGINT, "synced_until": BIGINT, "synced_at": REAL,
    },
    "alerts_fired": {
        "rule": TEXT, "period_start": TEXT, "threshold": INT, "fired_at": REAL,
        "spend_nanousd": BIGINT, "budget_nanousd": BIGINT, "message": TEXT,
    },
    "proxy_keys": {
        "id": BIGINT, "name": TEXT, "prefix": TEXT, "key_hash": "bytea", "providers": TEXT,
        "tags": TEXT, "created_at": REAL, "expires_at": REAL, "revoked_at": REAL,
        "budget_nanousd": BIGINT, "budget_period": TEXT, "allow_unpriced": INT,
    },
    "key_state": {"id": INT, "version": BIGINT},
    "key_spend": {"key_name": TEXT, "hour": BIGINT, "cost_nanousd": BIGINT},
    "key_reservations": {
        "request_id": TEXT, "key_name": TEXT, "nanousd": BIGINT, "expires_at": REAL,
    },
    # SQLite's 015 columns, and the sampled request's tags (a JSON object)
    "latency_sample": {
        "id": TEXT, "seq": BIGINT, "ts": REAL, "day": TEXT, "provider": TEXT, "model": TEXT,
        "key_name": TEXT, "endpoint": TEXT, "host": TEXT, "latency_ms": REAL, "ttfb_ms": REAL,
        "tags": "jsonb",
    },
}  # fmt: skip
EXPECTED_INDEXES = {
    "requests_pkey", "requests_rowid_key", "requests_ts", "requests_day", "requests_key_ts",
    "requests_latency", "requests_dedupe", "request_tags_pkey", "request_tags_name",
    "request_rollup_pkey", "day_rollup_pkey", "tag_rollup_pkey",
    "_migrations_pkey", "billed_buckets_pkey", "sync_state_pkey",
    "alerts_fired_pkey",
    "proxy_keys_pkey", "proxy_keys_key_hash_key",
    "proxy_keys_live_name", "key_state_pkey", "key_spend_pkey",
    "key_reservations_pkey", "key_reservations_key",
    "latency_sample_pkey", "latency_sample_ts",
}  # fmt: skip


def schema(url: str) -> dict[str, dict[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ).fetchall()
    tables: dict[str, dict[str, str]] = {}
    for table, column, kind in rows:
        tables.setdefault(table, {})[column] = kind
    return tables


def indexes(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        return {name for (name,) in rows}


def test_a_blank_database_migrated_has_the_expected_schema(pg_url: str) -> None:
    applied = PostgresLedger(pg_url).migrate()
    assert applied == [name for name, _ in PG_MIGRATIONS]
    assert schema(pg_url) == EXPECTED
    assert indexes(pg_url) == EXPECTED_INDEXES
    # Every column the writer inserts exists, in the SQLite table's order after the rowid.
    assert tuple(EXPECTED["requests"])[1:] == REQUEST_COLUMNS


def test_the_key_tables_have_sqlites_columns_in_sqlites_order(pg_url: str, tmp_path) -> None:
    """The keys code runs the same SQL on both stores: the same columns, in the same order."""
    from meterfox_cli.store.db import connect

    PostgresLedger(pg_url).migrate()
    conn = connect(tmp_path / "ledger.db")
    try:
        for table in ("proxy_keys", "key_state", "key_spend", "key_reservations"):
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            assert columns == list(EXPECTED[table]), table
    finally:
        conn.close()


def test_migrating_twice_applies_nothing_the_second_time(pg_url: str) -> None:
    ledger = PostgresLedger(pg_url)
    ledger.migrate()
    assert ledger.migrate() == []
    assert ledger.pending() == ([], [])


def test_a_ledger_behind_is_refused_with_the_command_to_run(pg_url: str) -> None:
    ledger = PostgresLedger(pg_url)
    with pytest.raises(StoreError, match=r"behind .*run `meterfox db migrate`"):
        ledger.check()


def test_a_ledger_ahead_is_refused(pg_url: str) -> None:
    ledger = PostgresLedger(pg_url)
    ledger.migrate()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO _migrations VALUES ('999_from_the_future', 0)")
    with pytest.raises(StoreError, match=r"999_from_the_future.*upgrade meterfox"):
        ledger.check()


def test_an_unreachable_server_is_a_store_error_with_the_password_masked(pg_server) -> None:
    url = f"postgresql://meterfox:hunter2@127.0.0.1:{pg_server.port}/no_such_database"
    with pytest.raises(StoreError) as caught:
        PostgresLedger(url).check()
    assert "hunter2" not in str(caught.value)
    assert "meterfox:***@127.0.0.1" in str(caught.value)
