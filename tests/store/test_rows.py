"""A record ⇄ its `requests` row: every column written by name, and read back to what was
recorded (each count distinct, so two columns swapped cannot pass)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def test_the_columns_an_insert_may_leave_out_are_null_by_default(conn):
    """rows._insert_runs leaves a NULL_DEFAULT column out of the INSERT when the row's value is
    None: only right if the column is nullable with no default (else it would not be NULL)."""
    from meterfox_cli.store.rows import NULL_DEFAULT

    info = {row[1]: row for row in conn.execute("PRAGMA table_info(requests)")}
    for name in NULL_DEFAULT:
        _, _, _, not_null, default, _ = info[name]
        assert (not_null, default) == (0, None), name


def test_runs_of_rows_with_nones_in_other_places_keep_their_order(conn):
    """Consecutive rows alike in their Nones share an INSERT; each run is inserted in turn,
    so every row is stored as given and the rowids follow the batch."""
    rows = [
        (
            record(
                id=f"r{n}",
                ttfb_ms=None if n % 3 else 1.5,
                model=None,
                reading=replace(READING, dedupe_key=None, model=None if n == 4 else "m"),
            ),
            PRICE,
        )
        for n in range(9)
    ]
    with transaction(conn):
        insert_records(conn, rows)
    stored = conn.execute("SELECT id, ttfb_ms, model FROM requests ORDER BY rowid").fetchall()
    assert stored == [(r.id, r.ttfb_ms, r.reading.model or r.model) for r, _ in rows]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=8), max_size=4))
def test_the_rowids_of_a_batch_are_those_sqlite_gave(conn, batches):
    """A batch stored whole has its rowids worked out (last + 1, …), not read back: they are
    the ones SQLite gave, as read back, batch after batch, with ids repeated in a batch and
    sent again (those batches are read back)."""
    from meterfox_cli.store.rows import _inserted_sqlite

    conn.execute("DELETE FROM requests")
    for ids in batches:
        rows = [
            request_row(record(id=i, reading=replace(READING, dedupe_key=None)), PRICE) for i in ids
        ]
        with transaction(conn):
            (last,) = conn.execute("SELECT IFNULL(max(rowid), 0) FROM requests").fetchone()
            inserted = _inserted_sqlite(conn, rows, last)
            stored = conn.execute(
                "SELECT rowid, id FROM requests WHERE rowid > ? ORDER BY rowid", (last,)
            ).fetchall()
        assert inserted == stored
