"""Report queries over a real SQLite database: grouping, filters, windows, totals.

Whatever path a report takes (the hourly rollup plus the partial hours at the window's edges,
or the requests table alone), the numbers must be the same: a Hypothesis test checks it.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterfox_cli.records import Outcome
from meterfox_cli.store.db import connect
from meterfox_cli.store.dimensions import parse_dimensions
from meterfox_cli.store.queries import build_report, group_by
from meterfox_cli.store.select import Filters, TimeRange
from tests.fakes.records import Req, at, insert

SUM_FIELDS = (
    "requests",
    "errors",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "unpriced_requests",
    "priced_requests",
    "unpriced_input_tokens",
    "unpriced_output_tokens",
)
ALL = TimeRange()


def by_group(rows) -> dict:
    return {row.group: row for row in rows}


def test_group_by_model_sums_tokens_costs_and_errors(conn):
    insert(
        conn,
        Req(
            at("2026-11-03 10:00"),
            model="gpt-4o",
            input_tokens=100,
            output_tokens=10,
            cost_nano=2_000,
        ),
        Req(
            at("2026-11-03 11:00"),
            model="gpt-4o",
            input_tokens=50,
            cached_tokens=20,
            output_tokens=5,
            reasoning_tokens=2,
            cost_nano=1_500,
        ),
        Req(
            at("2026-11-03 12:00"),
            model="gpt-4o",
            status=429,
            outcome=Outcome.UPSTREAM_ERROR,
            cost_nano=None,
        ),
        Req(at("2026-11-03 12:00"), model="mini", cost_nano=10),
    )
    rows = by_group(group_by(conn, "model", ALL))
    gpt = rows["gpt-4o"]
    assert (gpt.requests, gpt.errors) == (3, 1)
    assert (gpt.input_tokens, gpt.cached_tokens, gpt.output_tokens) == (150, 20, 15)
    assert gpt.reasoning_tokens == 2
    assert gpt.cost_usd == Decimal("0.0000035") and gpt.cost_nanousd == 3_500
    assert gpt.priced_requests == 2 and gpt.unpriced_requests == 0
    assert rows["mini"].cost_nanousd == 10


def test_rows_are_sorted_by_cost_with_unpriced_groups_last(conn):
    insert(
        conn,
        Req(at("2026-11-03 10:00"), model="cheap", cost_nano=5),
        Req(at("2026-11-03 10:00"), model="dear", cost_nano=900),
        Req(at("2026-11-03 10:00"), model="mystery", cost_nano=None, unpriced=True),
        Req(at("2026-11-03 10:00"), model="middle", cost_nano=100),
    )
    assert [row.group for row in group_by(conn, "model", ALL)] == [
        "dear",
        "middle",
        "cheap",
        "mystery",
    ]


def test_time_groupings_run_oldest_first(conn):
    insert(
        conn,
        Req(at("2026-11-02 10:00"), cost_nano=1),
        Req(at("2026-11-01 10:00"), cost_nano=50),
        Req(at("2026-11-09 10:00"), cost_nano=7),
    )
    assert [r.group for r in group_by(conn, "day", ALL)] == [
        "2026-11-01",
        "2026-11-02",
        "2026-11-09",
    ]
    # 2026-11-01 is a Sunday: its ISO week starts on Monday 2026-10-26.
    assert [r.group for r in group_by(conn, "week", ALL)] == [
        "2026-10-26",
        "2026-11-02",
        "2026-11-09",
    ]
    assert [(r.group, r.requests) for r in group_by(conn, "month", ALL)] == [("2026-11", 3)]


def test_two_dimensions_give_one_field_each_and_a_joined_label(conn):
    insert(
        conn,
        Req(at("2026-11-03 10:00"), provider="openai", model="gpt-4o", cost_nano=30),
        Req(at("2026-11-03 10:00"), provider="groq", model="llama", cost_nano=20),
        Req(at("2026-11-03 10:00"), provider="openai", model="gpt-4o", cost_nano=30),
        Req(at("2026-11-03 10:00"), provider="openrouter", model=None, cost_nano=1),
    )
    rows = group_by(conn, "provider,model", ALL)
    assert [(r.group, r.dims, r.requests) for r in rows] == [
        ("openai / gpt-4o", ("openai", "gpt-4o"), 2),
        ("groq / llama", ("groq", "llama"), 1),
        ("openrouter / (unknown)", ("openrouter", None), 1),
    ]


def test_tag_grouping_puts_untagged_requests_in_their_own_group(conn):
    insert(
        conn,
        Req(at("2026-11-03 10:00"), tags=(("feature", "search"),), cost_nano=5),
        Req(at("2026-11-03 10:00"), tags=(("feature", "search"), ("env", "prod")), cost_nano=5),
        Req(at("2026-11-03 10:00"), tags=(("feature", "chat"),), cost_nano=3),
        Req(at("2026-11-03 10:00"), tags=(("env", "prod"),), cost_nano=1),
    )
    rows = by_group(group_by(conn, "tag:Feature", ALL))
    assert {name: row.requests for name, row in rows.items()} == {
        "search": 2,
        "chat": 1,
        "(untagged)": 1,
    }
    assert rows["(untagged)"].dims == (None,)
    both = by_group(group_by(conn, "tag:env,tag:feature", ALL))
    assert both["prod / search"].requests == 1
    assert both["(untagged) / search"].requests == 1


def test_filters_combine_with_and_and_accept_several_values(conn):
    insert(
        conn,
        Req(at("2026-11-03 10:00"), provider="openai", key="ci", tags=(("env", "prod"),)),
        Req(at("2026-11-03 10:00"), provider="openai", key="backend", tags=(("env", "prod"),)),
        Req(at("2026-11-03 10:00"), provider="groq", key="ci", tags=(("env", "dev"),)),
        Req(at("2026-11-03 10:00"), provider="mistral", key="ci", model="m"),
    )

    def requests(filters: Filters) -> int:
        return build_report(conn, ("provider",), ALL, filters).total.requests

    assert requests(Filters(providers=("openai",))) == 2
    assert requests(Filters(providers=("openai", "groq"))) == 3
    assert requests(Filters(keys=("ci",))) == 3
    assert requests(Filters(keys=("ci",), tags=(("env", "prod"),))) == 1
    assert requests(Filters(models=("m",))) == 1
    assert requests(Filters(tags=(("env", "nope"),))) == 0


def test_the_window_includes_its_start_and_excludes_its_end(conn):
    insert(
        conn,
        Req(at("2026-11-03 09:59:59")),
        Req(at("2026-11-03 10:00")),
        Req(at("2026-11-03 10:30")),
        Req(at("2026-11-03 11:00")),
    )
    window = TimeRange(at("2026-11-03 10:00"), at("2026-11-03 11:00"))
    assert build_report(conn, ("model",), window).total.requests == 2


def test_totals_equal_the_sum_of_the_rows(conn):
    insert(
        conn,
        *(
            Req(
                at("2026-11-03 10:00") + i * 977,
                model=f"m{i % 4}",
                key=f"k{i % 3}",
                cost_nano=None if i % 5 == 0 else i * 13,
                unpriced=i % 10 == 0,
                input_tokens=i,
                output_tokens=2 * i,
                status=500 if i % 7 == 0 else 200,
            )
            for i in range(60)
        ),
    )
    report = build_report(conn, ("model", "key"), ALL)
    for name in SUM_FIELDS:
        assert getattr(report.total, name) == sum(getattr(row, name) for row in report.rows)
    assert report.total.cost_nanousd == sum(row.cost_nanousd or 0 for row in report.rows)


def test_unpriced_requests_are_counted_with_their_tokens_and_the_priced_share(conn):
    insert(
        conn,
        Req(at("2026-11-03 10:00"), cost_nano=100),
        Req(at("2026-11-03 10:00"), cost_nano=100),
        Req(at("2026-11-03 10:00"), cost_nano=100),
        Req(at("2026-11-03 10:00"), cost_nano=None, unpriced=True, input_tokens=7, output_tokens=3),
        Req(
            at("2026-11-03 10:00"), cost_nano=None, status=500, outcome=Outcome.UPSTREAM_ERROR
        ),  # no usage: needs no price
    )
    total = build_report(conn, ("model",), ALL).total
    assert total.unpriced_requests == 1
    assert (total.unpriced_input_tokens, total.unpriced_output_tokens) == (7, 3)
    assert total.priced_share == 0.75
    assert total.cost_nanousd == 300


def test_a_group_with_nothing_priced_has_no_cost_not_zero(conn):
    insert(conn, Req(at("2026-11-03 10:00"), model="x", cost_nano=None, unpriced=True))
    (row,) = group_by(conn, "model", ALL)
    assert row.cost_usd is None and row.cost_nanousd is None


# --- the rollup path and the requests path agree -----------------------------------------

BASE = at("2026-11-02 00:00")
HOUR = 3600.0

request_strategy = st.builds(
    Req,
    ts=st.floats(0, 3 * 24 * HOUR, allow_nan=False).map(lambda s: BASE + s),
    provider=st.sampled_from(["openai", "groq"]),
    model=st.sampled_from(["a", "b", None, ""]),
    key=st.sampled_from(["k1", "k2"]),
    status=st.sampled_from([200, 200, 500]),
    input_tokens=st.integers(0, 10_000),
    cached_tokens=st.integers(0, 100),
    output_tokens=st.integers(0, 5_000),
    cost_nano=st.one_of(st.none(), st.integers(0, 10**12)),
    unpriced=st.booleans(),
    latency_ms=st.floats(1, 60_000),
)
edge = st.one_of(
    st.none(),
    st.floats(-HOUR, 3 * 24 * HOUR + HOUR, allow_nan=False).map(lambda s: BASE + s),
    st.integers(-1, 3 * 24 + 1).map(lambda h: BASE + h * HOUR),  # exactly on an hour
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    requests=st.lists(request_strategy, max_size=40),
    since=edge,
    until=edge,
    by=st.sampled_from(["model", "provider,key", "day", "week,model", "month"]),
)
def test_rollup_and_requests_paths_agree(tmp_path_factory, requests, since, until, by):
    path = tmp_path_factory.mktemp("agree") / "meterfox.db"
    conn = connect(path)
    try:
        insert(conn, *requests)
        window = TimeRange(since, until)
        dims = parse_dimensions(by)
        via_rollup = build_report(conn, dims, window, latency=False)
        raw = sqlite3.connect(path)
        raw.execute("DROP TABLE request_rollup")  # a database from before the rollup
        raw.commit()
        raw.close()
        via_requests = build_report(conn, dims, window, latency=False)
    finally:
        conn.close()
    assert via_rollup.rows == via_requests.rows
    assert via_rollup.total == via_requests.total
    expected = sum(
        1 for r in requests if (since is None or r.ts >= since) and (until is None or r.ts < until)
    )
    assert via_rollup.total.requests == expected
