"""`report --by host` from day_rollup (migration 013, host in its key): the same rows as from
`requests` alone, for any window on or off UTC-day boundaries and any grouping with host."""

from __future__ import annotations

import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterfox_cli.store.db import connect, transaction
from meterfox_cli.store.dimensions import parse_dimensions
from meterfox_cli.store.queries import build_report
from meterfox_cli.store.rows import insert_records
from meterfox_cli.store.select import TimeRange
from tests.fakes.records import Req, at
from tests.store.test_queries import request_strategy

BASE = at("2026-11-02 00:00")
DAY = 86400.0


def record(conn: sqlite3.Connection, host: str, *requests: Req) -> None:
    """As RecordWriter commits them, from the daemon `host`."""
    with transaction(conn):
        insert_records(conn, [(req.record(), req.price()) for req in requests], host)


def test_whole_days_by_host_are_read_from_the_day_rollup(conn):
    record(conn, "laptop", Req(BASE + 3600), Req(BASE + 7200))
    record(conn, "ci", Req(BASE + 3600))
    utc_first = -(-BASE // DAY) * DAY
    window = TimeRange(utc_first - DAY, utc_first + DAY)  # two whole UTC days
    rows = {row.group: row.requests for row in build_report(conn, ("host",), window).rows}
    assert rows == {"laptop": 2, "ci": 1}
    conn.execute("DELETE FROM day_rollup")  # (the triggers keep it; here it is emptied)
    conn.commit()
    assert build_report(conn, ("host",), window).rows == ()  # so it was the rollup read


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.tuples(st.sampled_from(["", "laptop", "ci"]), st.lists(request_strategy, max_size=15)),
        max_size=4,
    ),
    since=st.one_of(
        st.none(),
        st.floats(-DAY, 4 * DAY, allow_nan=False).map(lambda s: BASE + s),
        st.integers(-1, 4).map(lambda d: (BASE // DAY + d) * DAY),  # on a UTC day
    ),
    length=st.one_of(st.none(), st.floats(0, 4 * DAY, allow_nan=False)),
    by=st.sampled_from(["host", "host,model", "day,host", "provider,host,key"]),
)
def test_host_from_the_rollup_and_from_requests_agree(tmp_path_factory, batches, since, length, by):
    path = tmp_path_factory.mktemp("host") / "meterfox.db"
    conn = connect(path)
    try:
        for host, requests in batches:
            record(conn, host, *requests)
        until = None if since is None or length is None else since + length
        window, dims = TimeRange(since, until), parse_dimensions(by)
        via_rollup = build_report(conn, dims, window, latency=False)
        raw = sqlite3.connect(path)
        raw.execute("DROP TABLE day_rollup")  # a database from before migration 013
        raw.commit()
        raw.close()
        via_requests = build_report(conn, dims, window, latency=False)
    finally:
        conn.close()
    assert via_rollup.rows == via_requests.rows
    assert via_rollup.total == via_requests.total
