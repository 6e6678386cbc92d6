"""A billable unit seen in several responses (a Replicate prediction polled twice) is counted
once: every request is recorded, but only the first record with a dedupe key keeps usage."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest

from meterfox_cli.records import UsageRecord
from meterfox_cli.store.db import connect
from meterfox_cli.store.writer import RecordWriter
from meterfox_cli.usage import Reading, Usage
from tests.conftest import read_records
from tests.fakes.records import usage_record

USAGE = Usage(input_tokens=12, output_tokens=2, units=(("seconds", 0.5),))


def record(key: str | None, usage: Usage | None = USAGE, cost: Decimal | None = None):
    return usage_record(
        provider="replicate",
        model="meta/meta-llama-3-8b-instruct",
        endpoint="/v1/predictions/p1",
        method="GET",
        reading=Reading(model=None, usage=usage, reported_cost_usd=cost, dedupe_key=key),
    )


def write(db_path, batches: list[list[UsageRecord]]) -> list[sqlite3.Row]:
    for batch in batches:
        writer = RecordWriter(db_path)
        writer.start()
        for item in batch:
            writer.submit(item)
        writer.close()
    return read_records(db_path)


def counted(rows) -> list[tuple[int, int, int]]:
    return [(r["usage_known"], r["input_tokens"], r["output_tokens"]) for r in rows]


def test_same_key_in_one_batch_keeps_usage_once(tmp_path):
    rows = write(tmp_path / "db.sqlite", [[record("replicate:p1"), record("replicate:p1")]])
    assert len(rows) == 2
    assert sorted(counted(rows)) == [(0, 0, 0), (1, 12, 2)]
    duplicate = next(r for r in rows if r["usage_known"] == 0)
    assert duplicate["dedupe_key"] == "replicate:p1"
    assert duplicate["cost_source"] == "no_usage" and duplicate["units"] is None


def test_same_key_across_batches_and_restarts_keeps_usage_once(tmp_path):
    rows = write(tmp_path / "db.sqlite", [[record("replicate:p1")], [record("replicate:p1")]])
    assert counted(rows) == [(1, 12, 2), (0, 0, 0)]


def test_a_record_without_usage_does_not_claim_the_key(tmp_path):
    polls = [record("replicate:p1", usage=None), record("replicate:p1"), record("replicate:p1")]
    rows = write(tmp_path / "db.sqlite", [polls])
    assert counted(rows) == [(0, 0, 0), (1, 12, 2), (0, 0, 0)]


def test_different_keys_and_records_without_a_key_are_all_kept(tmp_path):
    batch = [record("replicate:p1"), record("replicate:p2"), record(None), record(None)]
    rows = write(tmp_path / "db.sqlite", [batch])
    assert counted(rows) == [(1, 12, 2)] * 4


def test_the_database_refuses_a_second_usage_row_for_a_key(tmp_path):
    """The unique partial index (migration 002) holds the rule even for another writer."""
    conn = connect(tmp_path / "db.sqlite")
    try:
        insert = (
            "INSERT INTO requests (id, ts, day, provider, endpoint, method, status, streamed,"
            " outcome, key_name, latency_ms, usage_known, dedupe_key)"
            " VALUES (?, 0, '1970-01-01', 'replicate', '/', 'GET', 200, 0, 'ok', 'k', 1, ?, ?)"
        )
        conn.execute(insert, ("a", 1, "replicate:p1"))
        conn.execute(insert, ("b", 0, "replicate:p1"))  # a duplicate without usage is fine
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(insert, ("c", 1, "replicate:p1"))
    finally:
        conn.close()
