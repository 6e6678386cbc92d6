"""The tag rollup (migration 009) stays equal to the requests and their tags, whoever inserts,
re-prices or deletes, and reports read from it give the raw rows' numbers to the nano-dollar."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterfox_cli.pricing.book import PriceBook
from meterfox_cli.store.costs import reprice
from meterfox_cli.store.db import connect, migrate, transaction
from meterfox_cli.store.dimensions import parse_dimensions
from meterfox_cli.store.migrations import MIGRATIONS, ROLLUP_SUMS, TAG_ROLLUP_KEYS
from meterfox_cli.store.queries import build_report
from meterfox_cli.store.rows import insert_records
from meterfox_cli.store.select import Filters, TimeRange
from meterfox_cli.store.tagsets import decode, encode
from tests.fakes.records import Req, at, insert, insert_as_before_016

KEYS = ", ".join([*(name for name, _ in TAG_ROLLUP_KEYS), "tagset"])
SUMS = ", ".join(name for name, _ in ROLLUP_SUMS)


def tag_rollup(conn: sqlite3.Connection) -> list[tuple]:
    """The rollup's rows, tag sets decoded, rows of zero requests left out (a tag's move from
    one set to another may leave one; reads skip them)."""
    rows = conn.execute(f"SELECT {KEYS}, {SUMS} FROM tag_rollup WHERE requests != 0").fetchall()
    return sorted((*row[:6], decode(row[6]), *row[7:]) for row in rows)


def recomputed(conn: sqlite3.Connection) -> list[tuple]:
    """The rollup as it should be, from the requests and their tags in Python."""
    tags: dict[str, dict[str, str]] = {}
    for request_id, name, value in conn.execute("SELECT request_id, name, value FROM request_tags"):
        tags.setdefault(request_id, {})[name] = value
    keys = ", ".join(expr.format(r="r") for _, expr in TAG_ROLLUP_KEYS)
    sums = ", ".join(expr.format(r="r") for _, expr in ROLLUP_SUMS)
    totals: dict[tuple, list[int]] = {}
    for row in conn.execute(f"SELECT r.id, {keys}, {sums} FROM requests r"):
        key = (*row[1:7], decode(encode(tags.get(row[0], {}))))
        into = totals.setdefault(key, [0] * len(ROLLUP_SUMS))
        totals[key] = [a + b for a, b in zip(into, row[7:], strict=True)]
    return sorted((*key, *values) for key, values in totals.items())


MIX = (
    Req(at("2026-11-03 10:05"), model="a", cost_nano=10, tags=(("feature", "x"), ("env", "p"))),
    Req(at("2026-11-03 10:55"), model="a", cost_nano=None, unpriced=True, tags=(("feature", "y"),)),
    Req(at("2026-11-03 23:59"), model=None, key="ci", status=500, cost_nano=None),
    Req(at("2026-11-04 00:01"), provider="groq", model="b", cost_nano=7, tags=(("env", "p"),)),
)


def test_inserts_land_under_each_requests_whole_tag_set(conn):
    insert(conn, *MIX)
    assert tag_rollup(conn) == recomputed(conn)
    sets = {row[6] for row in tag_rollup(conn)}
    assert sets == {(("env", "p"), ("feature", "x")), (("feature", "y"),), (), (("env", "p"),)}


def test_tags_added_or_taken_away_later_move_the_request(conn):
    """A tag deleted (by anyone: a trigger follows), or added by the record sent again with one
    tag more (the writer's insert moves the stored request; a tag it already has is kept)."""
    records = [(req.record(), req.price()) for req in MIX]
    with transaction(conn):
        insert_records(conn, records)
    first, price = records[0]
    conn.execute("DELETE FROM request_tags WHERE request_id = ? AND name = 'env'", (first.id,))
    assert tag_rollup(conn) == recomputed(conn)
    again = replace(first, tags=(("feature", "changed"), ("team", "search")))
    with transaction(conn):
        insert_records(conn, [(again, price), *records[1:]])
    assert tag_rollup(conn) == recomputed(conn)
    assert {row[6] for row in tag_rollup(conn)} >= {(("feature", "x"), ("team", "search"))}
    assert conn.execute("SELECT count(*) FROM requests").fetchone() == (len(MIX),)


def test_a_tag_row_is_never_updated_in_place(conn):
    insert(conn, *MIX)
    with pytest.raises(sqlite3.IntegrityError, match="delete and insert"):
        conn.execute("UPDATE request_tags SET value = 'z'")


def test_updates_and_deletes_of_requests_follow(conn):
    insert(conn, *MIX)
    conn.execute("UPDATE requests SET cost_nanousd = 99, cost_source = 'computed'")
    conn.execute("UPDATE requests SET model = 'renamed' WHERE model = 'b'")
    assert tag_rollup(conn) == recomputed(conn)
    conn.execute("DELETE FROM requests WHERE model = 'a'")
    assert tag_rollup(conn) == recomputed(conn)
    conn.execute("DELETE FROM requests")
    assert tag_rollup(conn) == []


def test_the_migration_rolls_up_requests_and_tags_recorded_before_it(tmp_path: Path):
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    before = MIGRATIONS[: [name for name, _ in MIGRATIONS].index("009_tag_rollup")]
    for name, migration in before:  # a database from the version before the tag rollup…
        with transaction(conn):
            migration(conn)
            conn.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    insert_as_before_016(conn, [(r.record(), r.price()) for r in MIX])  # …recorded then
    assert "009_tag_rollup" in migrate(conn)
    assert tag_rollup(conn) == recomputed(conn)
    insert(conn, Req(at("2026-11-03 10:30"), tags=(("feature", "x"),)))  # it keeps up after
    assert tag_rollup(conn) == recomputed(conn)
    conn.close()


def test_a_tag_set_survives_any_name_or_value():
    tags = {"a=b": "1:2", "": "x", "é": "", "3:": "\x1f\x1e"}
    assert dict(decode(encode(tags))) == tags


# --- reports from the tag rollup equal reports from the raw rows -------------------------

BASE = at("2026-11-02 00:00")
HOUR = 3600.0
DAYS = 4
TAGS = st.dictionaries(
    st.sampled_from(["feature", "env", "customer"]),
    st.sampled_from(["a", "b", "c=d", ""]),
    max_size=3,
).map(lambda tags: tuple(sorted(tags.items())))

request_strategy = st.builds(
    Req,
    ts=st.floats(0, DAYS * 24 * HOUR, allow_nan=False).map(lambda s: BASE + s),
    provider=st.sampled_from(["openai", "groq"]),
    model=st.sampled_from(["gpt-4o", "gpt-4o-mini", None, ""]),
    key=st.sampled_from(["k1", "k2"]),
    status=st.sampled_from([200, 200, 500]),
    input_tokens=st.integers(0, 10_000),
    cached_tokens=st.integers(0, 100),
    output_tokens=st.integers(0, 5_000),
    cost_nano=st.one_of(st.none(), st.integers(0, 10**12)),
    unpriced=st.booleans(),
    latency_ms=st.floats(1, 60_000),
    tags=TAGS,
)
edge = st.one_of(
    st.none(),
    st.floats(-HOUR, (DAYS * 24 + 1) * HOUR, allow_nan=False).map(lambda s: BASE + s),
    st.integers(-1, DAYS + 1).map(lambda d: (d + int(BASE // 86400)) * 86400.0),  # a UTC day
)
tag_filters = st.lists(
    st.tuples(st.sampled_from(["feature", "env"]), st.sampled_from(["a", "b", "c=d"])),
    max_size=2,
    unique_by=lambda pair: pair[0],
)
groupings = st.sampled_from(
    [
        "tag:feature",
        "tag:env,model",
        "day,tag:feature",
        "tag:feature,tag:env",
        "week,tag:customer,key",
        "month,provider,tag:env",
        "model",
        "endpoint,day",
        "",
    ]
)


def _raw_copy(path: Path) -> None:
    """The same database as one from before migration 009 (reports read the raw rows)."""
    raw = sqlite3.connect(path)
    raw.execute("DROP TABLE tag_rollup")
    raw.commit()
    raw.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.lists(request_strategy, max_size=30),
    late=st.lists(request_strategy, max_size=10),
    since=edge,
    until=edge,
    by=groupings,
    tags=tag_filters,
    models=st.sampled_from([(), ("gpt-4o",), ("gpt-4o-mini", "gpt-4o")]),
    repriced=st.booleans(),
)
def test_tag_rollup_and_raw_rows_agree(
    tmp_path_factory, first, late, since, until, by, tags, models, repriced
):
    """Random tagged requests, a second batch arriving late (older times, in any order),
    maybe a real `reprice` rewriting costs, then any grouping and filter: the report from the
    tag rollup equals the one from the raw rows, every sum to the nano-dollar."""
    path = tmp_path_factory.mktemp("tags") / "meterfox.db"
    conn = connect(path)
    try:
        insert(conn, *first)
        insert(conn, *late)
        if repriced:
            reprice(conn, PriceBook())
        window = TimeRange(since, until)
        dims = parse_dimensions(by) if by else ()
        filters = Filters(models=models, tags=tuple(tags))
        via_rollup = build_report(conn, dims, window, filters, latency=False)
        _raw_copy(path)
        via_raw = build_report(conn, dims, window, filters, latency=False)
    finally:
        conn.close()
    assert via_rollup.rows == via_raw.rows
    assert via_rollup.total == via_raw.total
    expected = [
        r
        for r in [*first, *late]
        if (since is None or r.ts >= since)
        and (until is None or r.ts < until)
        and all(dict(r.tags).get(name) == value for name, value in tags)
        and (not models or r.model in models)
    ]
    assert via_rollup.total.requests == len(expected)
