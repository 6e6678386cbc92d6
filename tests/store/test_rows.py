"""A record ⇄ its `requests` row: every column written by name, and read back to what was
recorded (each count distinct, so two columns swapped cannot pass)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

from meterfox_cli.pricing.quote import UNPRICED, Price
from meterfox_cli.records import Outcome
from meterfox_cli.store import feed
from meterfox_cli.store.costs import find_request
from meterfox_cli.store.db import transaction
from meterfox_cli.store.rows import INT64_MAX, REQUEST_COLUMNS, insert_records, request_row
from meterfox_cli.store.select import TimeRange
from meterfox_cli.usage import Reading, Usage
from tests.fakes.records import usage_record

USAGE = Usage(
    input_tokens=101,
    cached_tokens=23,
    cache_write_tokens=17,
    cache_write_1h_tokens=5,
    output_tokens=47,
    reasoning_tokens=11,
    units=(("web_searches", 2.0), ("input_audio_tokens", 9.0)),
)
READING = Reading(
    model="gpt-4o-2024-08-06",
    usage=USAGE,
    reported_cost_usd=Decimal("0.000123456789"),
    price_context=(("service_tier", "flex"),),
    dedupe_key="prediction-1",
)
PRICE = Price(123_456, "provider", '{"note": "reported"}')


def record(**fields: object):
    defaults: dict[str, object] = {
        "id": "0190abcdef01234567890",
        "started_at": 1_790_000_000.25,
        "endpoint": "/v1/responses",
        "status": 201,
        "streamed": True,
        "outcome": Outcome.CLIENT_CLOSED,
        "key_name": "app",
        "ttfb_ms": 12.5,
        "latency_ms": 340.0,
        "reading": READING,
        "tags": (("feature", "search"), ("env", "prod")),
    }
    return usage_record(**{**defaults, **fields})


def store(conn, *rows) -> None:
    with transaction(conn):
        insert_records(conn, list(rows))


def test_the_insert_names_every_column_of_the_table(conn):
    columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(requests)"))
    assert columns == REQUEST_COLUMNS


def test_a_row_has_exactly_one_value_per_column_with_usage_or_without():
    with_usage = request_row(record(), PRICE)
    without = request_row(record(reading=Reading(model="m")), UNPRICED)
    assert list(with_usage) == list(without) == list(REQUEST_COLUMNS)


def test_a_stored_request_reads_back_what_was_recorded(conn):
    store(conn, (record(), PRICE))
    stored = find_request(conn, "0190abcdef01234567890")
    assert (stored.id, stored.ts, stored.provider, stored.model) == (
        "0190abcdef01234567890",
        1_790_000_000.25,
        "openai",
        "gpt-4o-2024-08-06",
    )
    assert (stored.endpoint, stored.status, stored.outcome) == (
        "/v1/responses",
        201,
        "client_closed",
    )
    assert stored.reading == Reading(
        model="gpt-4o-2024-08-06",
        usage=USAGE,
        reported_cost_usd=Decimal("0.000123456789"),
        price_context=(("service_tier", "flex"),),
    )  # the dedupe key is written (the store enforces it) but not read back
    assert (stored.cost_nanousd, stored.cost_source, stored.price_detail) == (
        123_456,
        "provider",
        '{"note": "reported"}',
    )


def test_a_request_without_usage_reads_back_without_usage(conn):
    store(conn, (record(reading=Reading(model="m")), UNPRICED))
    stored = find_request(conn, "0190abcdef01234567890")
    assert stored.reading == Reading(model="m")
    assert (stored.cost_nanousd, stored.cost_source) == (None, "unpriced")
    (line,) = feed.latest(conn, 5)
    assert line.usage_known is False and line.input_tokens == line.output_tokens == 0


def test_a_request_line_reads_back_what_was_recorded(conn):
    store(conn, (record(), PRICE))
    (line,) = feed.export_rows(conn, TimeRange())
    assert line.rowid == 1
    assert (line.id, line.ts, line.provider, line.model) == (
        "0190abcdef01234567890",
        1_790_000_000.25,
        "openai",
        "gpt-4o-2024-08-06",
    )
    assert (line.endpoint, line.method, line.status, line.outcome) == (
        "/v1/responses",
        "POST",
        201,
        "client_closed",
    )
    assert line.streamed is True and line.usage_known is True
    assert (line.key_name, line.ttfb_ms, line.latency_ms) == ("app", 12.5, 340.0)
    tokens = (
        line.input_tokens,
        line.cached_tokens,
        line.cache_write_tokens,
        line.output_tokens,
        line.reasoning_tokens,
    )
    assert tokens == (101, 23, 17, 47, 11)
    assert (line.cost_nanousd, line.cost_source) == (123_456, "provider")
    assert json.loads(line.tags) == {"feature": "search", "env": "prod"}
    (tail_line,) = feed.latest(conn, 5)
    assert tail_line == replace(line, tags="{}")  # tail reads no tags


def test_counts_and_costs_beyond_sqlite_integers_are_clamped():
    huge = Usage(input_tokens=2**70, output_tokens=-(2**70))
    row = request_row(record(reading=Reading(usage=huge)), Price(2**80, "computed"))
    assert (row["input_tokens"], row["output_tokens"]) == (INT64_MAX, -INT64_MAX)
    assert row["cost_nanousd"] == INT64_MAX


def test_every_none_of_a_row_is_stored_as_null(conn):
    """store/db registers an adapter for None (binding it costs far less that way): each None a
    row holds is stored as SQL NULL, through execute and executemany alike."""
    import sqlite3

    assert (type(None), sqlite3.PrepareProtocol) in sqlite3.adapters
    bare = record(model=None, ttfb_ms=None, reading=Reading())
    with transaction(conn):
        insert_records(conn, [(bare, UNPRICED)])
    row = request_row(bare, UNPRICED)
    nulls = [name for name in REQUEST_COLUMNS if row[name] is None]
    assert {"ttfb_ms", "units", "price_context", "dedupe_key", "cost_nanousd"} <= set(nulls)
    kinds = conn.execute(
        f"SELECT {', '.join(f'typeof({n})' for n in nulls)} FROM requests WHERE id = ?",
        (bare.id,),
    ).fetchone()
    assert set(kinds) == {"null"}
    assert conn.execute("SELECT typeof(?)", (None,)).fetchone() == ("null",)
