"""The ledger contract, one suite run against both backends (SQLite and a real PostgreSQL):
records go in through the record writer, reports come out through `read_report`, and both
stores must give the same rows, so they cannot drift apart. Proxy keys and budgets live in the
ledger too: `keys` functions and the spend budgets read behave the same on both."""

from __future__ import annotations

import contextlib
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import astuple, replace
from functools import partial
from pathlib import Path

import psycopg
import pytest

from meterfox_cli.errors import KeyError_, MeterFoxError
from meterfox_cli.keys.authorizer import KeyAuthorizer
from meterfox_cli.keys.budget import Period, SpendCounter, parse_budget, spend_since
from meterfox_cli.keys.proxy_keys import (
    KeySpec,
    all_keys,
    create_key,
    hash_secret,
    list_keys,
    listing_fields,
    revoke_key,
    rotate_key,
    set_budget,
)
from meterfox_cli.money import from_nanousd
from meterfox_cli.pricing.book import PriceBook
from meterfox_cli.pricing.quote import Price
from meterfox_cli.proxy.auth import Credential
from meterfox_cli.records import Outcome, UsageRecord
from meterfox_cli.store import feed, latency
from meterfox_cli.store.backend import Ledger
from meterfox_cli.store.billed import (
    BilledBucket,
    proxied_by_utc_day,
    read_buckets,
    replace_window,
    snapshot,
    sync_states,
    synced_until,
)
from meterfox_cli.store.costs import find_request, reprice
from meterfox_cli.store.dialect import POSTGRES, SQLITE, LedgerConnection, write_transaction
from meterfox_cli.store.dimensions import parse_dimensions
from meterfox_cli.store.latency import SAMPLE_TABLE_EVERY
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.queries import Report, read_report
from meterfox_cli.store.rollups import KEY_SPEND, REQUEST_ROLLUP, fine_key, row_sums, summed
from meterfox_cli.store.rows import (
    REQUEST_COLUMNS,
    TAG_COLUMNS,
    RequestLine,
    insert_records,
    record_tags,
    request_row,
)
from meterfox_cli.store.select import Filters, TimeRange
from meterfox_cli.store.sqlite import SqliteLedger
from meterfox_cli.store.writer import RecordWriter
from meterfox_cli.usage import Reading, Usage
from tests.fakes.records import Req, at, usage_record
from tests.store.summed import assert_summed

BACKENDS = ("sqlite", "postgresql")
DAY_S = 86400
DOLLAR = 1_000_000_000
ALL = TimeRange()
# Across a day boundary and partial hours at both edges (the rollup plus raw edge rows).
EDGES = TimeRange(at("2026-11-02 09:20"), at("2026-11-04 13:40"))

REQUESTS = (
    Req(at("2026-11-02 08:59"), model="gpt-4o", input_tokens=100, output_tokens=10),
    Req(at("2026-11-02 09:30"), model="gpt-4o", cost_nano=2_500, tags=(("team", "search"),)),
    Req(at("2026-11-02 23:59"), provider="anthropic", model="claude", key="ci", cost_nano=7),
    Req(at("2026-11-03 00:00"), provider="anthropic", model="claude", key="ci", ttfb_ms=40.0),
    Req(at("2026-11-03 10:15"), model=None, status=429, outcome=Outcome.UPSTREAM_ERROR,
        cost_nano=None, latency_ms=12.5),
    Req(at("2026-11-03 11:00"), model="mini", unpriced=True, cost_nano=None,
        tags=(("team", "search"), ("feature", "chat"))),
    Req(at("2026-11-04 12:45"), provider="mistral", model="small", key="ci", cost_nano=3),
    Req(at("2026-11-04 13:39"), model="mini", cached_tokens=30, reasoning_tokens=4,
        tags=(("team", "ads"),), latency_ms=900.0),
    Req(at("2026-11-04 13:40"), model="gpt-4o", cost_nano=123_456_789),
    Req(at("2026-11-09 12:00"), provider="gemini", model="flash", key="ci", cost_nano=1),
)  # fmt: skip


@pytest.fixture(params=BACKENDS)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """An empty, migrated ledger on each backend."""
    if request.param == "sqlite":
        ledger: Ledger = SqliteLedger(tmp_path / "ledger.db")
    else:
        ledger = PostgresLedger(request.getfixturevalue("pg_url"))
    ledger.migrate()
    yield ledger


def write(
    ledger: Ledger, records: list[UsageRecord], prices: dict, host: str = "laptop-1"
) -> RecordWriter:
    """Records committed through a real RecordWriter (its batches, its dedupe, its pricer),
    as the daemon named `host`; to PostgreSQL through the outbox, as `serve` writes them."""
    with tempfile.TemporaryDirectory() as home:
        outbox = None if isinstance(ledger, SqliteLedger) else Path(home) / "outbox.sqlite"
        writer = RecordWriter(
            ledger, pricer=lambda record: prices[record.id], host=host, outbox=outbox
        )
        writer.start()
        for record in records:
            writer.submit(record)
        writer.close()
        assert writer.dropped == 0 and writer.last_error is None
        assert writer.waiting in (None, 0)  # the outbox drained at close
    return writer


def record_all(ledger: Ledger) -> None:
    """REQUESTS, the first four through a daemon named laptop-1, the rest through ci-runner."""
    records = [req.record() for req in REQUESTS]
    prices = {record.id: req.price() for record, req in zip(records, REQUESTS, strict=True)}
    assert write(ledger, records[:4], prices, host="laptop-1").written == 4
    assert write(ledger, records[4:], prices, host="ci-runner").written == len(REQUESTS) - 4


def summary(report: Report | None) -> list[tuple]:
    """Every row of a report, every field: what `meterfox report` prints and emits."""
    assert report is not None
    return [*report.rows, report.total]


def count(ledger: Ledger) -> int:
    conn = ledger.open_reader()
    if conn is None:
        return 0
    try:
        return conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    finally:
        conn.close()


def test_an_empty_ledger_reports_nothing(ledger: Ledger) -> None:
    assert read_report(ledger, ("model",), ALL) is None


@pytest.mark.parametrize("by", ["model", "provider", "day", "key", "tag:team", "host"])
def test_report_by_each_dimension_sums_as_expected(ledger: Ledger, by: str) -> None:
    record_all(ledger)
    report = read_report(ledger, parse_dimensions(by), ALL)
    assert report is not None
    assert report.total.requests == len(REQUESTS)
    assert report.total.errors == 1
    assert report.total.cost_nanousd == 1000 + 2_500 + 7 + 1000 + 3 + 1000 + 123_456_789 + 1
    assert report.total.unpriced_requests == 1
    assert sum(row.requests for row in report.rows) == len(REQUESTS)
    groups = {row.group: row.requests for row in report.rows}
    expected = {
        "model": {"gpt-4o": 3, "claude": 2, "mini": 2, "(unknown)": 1, "flash": 1, "small": 1},
        "provider": {"openai": 6, "anthropic": 2, "gemini": 1, "mistral": 1},
        "day": {"2026-11-02": 3, "2026-11-03": 3, "2026-11-04": 3, "2026-11-09": 1},
        "key": {"passthrough": 6, "ci": 4},
        "tag:team": {"search": 2, "ads": 1, "(untagged)": 7},
        "host": {"laptop-1": 4, "ci-runner": 6},
    }[by]
    assert groups == expected


@pytest.fixture
def both(tmp_path: Path, pg_url: str) -> tuple[Ledger, Ledger]:
    """The same records on both stores, side by side."""
    pair = (SqliteLedger(tmp_path / "ledger.db"), PostgresLedger(pg_url))
    for ledger in pair:
        ledger.migrate()
        record_all(ledger)
    return pair


@pytest.mark.parametrize(
    "by", ["model", "provider", "day", "key", "tag:team", "week", "month", "endpoint", "host",
           "provider,model", "day,tag:feature", "host,model"],
)  # fmt: skip
@pytest.mark.parametrize("window", [ALL, EDGES], ids=["all", "edges"])
def test_sqlite_and_postgresql_give_the_same_rows(both, by: str, window: TimeRange) -> None:
    sqlite, postgres = both
    dims = parse_dimensions(by)
    assert summary(read_report(sqlite, dims, window)) == summary(
        read_report(postgres, dims, window)
    )


@pytest.mark.parametrize(
    "filters",
    [Filters(providers=("anthropic",)), Filters(keys=("ci",)), Filters(tags=(("team", "search"),))],
)
def test_filters_give_the_same_rows_on_both(both, filters: Filters) -> None:
    sqlite, postgres = both
    dims = ("model",)
    left, right = (
        read_report(sqlite, dims, EDGES, filters),
        read_report(postgres, dims, EDGES, filters),
    )
    assert summary(left) == summary(right)
    assert left is not None and left.total.requests > 0


def test_the_same_record_twice_is_stored_once(ledger: Ledger) -> None:
    record = usage_record(started_at=at("2026-11-03 10:00"))
    price = Req(0).price()
    write(ledger, [record, record], {record.id: price})  # in one batch
    write(ledger, [record], {record.id: price})  # and again, later
    assert count(ledger) == 1
    report = read_report(ledger, ("model",), ALL)
    assert report is not None and report.total.requests == 1
    assert report.total.cost_nanousd == price.cost_nanousd


def test_a_billable_unit_seen_twice_keeps_its_usage_once(ledger: Ledger) -> None:
    usage = Usage(input_tokens=12, output_tokens=2)
    polls = [
        usage_record(reading=Reading(model="m", usage=usage, dedupe_key="replicate:p1"))
        for _ in range(3)
    ]
    prices = {poll.id: Req(0, cost_nano=500).price() for poll in polls}
    write(ledger, polls[:2], prices)
    write(ledger, polls[2:], prices)
    report = read_report(ledger, ("model",), ALL)
    assert report is not None
    assert (report.total.requests, report.total.input_tokens) == (3, 12)
    assert report.total.cost_nanousd == 500


def test_the_rollup_stays_in_step_when_rows_change(ledger: Ledger) -> None:
    """Whoever deletes or updates rows (a future `reprice` or retention), the hourly rollup the
    reports read follows, on both backends."""
    record_all(ledger)
    conn = ledger.open_writer(1000)
    try:
        with ledger.transaction(conn):
            conn.execute("UPDATE requests SET cost_nanousd = 5 WHERE model = ?", ("flash",))
            conn.execute("DELETE FROM requests WHERE provider = ?", ("anthropic",))
    finally:
        conn.close()
    report = read_report(ledger, ("provider",), ALL)
    assert report is not None
    assert {row.group: row.cost_nanousd for row in report.rows} == {
        "openai": 1000 + 2_500 + 1000 + 123_456_789,
        "gemini": 5,
        "mistral": 3,
    }
    raw = read_report(ledger, ("provider", "tag:team"), ALL)  # the requests table alone
    assert raw is not None and raw.total.cost_nanousd == report.total.cost_nanousd


def varied_requests(count: int) -> list[Req]:
    """`count` requests over two days of hours, three providers, models (one missing), three
    keys, tags or none, errors, unpriced and unusaged ones, latencies of every bucket size."""
    rng = random.Random(17)
    tag_sets = [(), (("team", "search"),), (("feature", "chat"), ("team", "ads")), (("a:b", ""),)]
    return [
        Req(
            at("2026-11-02 22:00") + rng.uniform(0, 2 * DAY_S),
            provider=rng.choice(["openai", "anthropic", "groq"]),
            model=rng.choice(["gpt-4o", "mini", None]),
            key=rng.choice(["app", "ci", "passthrough"]),
            status=rng.choice([200, 200, 200, 429]),
            input_tokens=rng.randint(0, 50_000),
            cached_tokens=rng.randint(0, 50),
            output_tokens=rng.randint(0, 5_000),
            cost_nano=rng.choice([None, rng.randint(0, 10**9), rng.randint(0, 10**12)]),
            unpriced=rng.random() < 0.5,
            latency_ms=rng.choice([0.5, 42.0, 123.4, 5_678.9, 98_765.4, 2.5e6]),
            ttfb_ms=rng.choice([None, 12.5]),
            tags=rng.choice(tag_sets),
        )
        for _ in range(count)
    ]


def test_the_rollups_are_the_requests_summed(ledger: Ledger) -> None:
    """Every table kept beside `requests` (the hourly, daily and tag rollups, key spend;
    SQLite's latency rollup and 1-in-16 latency sample) holds the GROUP BY of the requests stored, however
    they came through the writer: repeated in a batch, sent again in a later batch by another
    host, sent again with a tag more, a billable unit seen twice; a reservation goes with its
    record's insert, and only then; re-pricing, a tag's delete and deletes of tagged and
    untagged requests follow."""
    requests = varied_requests(40)
    records = [req.record() for req in requests]
    prices = {r.id: req.price() for r, req in zip(records, requests, strict=True)}
    usage = Usage(input_tokens=12, output_tokens=2)
    polls = [
        usage_record(reading=Reading(model="m", usage=usage, dedupe_key="replicate:p1"))
        for _ in range(2)
    ]
    prices |= {poll.id: Req(0, cost_nano=500).price() for poll in polls}
    conn = ledger.open_writer(1000)
    try:
        with ledger.transaction(conn):
            conn.executemany(
                "INSERT INTO key_reservations VALUES (?, 'app', 5, ?)",
                [(request_id, time.time() + 60) for request_id in [r.id for r in records[:3]]]
                + [("never-recorded", time.time() + 60)],
            )
    finally:
        conn.close()
    write(ledger, [*records[:20], records[3], records[3], polls[0]], prices, host="laptop-1")
    write(ledger, [*records[10:], polls[1]], prices, host="ci-runner")
    more = replace(records[5], tags=(*records[5].tags, ("extra", "1")))
    sampled = first_sampled(ledger, records)  # (PostgreSQL's sample holds its tags)
    again = replace(sampled, tags=(*sampled.tags, ("extra", "2")))
    write(ledger, [more, again], prices, host="ci-runner")
    assert count(ledger) == 42
    assert_summed(ledger)
    conn = ledger.open_writer(1000)
    try:
        left = conn.execute("SELECT request_id FROM key_reservations").fetchall()
        assert [row[0] for row in left] == ["never-recorded"]
        with ledger.transaction(conn):
            conn.execute("UPDATE requests SET cost_nanousd = 5 WHERE model = ?", ("mini",))
            conn.execute("UPDATE requests SET latency_ms = 7.5, ts = ts + 3600 WHERE status = 429")
        assert_summed(ledger)
        with ledger.transaction(conn):
            conn.execute("DELETE FROM request_tags WHERE name = ?", ("feature",))
            conn.execute("DELETE FROM requests WHERE key_name = ?", ("ci",))
    finally:
        conn.close()
    assert_summed(ledger)


def first_sampled(ledger: Ledger, records: list[UsageRecord]) -> UsageRecord:
    """The first of `records` stored in the latency sample (rowid a multiple of 16)."""
    conn = ledger.open_writer(1000)
    try:
        sql = f"SELECT id FROM requests WHERE rowid % {SAMPLE_TABLE_EVERY} = 0 ORDER BY rowid"
        ids = [row[0] for row in conn.execute(sql).fetchall()]
    finally:
        conn.close()
    return next(record for record in records if record.id in ids)


def test_what_an_older_meterfox_inserts_is_rolled_up_too(ledger: Ledger) -> None:
    """A meterfox from before the per-batch rollups (SQLite 016, PostgreSQL 008), still running
    when a newer one migrated the ledger, inserts plain rows (its INSERT, in its order): on
    PostgreSQL the INSERT triggers kept for it roll them up at once and settle the reservation;
    on SQLite the next batch of a current writer does. Nothing is counted twice."""
    requests = varied_requests(30)
    records = [(req.record(), req.price()) for req in requests]
    dialect = ledger.dialect
    conn = ledger.open_writer(1000)
    try:
        with ledger.transaction(conn):
            conn.execute(
                "INSERT INTO key_reservations VALUES (?, 'app', 5, ?)",
                (records[0][0].id, time.time() + 60),
            )
        rows = [[row[c] for c in REQUEST_COLUMNS] for row in (request_row(*r) for r in records)]
        statements = [
            (dialect.insert_ignoring("requests", REQUEST_COLUMNS), rows[:20]),
            (
                dialect.insert_ignoring("request_tags", TAG_COLUMNS),
                record_tags(r for r, _ in records[:20]),
            ),
        ]
        with ledger.transaction(conn):  # SQLite's writer put the tags first; PostgreSQL's could not
            for sql, values in statements[:: -1 if dialect is SQLITE else 1]:
                conn.executemany(sql, values)
        if dialect is POSTGRES:
            assert_summed(ledger)
    finally:
        conn.close()
    write(ledger, [r for r, _ in records[15:]], {r.id: p for r, p in records})
    assert count(ledger) == 30
    assert_summed(ledger)
    assert count_rows(ledger, "SELECT count(*) FROM key_reservations") == 0


def test_what_a_meterfox_keeping_only_the_hourly_rollup_inserts_is_rolled_up_too(
    pg_url: str,
) -> None:
    """PostgreSQL only: a meterfox of schema 008 still writing after a newer one migrated the
    ledger says it rolls up (`meterfox.rolls_up`) and keeps request_rollup and key_spend itself,
    per batch, but knows nothing of the daily and tag rollups (009, 010): their INSERT
    triggers roll its rows up, and its tags move its requests as they come. Nothing is counted
    twice, in its rows or in the current writer's after it."""
    ledger = PostgresLedger(pg_url)
    ledger.migrate()
    records = [(req.record(), req.price()) for req in varied_requests(30)]
    rows = [request_row(record, price, "old-laptop") for record, price in records[:20]]
    conn = ledger.open_writer(1000)
    try:
        with ledger.transaction(conn):  # as store/rows.insert_rows did at 008
            conn.execute("SELECT set_config('meterfox.rolls_up', 'on', true)")
            conn.executemany(
                POSTGRES.insert_ignoring("requests", REQUEST_COLUMNS),
                [[row[c] for c in REQUEST_COLUMNS] for row in rows],
            )
            conn.executemany(
                POSTGRES.insert_ignoring("request_tags", TAG_COLUMNS),
                record_tags(r for r, _ in records[:20]),
            )
            fine = summed((fine_key(row, ""), row_sums(row)) for row in rows)
            for rollup in (REQUEST_ROLLUP, KEY_SPEND):
                conn.executemany(rollup.upsert_sql, rollup.parameters(fine.items()))
    finally:
        conn.close()
    assert_summed(ledger)
    write(ledger, [r for r, _ in records[15:]], {r.id: p for r, p in records})
    assert count(ledger) == 30
    assert_summed(ledger)


def count_rows(ledger: Ledger, sql: str) -> int:
    conn = ledger.open_writer(1000)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def test_the_writer_reconnects_when_the_server_drops_its_connection(pg_url: str) -> None:
    """PostgreSQL only: the server ends the writer's session (as a restart does); the records
    submitted after it are written on a new connection, none lost."""
    ledger = PostgresLedger(pg_url)
    ledger.migrate()
    first, second = usage_record(), usage_record()
    writer = RecordWriter(ledger, pricer=lambda record: Req(0).price(), retry_max_s=0.2)
    writer.start()
    try:
        writer.submit(first)
        _wait(lambda: writer.written == 1)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid != pg_backend_pid()"
            ).fetchall()
        assert ended == [(True,)]  # the writer's one connection
        writer.submit(second)
        _wait(lambda: writer.written == 2)
    finally:
        writer.close(timeout=10)
    assert writer.dropped == 0
    assert count(ledger) == 2


def _wait(done, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- reads one by one, stored costs, billed buckets (tail, export, explain, reprice, sync) ---


def on(ledger: Ledger, read):
    """`read(conn)` on a read connection to the ledger."""
    conn = ledger.read_connection()
    assert conn is not None
    try:
        return read(conn)
    finally:
        conn.close()


def unnamed(lines: list[RequestLine]) -> list[RequestLine]:
    """Lines without their ids and row ids (each store numbers its own rows)."""
    return [replace(line, id="", rowid=0) for line in lines]


def test_an_unmigrated_ledger_has_nothing_to_read(tmp_path: Path, pg_url: str) -> None:
    assert SqliteLedger(tmp_path / "none.db").read_connection() is None
    assert PostgresLedger(pg_url).read_connection() is None


def test_tail_reads_lines_in_recording_order(ledger: Ledger) -> None:
    assert on(ledger, feed.last_rowid) == 0  # a migrated, empty ledger can be followed
    record_all(ledger)
    lines = on(ledger, lambda conn: feed.after(conn, 0))
    assert [line.ts for line in lines] == [req.ts for req in REQUESTS]
    assert on(ledger, feed.last_rowid) == lines[-1].rowid
    assert on(ledger, lambda conn: feed.after(conn, lines[5].rowid)) == lines[6:]
    assert on(ledger, lambda conn: feed.latest(conn, 3)) == lines[-3:]
    ci = on(ledger, lambda conn: feed.latest(conn, 10, Filters(keys=("ci",))))
    assert [line.provider for line in ci] == ["anthropic", "anthropic", "mistral", "gemini"]


def test_export_gives_the_same_lines_and_tag_texts_on_both(both) -> None:
    exported = [
        on(ledger, lambda conn: list(feed.export_rows(conn, EDGES, Filters(keys=("passthrough",)))))
        for ledger in both
    ]
    assert unnamed(exported[0]) == unnamed(exported[1])
    assert [(line.model, line.tags) for line in exported[1]] == [
        ("gpt-4o", '{"team":"search"}'),
        (None, "{}"),
        ("mini", '{"feature":"chat","team":"search"}'),  # by name, whatever the order given
        ("mini", '{"team":"ads"}'),
    ]


def test_explain_finds_a_request_by_id_or_a_unique_prefix(ledger: Ledger) -> None:
    record_all(ledger)
    lines = on(ledger, lambda conn: feed.after(conn, 0))
    target = lines[6]
    assert on(ledger, lambda conn: find_request(conn, target.id)).model == "small"
    assert on(ledger, lambda conn: find_request(conn, target.id[:-2])).id == target.id
    with pytest.raises(MeterFoxError, match="no request with id"):
        on(ledger, lambda conn: find_request(conn, "ffffffffffff"))


def test_reprice_writes_the_same_costs_on_both_and_the_rollup_follows(both) -> None:
    results = []
    for ledger in both:
        conn = ledger.open_writer()
        try:
            results.append(reprice(conn, PriceBook(), batch=3))
            again = reprice(conn, PriceBook(), dry_run=True)
        finally:
            conn.close()
        assert again.changed == 0  # every batch was kept
        report = read_report(ledger, ("model",), ALL)
        assert report is not None and report.total.cost_nanousd == results[-1].after_nanousd
    assert results[0] == results[1] and results[0].changed > 0


def test_a_failed_write_transaction_leaves_nothing(ledger: Ledger) -> None:
    conn = ledger.open_writer()
    try:
        with pytest.raises(ZeroDivisionError), write_transaction(conn):
            insert_records(conn, [(REQUESTS[0].record(), REQUESTS[0].price())])
            _ = 1 / 0
        assert not conn.in_transaction
    finally:
        conn.close()
    assert count(ledger) == 0


def bucket(provider: str, start: int, model: str, cost: int | None) -> BilledBucket:
    return BilledBucket(provider, start, start + DAY_S, model, requests=2, input_tokens=10,
                        output_tokens=3, cost_nanousd=cost, cost_source="cost_api")  # fmt: skip


def test_billed_windows_replace_alike_on_both(ledger: Ledger) -> None:
    day = int(at("2026-11-03 00:00")) // DAY_S * DAY_S
    first = [bucket("openai", day, "gpt-4o", 7), bucket("openai", day + DAY_S, "mini", None)]
    conn = ledger.open_writer()
    try:
        for _ in range(2):  # syncing a window twice leaves it once
            replace_window(conn, "openai", day, day + 2 * DAY_S, first, 1.0)
        assert snapshot(conn) == [astuple(b) for b in first]
        replace_window(conn, "openai", day - DAY_S, day, [], 2.0)  # an older window
        assert sync_states(conn) == {"openai": (day - DAY_S, day + 2 * DAY_S)}
        assert synced_until(conn, "openai") == day + 2 * DAY_S
        revised = [bucket("openai", day, "gpt-4o", 9)]
        replace_window(conn, "openai", day, day + DAY_S, revised, 3.0)
        assert [b.cost_nanousd for b in read_buckets(conn)] == [9, None]
    finally:
        conn.close()


def test_reconcile_reads_the_same_proxied_sums_on_both(both) -> None:
    sums = [
        on(ledger, lambda conn: proxied_by_utc_day(conn, None, None, ("openai", "anthropic")))
        for ledger in both
    ]
    assert sums[0] == sums[1] and sums[0]
    assert all(type(s.cost_nanousd) is int and type(s.requests) is int for s in sums[1])


def test_a_sampled_latency_pass_tops_up_thin_groups_to_the_exact_values(
    both, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a window larger than the sample limit each store samples its own way (SQLite by
    rowid, PostgreSQL by pages, in the database); groups left thin are read in full, and then
    match the exact percentiles on both."""
    exact = [read_report(ledger, ("model",), ALL) for ledger in both]
    monkeypatch.setattr(latency, "LATENCY_SAMPLE_MAX", 4)
    monkeypatch.setattr(latency, "LATENCY_MIN_SAMPLES", 2)
    for ledger, unsampled in zip(both, exact, strict=True):
        sampled = read_report(ledger, ("model",), ALL)
        assert sampled is not None and unsampled is not None
        assert sampled.sample_every == 3 and sampled.total.latency_sample_every == 3
        assert sampled.rows == unsampled.rows  # every group topped up: exact, as before


def test_a_tag_groupings_sampled_pass_reads_the_latency_sample_on_both(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a window that many times the sample limit, a grouping or filter by tag reads the
    latency sample (one request in 16, by rowid) on both stores — PostgreSQL's with the tags
    in its rows, no lookup per request — so both give the percentiles of the same requests:
    rowids 16, 32, … 160, whose latency is their rowid, tagged a and b in turn."""
    requests = [
        Req(at("2026-11-03 10:00") + i, latency_ms=float(i), ttfb_ms=float(i) / 2,
            tags=(("team", "a" if i // SAMPLE_TABLE_EVERY % 2 else "b"),))
        for i in range(1, 161)
    ]  # fmt: skip
    records = [req.record() for req in requests]
    prices = {r.id: req.price() for r, req in zip(records, requests, strict=True)}
    pair = (SqliteLedger(tmp_path / "ledger.db"), PostgresLedger(pg_url))
    for ledger in pair:
        ledger.migrate()
        write(ledger, records, prices)
    monkeypatch.setattr(latency, "LATENCY_SAMPLE_MAX", 12)  # one in 14 wanted: the sample's 16
    monkeypatch.setattr(latency, "LATENCY_MIN_SAMPLES", 1)
    team_a = Filters(tags=(("team", "a"),))
    for ledger in pair:
        by_tag = read_report(ledger, ("tag:team",), ALL)
        assert by_tag is not None and by_tag.sample_every == SAMPLE_TABLE_EVERY
        rows = {row.group: row for row in by_tag.rows}
        # a: rowids 16, 48, 80, 112, 144; b: 32, 64, 96, 128, 160 (nearest rank)
        assert (rows["a"].latency_p50_ms, rows["a"].latency_p95_ms) == (80.0, 144.0)
        assert (rows["b"].latency_p50_ms, rows["b"].ttfb_p50_ms) == (96.0, 48.0)
        assert by_tag.total.latency_p50_ms == 80.0
    assert summary(read_report(pair[0], ("day", "tag:team"), ALL)) == summary(
        read_report(pair[1], ("day", "tag:team"), ALL)
    )
    monkeypatch.setattr(latency, "LATENCY_SAMPLE_MAX", 6)  # team a's 80: one in 14 again
    for ledger in pair:
        filtered = read_report(ledger, ("model",), ALL, team_a)
        assert filtered is not None and filtered.sample_every == SAMPLE_TABLE_EVERY
        assert filtered.total.latency_p95_ms == 144.0 and filtered.total.requests == 80


# --- proxy keys and budgets: the same behaviour in either ledger ------------------------------


@pytest.fixture
def key_conn(ledger: Ledger) -> Iterator[LedgerConnection]:
    """A connection to an empty, migrated ledger, as `meterfox keys` opens one."""
    conn = ledger.open_writer(1000)
    yield conn
    conn.close()


def as_listed(conn: LedgerConnection) -> list[dict]:
    """`keys list --format json`, less what differs from run to run (times, prefixes)."""
    varying = ("prefix", "created_at", "expires_at", "revoked_at", "last_used")
    return [
        {k: v for k, v in listing_fields(item).items() if k not in varying}
        for item in list_keys(conn)
    ]


def test_keys_created_revoked_rotated_and_budgeted_list_the_same_on_both(key_conn) -> None:
    conn = key_conn
    create_key(conn, KeySpec("web", providers=("openai",), tags=(("team", "search"),)))
    create_key(conn, KeySpec("Batch", budget=parse_budget("25/month")))
    create_key(conn, KeySpec("ci", budget=parse_budget("2/day"), allow_unpriced=True))
    rotated = rotate_key(conn, "web")
    revoke_key(conn, "ci")
    set_budget(conn, "Batch", parse_budget("10/week"), allow_unpriced=True)
    with pytest.raises(KeyError_, match="a live proxy key named 'Batch' exists"):
        create_key(conn, KeySpec("Batch"))
    zero, ten, two = (str(from_nanousd(n * DOLLAR)) for n in (0, 10, 2))
    assert as_listed(conn) == [
        {"name": "Batch", "providers": [], "tags": {}, "spend_usd": zero, "spend_period": "week",
         "budget_usd": ten, "budget_period": "week", "allow_unpriced": True, "status": "active"},
        {"name": "ci", "providers": [], "tags": {}, "spend_usd": zero, "spend_period": "day",
         "budget_usd": two, "budget_period": "day", "allow_unpriced": True, "status": "revoked"},
        {"name": "web", "providers": ["openai"], "tags": {"team": "search"}, "spend_usd": zero,
         "spend_period": "month", "budget_usd": None, "budget_period": None,
         "allow_unpriced": False, "status": "active"},
    ]  # fmt: skip
    keys = all_keys(conn)
    assert [k.name for k in keys] == ["web", "Batch", "ci", "web"]  # in the order minted
    assert keys[-1] == rotated.key and keys[-1].key_hash == hash_secret(rotated.secret)
    assert keys[0].revoked_at is not None and keys[-1].revoked_at is None


def test_every_key_change_moves_the_key_version(key_conn) -> None:
    """What a daemon polls (and on PostgreSQL, what each NOTIFY carries)."""
    conn = key_conn

    def version() -> int:
        return conn.execute("SELECT version FROM key_state WHERE id = 1").fetchone()[0]

    seen = [version()]
    create_key(conn, KeySpec("app"))
    seen.append(version())
    set_budget(conn, "app", parse_budget("1/day"))
    seen.append(version())
    revoke_key(conn, "app")
    seen.append(version())
    assert seen == sorted(set(seen))  # strictly rising


def test_two_creates_of_one_name_at_once_leave_one_live_key(ledger: Ledger) -> None:
    """Each checks that the name has no live key, then inserts: the check and the insert hold
    together, so one wins and the other is told, on either store."""
    conns = [ledger.open_writer(5000) for _ in range(8)]
    outcomes: list[str] = []
    start = threading.Barrier(len(conns))

    def create(conn: LedgerConnection) -> None:
        start.wait()
        try:
            create_key(conn, KeySpec("shared"))
            outcomes.append("created")
        except KeyError_:
            outcomes.append("refused")

    threads = [threading.Thread(target=create, args=(conn,)) for conn in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for conn in conns:
        conn.close()
    assert sorted(outcomes) == ["created"] + ["refused"] * (len(conns) - 1)


def keyed(key: str, ts: float, cost: int | None) -> tuple[UsageRecord, Price]:
    record = usage_record(key_name=key, started_at=ts)
    return record, Price(cost, "computed" if cost is not None else "unpriced")


def record_priced(ledger: Ledger, rows: list[tuple[UsageRecord, Price]]) -> None:
    prices = {record.id: price for record, price in rows}
    write(ledger, [record for record, _ in rows], prices)


def test_a_keys_spend_is_kept_by_the_ledger_whoever_writes(ledger: Ledger, key_conn) -> None:
    """Spend since a period start: whole hours from the database's per-hour sums, and the
    records of a start inside an hour; reprices and deletes follow, unpriced count 0."""
    start = at("2026-11-02 09:20")  # inside an hour
    record_priced(
        ledger,
        [
            keyed("app", start - 1, 1_000),  # before the period
            keyed("app", start, 20),  # the partial hour
            keyed("app", at("2026-11-02 09:59"), 300),
            keyed("app", at("2026-11-02 10:00"), 4_000),  # whole hours from here
            keyed("app", at("2026-11-05 23:00"), 50_000),
            keyed("app", at("2026-11-05 23:30"), None),  # unpriced
            keyed("other", at("2026-11-03 10:00"), 600_000),
        ],
    )
    assert spend_since(key_conn, "app", start) == 20 + 300 + 4_000 + 50_000
    assert spend_since(key_conn, "app", at("2026-11-02 10:00")) == 54_000
    assert spend_since(key_conn, "nobody", start) == 0
    with ledger.transaction(key_conn):
        key_conn.execute("UPDATE requests SET cost_nanousd = 7 WHERE cost_nanousd = ?", (50_000,))
        key_conn.execute("DELETE FROM requests WHERE cost_nanousd = ?", (4_000,))
    assert spend_since(key_conn, "app", start) == 20 + 300 + 7


def test_the_spend_counter_says_which_of_a_daemons_own_requests_it_has_read(
    ledger: Ledger, key_conn
) -> None:
    now = time.time()
    rows = [keyed("app", now, 5), keyed("app", now, 6)]
    record_priced(ledger, rows[:1])
    counter = SpendCounter()
    pending = [rows[0][0].id, rows[1][0].id, "never-written"]
    assert counter.refresh(key_conn, {"app": Period.DAY}, now, pending) == {"app": 5}
    assert counter.counted == (rows[0][0].id,)
    record_priced(ledger, rows[1:])
    assert counter.refresh(key_conn, {"app": Period.DAY}, now, pending) == {"app": 11}
    assert sorted(counter.counted) == sorted([rows[0][0].id, rows[1][0].id])


@pytest.fixture
def daemon(ledger: Ledger, tmp_path: Path) -> Iterator[Callable[..., KeyAuthorizer]]:
    """A daemon's key check on this ledger (its provider-key index in a local file of its own),
    started; closed after the test."""
    started: list[KeyAuthorizer] = []

    def start(**kwargs: object) -> KeyAuthorizer:
        local = tmp_path / f"daemon-{len(started)}.db"
        authorizer = KeyAuthorizer(local, _no_key_store, key_ledger=ledger, **kwargs)
        authorizer.start()
        started.append(authorizer)
        return authorizer

    yield start
    for authorizer in started:
        authorizer.close()


def _no_key_store():
    raise AssertionError("no provider key is stored: the key store is never needed")


def kind(authorizer: KeyAuthorizer, secret: str) -> str | None:
    """Why the daemon refuses `secret` now (None: it accepts it)."""
    decision = authorizer.decide("openai", Credential("authorization", "Bearer ", secret))
    return None if decision.error_kind == "provider_key_missing" else decision.error_kind


def wait_for(done: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until `done()`; fails past `timeout_s`."""
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s} s"
        time.sleep(0.005)
    return time.monotonic() - started


def test_a_key_revoked_elsewhere_is_refused_by_a_running_daemon_within_a_second(
    ledger: Ledger, key_conn, daemon
) -> None:
    """SQLite by polling; PostgreSQL by a NOTIFY the moment the revoke commits (and polling)."""
    new = create_key(key_conn, KeySpec("app"))
    first, second = daemon(), daemon()
    assert kind(first, new.secret) is None and kind(second, new.secret) is None
    revoke_key(key_conn, "app")
    for each in (first, second):
        revoked = partial(lambda d: kind(d, new.secret) == "proxy_key_revoked", each)
        assert wait_for(revoked, 1.0) < 1.0
    pushed = first.stats()["key_changes_pushed"]
    assert (pushed > 0) is (ledger.dialect.name == "postgresql")


def test_a_daemon_keeps_the_budgets_of_keys_changed_elsewhere(key_conn, daemon) -> None:
    new = create_key(key_conn, KeySpec("app", budget=parse_budget("1/day")))
    check = daemon()
    set_budget(key_conn, "app", None)
    wait_for(lambda: "app" not in check.snapshot.budgeted, 1.0)
    set_budget(key_conn, "app", parse_budget("3/day"))
    wait_for(lambda: "app" in check.snapshot.budgeted, 1.0)
    assert check.snapshot.budgeted["app"].budget == parse_budget("3/day")
    assert kind(check, new.secret) is None


def test_when_the_listening_connection_drops_polling_carries_revokes_until_it_is_back(
    pg_url: str, tmp_path: Path
) -> None:
    """PostgreSQL only: the server ends every session of the daemon (as a restart or a network
    cut would). A revoke still lands within a second, and the LISTEN connection comes back."""
    ledger = PostgresLedger(pg_url)
    ledger.migrate()
    with contextlib.ExitStack() as closing:
        conn = ledger.open_writer(1000)
        closing.callback(conn.close)
        new = create_key(conn, KeySpec("app"))
        check = KeyAuthorizer(tmp_path / "local.db", _no_key_store, key_ledger=ledger)
        check.start()
        closing.callback(check.close)
        wait_for(lambda: check.stats()["key_changes_listening"], 5.0)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid != pg_backend_pid() "
                "AND query LIKE 'LISTEN%'"
            ).fetchall()
        assert ended == [(True,)]
        wait_for(lambda: not check.stats()["key_changes_listening"], 2.0)
        revoke_key(conn, "app")  # nobody listens: only polling can carry it
        assert wait_for(lambda: kind(check, new.secret) == "proxy_key_revoked", 1.0) < 1.0
        wait_for(lambda: check.stats()["key_changes_listening"], 5.0)
        pushed = check.stats()["key_changes_pushed"]
        create_key(conn, KeySpec("later"))
        wait_for(lambda: check.stats()["key_changes_pushed"] > pushed, 1.0)
