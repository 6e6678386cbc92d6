"""The tables a ledger keeps beside `requests` (rollups, key spend, the latency sample), read
as stored and as a GROUP BY over the requests and their tags with the expressions of the
migrations' triggers (each store's own: SQLite's or PostgreSQL's): the two must be equal,
whoever inserted the records."""

from __future__ import annotations

from meterfox_cli.store.backend import Ledger
from meterfox_cli.store.dialect import POSTGRES, SQLITE, Dialect
from meterfox_cli.store.latency import LATENCY_BUCKET_SQL, SAMPLE_TABLE_EVERY
from meterfox_cli.store.migrations import (
    HOST_DAY_ROLLUP_KEYS,
    ROLLUP_KEYS,
    ROLLUP_SUMS,
    SAMPLE_COLUMNS,
    TAG_ROLLUP_KEYS,
)
from meterfox_cli.store.pg_migrations import (
    PG_DAY_ROLLUP_KEYS,
    PG_ROLLUP_KEYS,
    PG_ROLLUP_SUMS,
    PG_SAMPLE_COLUMNS,
    PG_TAG_KEYS,
    TAGS_OBJECT,
)
from meterfox_cli.store.tagsets import request_tags_sql, tagset_sql


def summed_tables(dialect: Dialect) -> list[tuple[str, str, str]]:
    """Per table the store keeps beside `requests` (the rollups, key spend, the sample):
    (its name, a SELECT of its rows, the same rows computed from the requests and their tags
    with a GROUP BY, the expressions of the migrations' triggers). Rows left at zero by a
    delete or a tag's move are left out of both."""
    if dialect is POSTGRES:
        keys, sums, hour = PG_ROLLUP_KEYS, PG_ROLLUP_SUMS, POSTGRES.hour("r.ts")
        day_keys, tag_keys = PG_DAY_ROLLUP_KEYS, PG_TAG_KEYS
    else:
        keys, sums, hour = ROLLUP_KEYS, ROLLUP_SUMS, SQLITE.hour("r.ts")
        day_keys = HOST_DAY_ROLLUP_KEYS
        tag_keys = (*TAG_ROLLUP_KEYS, ("tagset", tagset_sql(request_tags_sql("r.id"))))
    # (table, key columns and their expressions, value columns and their SUMs, live rows)
    specs = [
        ("request_rollup", keys, sums, ""),
        ("key_spend", [("key_name", "{r}.key_name"), ("hour", hour)],
         [("cost_nanousd", "{r}.cost_nanousd")], "cost_nanousd != 0"),
        ("day_rollup", day_keys, sums, ""),
        ("tag_rollup", tag_keys, sums, "requests != 0"),
    ]  # fmt: skip
    if dialect is SQLITE:  # (PostgreSQL keeps no latency rollup: store/rollups.py says why)
        bucket = LATENCY_BUCKET_SQL.format(ms="r.latency_ms")
        specs.append(
            ("latency_rollup",
             [("utc_day", "CAST({r}.ts / 86400 AS INTEGER)"), ("provider", "{r}.provider"),
              ("bucket", bucket)],
             [("requests", "1")], "requests != 0"),
        )  # fmt: skip
    out = []
    for table, key_exprs, sum_exprs, live in specs:
        names = ", ".join(name for name, _ in [*key_exprs, *sum_exprs])
        where = f" WHERE {live}" if live else ""
        having = f" HAVING SUM({sum_exprs[0][1].format(r='r')}) != 0" if live else ""
        selected = [e.format(r="r") for _, e in key_exprs]
        selected += [f"SUM({e.format(r='r')})" for _, e in sum_exprs]
        groups = ", ".join(str(i + 1) for i in range(len(key_exprs)))
        grouped = f"SELECT {', '.join(selected)} FROM requests r GROUP BY {groups}{having}"
        out.append((table, f"SELECT {names} FROM {table}{where}", grouped))
    if dialect is SQLITE:
        out.append(
            (
                "latency_sample",
                f"SELECT {SAMPLE_COLUMNS}, seq FROM latency_sample",
                f"SELECT {SAMPLE_COLUMNS}, rowid / {SAMPLE_TABLE_EVERY} FROM requests "
                f"WHERE rowid % {SAMPLE_TABLE_EVERY} = 0",
            )
        )
    else:  # PostgreSQL's sample holds each sampled request's tags too (pg_migrations 011)
        columns = ", ".join(PG_SAMPLE_COLUMNS)
        out.append(
            (
                "latency_sample",
                f"SELECT {columns}, seq, tags::text FROM latency_sample",
                f"SELECT {columns}, rowid / {SAMPLE_TABLE_EVERY}, "
                f"{TAGS_OBJECT.format(id='r.id')}::text FROM requests r "
                f"WHERE rowid % {SAMPLE_TABLE_EVERY} = 0",
            )
        )
    return out


def assert_summed(ledger: Ledger) -> None:
    """Each table equals its GROUP BY (and neither is empty)."""
    conn = ledger.open_writer(1000)
    try:
        for table, stored, grouped in summed_tables(ledger.dialect):
            expected = sorted(tuple(row) for row in conn.execute(grouped).fetchall())
            assert sorted(tuple(row) for row in conn.execute(stored).fetchall()) == expected, table
            assert expected, table
    finally:
        conn.close()
