"""The per-batch rollups (store/rollups.py, migration 016) leave every table exactly as the
INSERT triggers of migrations 004–015 left it: the same batches written through today's
`insert_records` into a current database, and through the insert of before 016 into a database
migrated to 015 (its triggers live), give the same rows in every table, to the last column.
On PostgreSQL, the same against the INSERT triggers kept for an older writer (008–010)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterfox_cli.pricing.quote import NO_USAGE, UNPRICED, Price
from meterfox_cli.records import Outcome, UsageRecord
from meterfox_cli.store.db import connect, transaction
from meterfox_cli.store.dialect import POSTGRES, LedgerConnection, write_transaction
from meterfox_cli.store.migrations import MIGRATIONS
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.rollups import POSTGRES_ROLLUPS, SUM_NAMES
from meterfox_cli.store.rows import (
    INT64_MAX,
    REQUEST_COLUMNS,
    TAG_COLUMNS,
    counted_once,
    insert_records,
    insert_rows,
    record_tags,
    request_row,
)
from meterfox_cli.usage import Reading, Usage
from tests.fakes.records import at, insert_as_before_016, usage_record
from tests.pg import PgServer

# Every table an insert of records writes, and the order that makes a dump comparable.
TABLES = (
    "requests",
    "request_tags",
    "request_rollup",
    "tag_rollup",
    "day_rollup",
    "latency_rollup",
    "key_spend",
    "latency_sample",
    "key_reservations",
)
RESERVE = "INSERT OR IGNORE INTO key_reservations VALUES (?, 'app', 5, 1e12)"
Batch = list[tuple[UsageRecord, Price]]


def before_016(path: Path) -> sqlite3.Connection:
    """A database migrated up to 015, the version whose triggers kept the rollups."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for name, migration in MIGRATIONS[: [n for n, _ in MIGRATIONS].index("016_rollups_per_batch")]:
        with transaction(conn):
            migration(conn)
            conn.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    return conn


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every row of every table an insert writes (`rowid` too, where the table has one)."""
    out = {}
    for table in TABLES:
        rowid = "rowid, " if table == "requests" else ""
        columns = len(conn.execute(f"SELECT * FROM {table} LIMIT 0").description)
        order = ", ".join(str(i + 1) for i in range(columns + bool(rowid)))
        out[table] = conn.execute(f"SELECT {rowid}* FROM {table} ORDER BY {order}").fetchall()
    return out


def written_both_ways(tmp: Path, batches: list[tuple[Batch, str, list[str]]]) -> tuple[dict, dict]:
    """Each (records, host, ids to reserve first) batch written the old way and the new way;
    the two databases' dumps."""
    old, new = before_016(tmp / "old.db"), connect(tmp / "new.db")
    try:
        for records, host, reserved in batches:
            for conn in (old, new):
                with transaction(conn):
                    conn.executemany(RESERVE, [(request_id,) for request_id in reserved])
            insert_as_before_016(old, records, host)
            with transaction(new):
                insert_records(new, records, host)
        return dump(old), dump(new)
    finally:
        old.close()
        new.close()


BASE = at("2026-11-03 22:00")  # two hours either side of a local midnight, and of a UTC one
IDS = [f"id{n:02d}" for n in range(24)]  # few ids: repeats in a batch, and sent again later


@st.composite
def records(draw: st.DrawFn) -> tuple[UsageRecord, Price]:
    usage = draw(
        st.one_of(
            st.none(),
            st.builds(
                Usage,
                input_tokens=st.integers(0, 10**9),
                cached_tokens=st.integers(0, 1000),
                cache_write_tokens=st.integers(0, 1000),
                output_tokens=st.integers(0, 10**6),
                reasoning_tokens=st.integers(0, 1000),
            ),
        )
    )
    record = UsageRecord(
        id=draw(st.sampled_from(IDS)),
        started_at=BASE + draw(st.floats(-4 * 3600, 4 * 3600, allow_nan=False)),
        provider=draw(st.sampled_from(["openai", "groq"])),
        model=draw(st.sampled_from(["gpt-4o", "mini", None, ""])),
        endpoint=draw(st.sampled_from(["/v1/chat/completions", "/v1/embeddings"])),
        method="POST",
        status=draw(st.sampled_from([200, 200, 429, 500])),
        streamed=False,
        outcome=draw(st.sampled_from([Outcome.OK, Outcome.OK, Outcome.UPSTREAM_ERROR])),
        key_name=draw(st.sampled_from(["app", "ci", "passthrough"])),
        ttfb_ms=draw(st.one_of(st.none(), st.floats(0, 5000))),
        latency_ms=draw(st.floats(0.1, 2_000_000)),
        reading=Reading(
            model="gpt-4o",
            usage=usage,
            dedupe_key=draw(st.sampled_from([None, None, "replicate:p1"])),
        ),
        tags=tuple(
            sorted(
                draw(
                    st.dictionaries(
                        st.sampled_from(["feature", "env", "a:b"]),
                        st.sampled_from(["x", "y", "1:2", ""]),
                        max_size=3,
                    )
                ).items()
            )
        ),
    )
    if usage is None:
        return record, NO_USAGE
    cost = draw(st.one_of(st.none(), st.integers(0, 10**13)))
    return record, UNPRICED if cost is None else Price(cost, "computed", "test")


batches = st.lists(
    st.tuples(
        st.lists(records(), min_size=1, max_size=25),
        st.sampled_from(["laptop-1", "ci-runner"]),
        st.lists(st.sampled_from(IDS), max_size=4),
    ),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=batches)
def test_every_table_is_as_the_triggers_left_it(tmp_path_factory, batches) -> None:
    """Random batches: ids repeated in a batch and sent again later (with other contents and
    other tags: the first stored is kept, a new tag moves it), a dedupe key seen twice (the
    second row skipped by its index), two hosts, reservations for some ids, times across an
    hour, a local and a UTC midnight, latencies in every bucket, enough rows for the sample."""
    old, new = written_both_ways(tmp_path_factory.mktemp("rollups"), batches)
    assert new == old


def test_sums_past_64_bits_are_added_row_by_row_as_the_triggers_did(tmp_path: Path) -> None:
    """Two absurd costs (clamped to 64 bits each by request_row) in one group: their sum is
    not a 64-bit integer, so each row is added on its own and SQLite's sum turns REAL, as it
    did under the triggers, instead of failing the batch."""
    usage = Usage(input_tokens=10**18, output_tokens=1)
    batch = [
        (
            usage_record(
                id=f"big{n}",
                started_at=BASE,
                key_name="app",
                ttfb_ms=None,
                latency_ms=5.0,
                reading=Reading(model="gpt-4o", usage=usage),
            ),
            Price(INT64_MAX, "computed", "absurd"),
        )
        for n in range(3)
    ]
    old, new = written_both_ways(tmp_path, [(batch, "h", [])])
    assert new == old
    (cost,) = {row[13] for row in new["request_rollup"]}
    assert isinstance(cost, float) and cost > INT64_MAX


# --- PostgreSQL: the writer's per-batch rollups against the triggers an older writer fires ---

# (no latency rollup on PostgreSQL: store/rollups.py; its latency sample holds tags as JSON)
PG_TABLES = tuple(table for table in TABLES if table != "latency_rollup")
PG_RESERVE = "INSERT INTO key_reservations VALUES (?, 'app', 5, 1e12) ON CONFLICT DO NOTHING"


def pg_dump(conn: LedgerConnection) -> dict[str, list[tuple]]:
    """Every row of every table an insert writes on PostgreSQL (`requests` with its rowid),
    but the tag rollup's rows at zero requests: an older writer inserted a request before its
    tags, so each tag moved it on from the set it had, leaving those (reads skip them)."""
    out = {}
    for table in PG_TABLES:
        columns = len(conn.execute(f"SELECT * FROM {table} LIMIT 0").description)
        order = ", ".join(str(i + 1) for i in range(columns))
        live = " WHERE requests != 0" if table == "tag_rollup" else ""
        out[table] = conn.execute(f"SELECT * FROM {table}{live} ORDER BY {order}").fetchall()
    return out


def insert_as_an_older_writer(conn: LedgerConnection, rows: list[dict], tags: list) -> None:
    """Commit rows as a meterfox from before PostgreSQL's 008 did: plain INSERTs (requests,
    then their tags) skipping what is stored, every rollup left to the triggers."""
    with write_transaction(conn):
        conn.executemany(
            POSTGRES.insert_ignoring("requests", REQUEST_COLUMNS),
            [[row[c] for c in REQUEST_COLUMNS] for row in rows],
        )
        conn.executemany(POSTGRES.insert_ignoring("request_tags", TAG_COLUMNS), tags)


@pytest.fixture(scope="module")
def pg_pair(pg_server: PgServer) -> Iterator[tuple[LedgerConnection, LedgerConnection]]:
    """Two migrated PostgreSQL ledgers (an older writer's, a current one's), connected."""
    conns = []
    for _ in range(2):
        ledger = PostgresLedger(pg_server.create_database())
        ledger.migrate()
        conns.append(ledger.connect())
    yield conns[0], conns[1]
    for conn in conns:
        conn.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=batches)
def test_every_postgresql_table_is_as_its_triggers_leave_it(pg_pair, batches) -> None:
    """The same random batches on PostgreSQL: the current writer's per-batch rollups (every
    rollup, key spend, reservations) leave each table as the triggers an older writer fires
    leave it, to the last column (a record sent again with a tag more moves it, as the tag's
    trigger does). Rows go through `counted_once`, as the writer sends them (PostgreSQL
    enforces the tags' foreign key: a row its dedupe index skipped would leave tags behind)."""
    old, new = pg_pair
    for conn in (old, new):
        conn.execute(f"TRUNCATE {', '.join(PG_TABLES)} RESTART IDENTITY")
    for records, host, reserved in batches:
        for conn in (old, new):
            with write_transaction(conn):
                conn.executemany(PG_RESERVE, [(request_id,) for request_id in reserved])
        with write_transaction(new):
            rows = counted_once(new, [request_row(r, p, host) for r, p in records])
            insert_rows(new, rows, record_tags(r for r, _ in records))
        insert_as_an_older_writer(old, rows, record_tags(r for r, _ in records))
    assert pg_dump(new) == pg_dump(old)


FINE_KEYS = st.tuples(
    st.integers(0, 3),  # hour
    st.integers(0, 1),  # utc_day
    st.sampled_from(["2026-11-28", "2026-11-29"]),  # day
    st.sampled_from(["openai", "anthropic"]),  # provider
    st.sampled_from(["", "gpt-4o", "gpt-4o-mini"]),  # model
    st.sampled_from([None, "app", "ci"]),  # key_name
    st.sampled_from(["/v1/chat/completions", "/v1/embeddings"]),  # endpoint
    st.sampled_from([None, "laptop", "gateway"]),  # host
    st.sampled_from(["", "env=prod"]),  # tagset
)
SUMS = st.lists(st.integers(0, 10), min_size=len(SUM_NAMES), max_size=len(SUM_NAMES))


@given(groups=st.lists(st.tuples(FINE_KEYS, SUMS), max_size=20), data=st.data())
def test_every_batch_upserts_a_table_in_key_order(groups, data) -> None:
    """Two daemons' batches on one PostgreSQL ledger lock a rollup's rows in the same order
    (so neither waits on the other in a cycle): each table's UPSERTs come in key order, NULLs
    first, whatever order the batch's records came in, with the same sums."""
    shuffled = data.draw(st.permutations(groups))
    for rollup in POSTGRES_ROLLUPS:
        parameters = rollup.parameters(groups)
        assert parameters == rollup.parameters(shuffled)
        keys = [p[: len(rollup.keys)] for p in parameters]
        order = [tuple((False, 0) if v is None else (True, v) for v in key) for key in keys]
        assert order == sorted(order)
        assert len(set(keys)) == len(keys)
