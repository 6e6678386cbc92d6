"""A report on tags reads a UTC day its window cuts from the smaller side: the requests inside
the window, or that day's tag rollup less the requests outside it. Either way the sums are the
plain GROUP BY over the requests', to the nano-dollar."""

from __future__ import annotations

import sqlite3

import pytest

from meterfox_cli.store.queries import build_report
from meterfox_cli.store.select import Filters, TimeRange
from tests.fakes.records import Req, insert

DAY = 86400.0
D = 20_395 * DAY  # 2025-11-03 00:00 UTC: the day the windows below cut


def _day_of_requests(conn: sqlite3.Connection) -> None:
    """A request every 20 minutes from the day before D to the day after, tagged three ways,
    four models (one unknown), priced, unpriced and failed."""
    reqs = []
    for i in range(3 * 72):
        reqs.append(
            Req(
                D - DAY + i * 1200.0 + 7,
                model=("gpt-4o", "mini", None, "claude")[i % 4],
                key=("k1", "k2")[i % 2],
                status=500 if i % 13 == 0 else 200,
                cost_nano=None if i % 13 == 0 or i % 9 == 0 else 1_000_003 * i + 1,
                unpriced=i % 9 == 0 and i % 13 != 0,
                input_tokens=100 + i,
                output_tokens=3 * i,
                tags=(
                    ()
                    if i % 5 == 0
                    else (("env", "p"), ("feature", "xy"[i % 2]))
                    if i % 3
                    else (("feature", "z"),)
                ),
            )
        )
    insert(conn, *reqs)


def _plain(conn: sqlite3.Connection) -> sqlite3.Connection:
    """A copy of the database without the tag rollup: reports read the raw request rows."""
    raw = sqlite3.connect(":memory:", isolation_level=None)
    conn.backup(raw)
    raw.execute("DROP TABLE tag_rollup")
    return raw


def _tag_rollup_reads(conn: sqlite3.Connection, *args) -> tuple[object, int]:
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        report = build_report(conn, *args, latency=False)
    finally:
        conn.set_trace_callback(None)
    return report, sum("FROM tag_rollup" in sql for sql in statements)


@pytest.mark.parametrize(
    ("window", "rollup_reads"),
    [
        (TimeRange(D + 2 * 3600 + 60, None), 2),  # 2 h of the day outside: its rollup less them
        (TimeRange(D + 21 * 3600 + 60, None), 1),  # 3 h inside: those requests
        (TimeRange(None, D + 21 * 3600 + 60), 2),  # until: 3 h outside
        (TimeRange(None, D + 2 * 3600 + 60), 1),  # until: 2 h inside
        (TimeRange(D - DAY + 3 * 3600, D + DAY + 21 * 3600), 3),  # both edges, both ways
        (TimeRange(D + 3600, D + 2 * 3600), 0),  # within a day: requests alone
    ],
)
@pytest.mark.parametrize(
    ("by", "filters"),
    [
        ("tag:feature", Filters()),
        ("tag:feature,model", Filters()),
        ("day,tag:env", Filters(keys=("k1",))),
        ("model", Filters(tags=(("env", "p"),))),
        ("key", Filters(tags=(("feature", "x"),), models=("gpt-4o", "claude"))),
    ],
)
def test_a_cut_day_from_either_side_sums_as_the_requests_do(
    conn, window, rollup_reads, by, filters
):
    _day_of_requests(conn)
    dims = tuple(by.split(","))
    report, reads = _tag_rollup_reads(conn, dims, window, filters)
    assert reads == rollup_reads
    plain = build_report(_plain(conn), dims, window, filters, latency=False)
    assert report.rows == plain.rows
    assert report.total == plain.total
    assert report.total.requests > 0


@pytest.mark.parametrize("value", ["p", "P", "50%", "a_b", "x\\y", "%", "_"])
def test_a_tag_filter_keeps_exactly_the_sets_holding_its_tag(conn, value):
    """The rollup's sets are narrowed in SQL by a LIKE on the tag's encoded pair (case-blind
    in SQLite, with LIKE's own wildcards in names and values): only the sets that hold the
    tag itself are counted."""
    sets = [
        (("env", "p"),),
        (("env", "P"),),
        (("env", "50%"), ("feature", "a_b")),
        (("env", "500"), ("feature", "aXb")),
        (("env", "x\\y"),),
        (("env", "%"),),
        (("env", "_"),),
        (("env", "q"),),
        (("team", "env"),),
        (),
    ] * 2
    insert(
        conn,
        *(
            Req(D + 3600 * i + 60, model=f"m{i % 3}", cost_nano=1_000 + i, tags=tags)
            for i, tags in enumerate(sets)
        ),
    )
    window = TimeRange(D, D + DAY)
    for filters in (Filters(tags=(("env", value),)), Filters(tags=(("feature", value),))):
        report = build_report(conn, ("model",), window, filters, latency=False)
        plain = build_report(_plain(conn), ("model",), window, filters, latency=False)
        assert report.rows == plain.rows and report.total == plain.total
        (name, _), *_ = filters.tags
        assert report.total.requests == sum((name, value) in tags for tags in sets)
