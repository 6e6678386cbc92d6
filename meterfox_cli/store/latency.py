"""Latency percentiles per report group: p50/p95 latency and p50 time to first byte.

Percentiles (nearest rank) need the individual requests: this pass reads them from the narrow
covering index `requests_latency`. On SQLite, reading a request costs about a microsecond in
Python (sorting a million in SQLite costs far more); on PostgreSQL every row would cross the
wire, so the server takes the percentiles itself (percentile_disc). Either way a window of
more than LATENCY_SAMPLE_MAX requests is sampled about one in m, and the groups that sample
leaves thin are read in full (see `latency_percentiles`); each group says how its percentiles
were taken. On SQLite a window so large that m exceeds SAMPLE_TABLE_EVERY reads the table
`latency_sample` (migration 014: one request in SAMPLE_TABLE_EVERY, kept by triggers) instead
of the index, so the pass costs window / SAMPLE_TABLE_EVERY row reads, not window. On
PostgreSQL a grouping or filter by tag does the same over its `latency_sample` (pg_migrations
011, which holds each sampled request's tags: `tags ->> name`, no lookup in request_tags per
request read, which cost 6 µs each, 0.6 s at 100,000).

The dashboard's per-provider panel reads `latency_rollup` instead (migration 010, SQLite: a
count of requests per UTC day, provider and latency bucket, kept by triggers):
`provider_latency` gives each provider's p50/p95 from those counts, to within half a bucket
(LATENCY_BUCKET_SQL: whole milliseconds below 100 ms, two significant digits above, so within
5%), at a cost that grows with the days in the window, not the requests.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, timedelta

from meterfox_cli.store.dialect import DAY_S, POSTGRES, LedgerConnection, dialect_of
from meterfox_cli.store.dimensions import TIME_DIMENSIONS, dimension_sql, tag_joins
from meterfox_cli.store.select import Filters, TimeRange, filter_sql, window_sql

LATENCY_SAMPLE_MAX = 100_000  # requests the uniform latency pass reads at most
LATENCY_MIN_SAMPLES = 1_000  # a group sampled thinner than this is read in full…
LATENCY_TOP_UP_MAX = 100_000  # …as far as this many more requests
SAMPLE_TABLE_EVERY = 16  # latency_sample holds one request in this many (migration 014)

_NONE = "\x1e"  # a dimension value that is NULL, inside a joined latency-pass key
_JOIN = "\x1f"  # between dimension values, inside a joined latency-pass key

Key = tuple[str | None, ...]

# A latency's bucket (the lower bound, whole ms) as the rollup's trigger computes it: exact
# integer arithmetic, the same in latency_bucket below.
_STEPS = ((100, 1), (1_000, 10), (10_000, 100), (100_000, 1_000), (1_000_000, 10_000))
_WHOLE_MS = "CAST({ms} AS INTEGER)"
LATENCY_BUCKET_SQL = (
    "CASE "
    + " ".join(
        f"WHEN {_WHOLE_MS} < {below} THEN {_WHOLE_MS} - {_WHOLE_MS} % {step}"
        for below, step in _STEPS
    )
    + f" ELSE {_WHOLE_MS} - {_WHOLE_MS} % 100000 END"
)


def latency_bucket(ms: float) -> tuple[int, int]:
    """The bucket of a latency: its lower bound and width, in whole milliseconds."""
    whole = int(ms)
    for below, step in _STEPS:  # a loop, not next() over a generator: once per record written
        if whole < below:
            return whole - whole % step, step
    return whole - whole % 100_000, 100_000


def provider_latency(
    conn: LedgerConnection, window: TimeRange
) -> dict[str, dict[str, float | None]]:
    """p50/p95 latency per provider over the window, from `latency_rollup` for its whole UTC
    days and from request rows for the partial days at its edges: each percentile is the
    middle of the bucket holding the nearest-rank value."""
    first = None if window.since is None else math.ceil(window.since / DAY_S)
    end = None if window.until is None else math.floor(window.until / DAY_S)
    counts: defaultdict[str, defaultdict[tuple[int, int], int]] = defaultdict(
        lambda: defaultdict(int)
    )
    rolled_up = conn.execute(dialect_of(conn).table_exists_sql, ("latency_rollup",)).fetchone()
    no_whole_day = first is not None and end is not None and first >= end
    if no_whole_day or rolled_up is None:  # (a PostgreSQL ledger has no latency_rollup yet)
        edges = [window_sql(window)]
    else:
        _rolled_up(conn, counts, first, end)
        edges = _day_edges(window, first, end, dialect_of(conn).bucket("r.ts", DAY_S))
    for clause, params in edges:
        where = f"WHERE {clause}" if clause else ""
        sql = f"SELECT r.provider, r.latency_ms FROM requests r {where}"
        for provider, ms in conn.execute(sql, params):
            counts[provider][latency_bucket(ms)] += 1
    return {
        provider: {
            "latency_p50_ms": _bucket_rank(buckets, 0.50),
            "latency_p95_ms": _bucket_rank(buckets, 0.95),
        }
        for provider, buckets in counts.items()
    }


def _rolled_up(conn: LedgerConnection, counts, first: int | None, end: int | None) -> None:
    clauses, params = [], []
    if first is not None:
        clauses.append("utc_day >= ?")
        params.append(first)
    if end is not None:
        clauses.append("utc_day < ?")
        params.append(end)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT provider, bucket, SUM(requests) FROM latency_rollup {where} GROUP BY 1, 2"
    for provider, bucket, n in conn.execute(sql, params):
        if n:
            counts[provider][latency_bucket(bucket)] += int(n)


def _day_edges(
    window: TimeRange, first: int | None, end: int | None, day: str
) -> list[tuple[str, list[object]]]:
    """Clauses for the requests in the window's partial UTC days (the trigger's own `day`)."""
    edges = []
    if window.since is not None and first is not None:
        edges.append(
            (f"r.ts >= ? AND r.ts < ? AND {day} < ?", [window.since, first * DAY_S + 1, first])
        )
    if window.until is not None and end is not None:
        edges.append(
            (f"r.ts < ? AND r.ts >= ? AND {day} >= ?", [window.until, end * DAY_S - 1, end])
        )
    return edges


def _bucket_rank(buckets: dict[tuple[int, int], int], p: float) -> float | None:
    total = sum(buckets.values())
    if not total:
        return None
    rank, seen = max(math.ceil(p * total), 1), 0
    for (low, width), n in sorted(buckets.items()):
        seen += n
        if seen >= rank:
            return low + width / 2
    return None  # unreachable: the counts reach the total


def latency_percentiles(
    conn: LedgerConnection,
    dims: tuple[str, ...],
    window: TimeRange,
    filters: Filters,
    counts: dict[Key, int],
) -> tuple[int, dict[Key | None, dict[str, object]]]:
    """p50/p95 latency and p50 time to first byte per group (key None: all groups).

    Every request is read when the window holds at most LATENCY_SAMPLE_MAX; else one in
    `every` (SQLite: by rowid, a systematic sample spread evenly over the recording order;
    PostgreSQL: that share of the table's pages, TABLESAMPLE SYSTEM, repeatable), and then
    every request of the groups that sample leaves with fewer than LATENCY_MIN_SAMPLES, as far
    as LATENCY_TOP_UP_MAX allows and the grouping can be filtered on indexed columns. Over every
    request both backends give the same values (nearest rank: percentile_disc's definition).
    On SQLite, when `every` exceeds SAMPLE_TABLE_EVERY (half that with a tag grouping or
    filter) the sample is drawn from `latency_sample` (`_from_sample_table`) instead.
    """
    every = max(1, math.ceil(sum(counts.values()) / LATENCY_SAMPLE_MAX))
    in_sql = dialect_of(conn).percentiles_in_sql
    tagged = bool(filters.tags) or any(dim.startswith("tag:") for dim in dims)
    # With a tag, each request read from the index costs a table lookup too (its id, for the
    # join), while latency_sample holds the id: it pays from half the sampling rate.
    sooner = SAMPLE_TABLE_EVERY // 2 if tagged else SAMPLE_TABLE_EVERY
    measure = _measured_in_sql if in_sql else _measured
    if (tagged or not in_sql) and every > sooner and _has_table(conn, "latency_sample"):
        return _from_sample_table(conn, dims, window, filters, counts, every, measure)
    groups, overall = measure(conn, dims, window, filters, every, None)
    exact: set[Key] = set(counts) if every == 1 else set()
    small = _small_groups(counts, every) if every > 1 else []
    narrowing = _group_filter(dims, small) if small else None
    if narrowing is not None:
        full, _ = measure(conn, dims, window, filters, 1, narrowing)
        for key in small:  # the narrowing filter may match more than these groups
            groups[key] = full.get(key, _percentiles([], []))
        exact.update(small)
    result: dict[Key | None, dict[str, object]] = {
        key: {**values, "latency_sample_every": 1 if key in exact else every}
        for key, values in groups.items()
    }
    result[None] = {**overall, "latency_sample_every": every}
    return every, result


def _from_sample_table(
    conn: LedgerConnection,
    dims: tuple[str, ...],
    window: TimeRange,
    filters: Filters,
    counts: dict[Key, int],
    every: int,
    measure: Callable[..., Measured],
) -> tuple[int, dict[Key | None, dict[str, object]]]:
    """The latency pass over `latency_sample` (one request in SAMPLE_TABLE_EVERY): one in
    `step` of its rows in the window (SQLite: by `seq`, the request's rowid /
    SAMPLE_TABLE_EVERY; PostgreSQL: that share of its pages, as for `requests`), so
    one request in step × SAMPLE_TABLE_EVERY; the groups that leaves with fewer than
    LATENCY_MIN_SAMPLES are read from every row of the table (one request in
    SAMPLE_TABLE_EVERY), as far as LATENCY_TOP_UP_MAX rows — or, when the window's rows in
    the table number at most LATENCY_SAMPLE_MAX + LATENCY_TOP_UP_MAX and no tag is involved,
    all of them are read once. With a tag every row read costs a lookup of its tags, so the
    sample is never widened to the whole table: a tag dimension's thin groups (which cannot be
    narrowed to) keep the sample's rate. No request row is read: the cost is the window's rows
    in the sample table, window / SAMPLE_TABLE_EVERY, at most."""
    step = math.ceil(every / SAMPLE_TABLE_EVERY)
    small = _small_groups(counts, step * SAMPLE_TABLE_EVERY, SAMPLE_TABLE_EVERY)
    in_table = sum(counts.values()) // SAMPLE_TABLE_EVERY
    tagged = bool(filters.tags) or any(dim.startswith("tag:") for dim in dims)
    if small and in_table <= LATENCY_SAMPLE_MAX + LATENCY_TOP_UP_MAX and not tagged:
        step, small = 1, []  # one read of every row costs less than a sample and a top-up
    every = step * SAMPLE_TABLE_EVERY
    groups, overall = measure(conn, dims, window, filters, step, None, "latency_sample")
    denser: set[Key] = set()
    narrowing = _group_filter(dims, small) if small else None
    if narrowing is not None:
        full, _ = measure(conn, dims, window, filters, 1, narrowing, "latency_sample")
        for key in small:
            groups[key] = full.get(key, _percentiles([], []))
        denser.update(small)
    result: dict[Key | None, dict[str, object]] = {
        key: {**values, "latency_sample_every": SAMPLE_TABLE_EVERY if key in denser else every}
        for key, values in groups.items()
    }
    result[None] = {**overall, "latency_sample_every": every}
    return every, result


def _has_table(conn: LedgerConnection, table: str) -> bool:
    return conn.execute(dialect_of(conn).table_exists_sql, (table,)).fetchone() is not None


_TAG_IN_ROW = "(r.tags ->> ?)"  # a tag of a PostgreSQL latency_sample row, named by a parameter
Measured = tuple[dict[Key, dict[str, float | None]], dict[str, float | None]]


def _source(
    conn: LedgerConnection,
    dims: tuple[str, ...],
    window: TimeRange,
    filters: Filters,
    extra: tuple[str, list[object]] | None,
    sample: str = "",
    table: str = "requests",
) -> tuple[list[str], str, list[object]]:
    """The dimension keys, and `FROM … WHERE …` over the requests (or latency_sample rows,
    which have the same column names; on PostgreSQL their tags too, read in place)."""
    dialect = dialect_of(conn)
    tags_in_row = table == "latency_sample" and dialect is POSTGRES
    keys = [
        _TAG_IN_ROW
        if tags_in_row and dim.startswith("tag:")
        else dimension_sql(dim, i, "r", dialect=dialect)
        for i, dim in enumerate(dims)
    ]
    joins, params, _ = tag_joins(dims)
    clauses, filter_params = filter_sql(replace(filters, tags=()) if tags_in_row else filters, "r")
    if tags_in_row:
        for name, value in filters.tags:
            clauses.append(f"{_TAG_IN_ROW} = ?")
            filter_params += [name, value]
    window_clause, window_params = window_sql(window)
    clauses += [window_clause] if window_clause else []
    params += [*filter_params, *window_params]
    if extra is not None:
        clauses.append(extra[0])
        params += extra[1]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return keys, f"FROM {table} r {sample} {joins} {where}", params


def _measured(
    conn: LedgerConnection,
    dims: tuple[str, ...],
    window: TimeRange,
    filters: Filters,
    every: int,
    narrowing: tuple[str, list[object]] | None,
    table: str = "requests",
) -> Measured:
    """Percentiles per group and overall, from the rows read (one in `every` by rowid, or by
    `seq` in latency_sample)."""
    position = "r.rowid" if table == "requests" else "r.seq"
    sample = (f"{position} % ? = 0", [every]) if every > 1 else None
    latencies, ttfbs = _read_latencies(conn, dims, window, filters, narrowing or sample, table)
    overall = _percentiles(
        [v for values in latencies.values() for v in values],
        [v for values in ttfbs.values() for v in values],
    )
    groups = {key: _percentiles(values, ttfbs.get(key, [])) for key, values in latencies.items()}
    return groups, overall


def _measured_in_sql(
    conn: LedgerConnection,
    dims: tuple[str, ...],
    window: TimeRange,
    filters: Filters,
    every: int,
    narrowing: tuple[str, list[object]] | None,
    table: str = "requests",
) -> Measured:
    """Percentiles per group and overall taken by the database, one row each (GROUPING SETS):
    only those cross the wire, however many requests they summarise."""
    dialect = dialect_of(conn)
    sample = dialect.sample_sql.format(percent=100 / every) if every > 1 else ""
    keys, source, params = _source(conn, dims, window, filters, narrowing, sample, table)
    named = [f"{key} AS k{i}" for i, key in enumerate(keys)]
    columns = ", ".join([*named, "r.latency_ms", "r.ttfb_ms"])
    key_names = ", ".join(f"x.k{i}" for i in range(len(keys)))
    sets = f"GROUP BY GROUPING SETS (({key_names}), ())" if keys else ""
    overall_flag = f"GROUPING({key_names}) > 0" if keys else "TRUE"
    sql = (
        f"SELECT {key_names + ', ' if keys else ''}{overall_flag}, "
        "percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY x.latency_ms), "
        "percentile_disc(0.5) WITHIN GROUP (ORDER BY x.ttfb_ms) "
        f"FROM (SELECT {columns} {source}) x {sets}"
    )
    groups: dict[Key, dict[str, float | None]] = {}
    overall = _percentiles([], [])
    for row in conn.execute(sql, params):
        *key, is_overall, ranks, ttfb50 = row  # one sort gives both latency ranks
        p50, p95 = ranks or (None, None)  # no request: NULL
        values = {"latency_p50_ms": p50, "latency_p95_ms": p95, "ttfb_p50_ms": ttfb50}
        if is_overall:
            overall = values
        else:
            groups[tuple(key)] = values
    return groups, overall


def _read_latencies(
    conn: LedgerConnection,
    dims: tuple[str, ...],
    window: TimeRange,
    filters: Filters,
    extra: tuple[str, list[object]] | None,
    table: str = "requests",
) -> tuple[dict[Key, list[float]], dict[Key, list[float]]]:
    """Latencies and times to first byte per group. The loop runs once per request read,
    so it is kept minimal: SQLite joins a multi-dimension key into one string."""
    dialect = dialect_of(conn)
    keys, source, params = _source(conn, dims, window, filters, extra, table=table)
    if len(keys) == 1:
        key_sql = keys[0]
    else:
        between, none = f" || {dialect.char(31)} || ", dialect.char(30)
        key_sql = between.join(f"COALESCE({key}, {none})" for key in keys) or "''"
    latencies: defaultdict[object, list[float]] = defaultdict(list)
    ttfbs: defaultdict[object, list[float]] = defaultdict(list)
    sql = f"SELECT {key_sql}, r.latency_ms, r.ttfb_ms {source}"
    for key, latency, ttfb in conn.execute(sql, params):
        latencies[key].append(latency)
        if ttfb is not None:
            ttfbs[key].append(ttfb)
    split = _split_key if len(keys) != 1 else lambda key: (key,)
    return (
        {split(key): values for key, values in latencies.items()},
        {split(key): values for key, values in ttfbs.items()},
    )


def _split_key(joined: str) -> Key:
    if not joined:
        return ()
    return tuple(None if part == _NONE else part for part in joined.split(_JOIN))


def _small_groups(counts: dict[Key, int], every: int, read_every: int = 1) -> list[Key]:
    """Groups the sample would leave short, smallest first, while the rows the narrowing
    filter would read (one request in `read_every`) stay within LATENCY_TOP_UP_MAX. The filter
    matches the cross product of the chosen groups' values, so that is what is counted: kept
    up to date as each chosen group widens it, through the groups holding each new value (so
    the whole choice costs about groups × dimensions steps, not groups² — `model,day` has
    thousands)."""
    chosen: list[Key] = []
    width = len(next(iter(counts), ()))
    allowed: list[set[str | None]] = [set() for _ in range(width)]
    holding: list[defaultdict[str | None, list[Key]]] = [defaultdict(list) for _ in range(width)]
    for group in counts:
        for i, value in enumerate(group):
            holding[i][value].append(group)
    matched_keys: set[Key] = set()
    matched = 0
    for key, n in sorted(counts.items(), key=lambda item: item[1])[:500]:
        if n // every >= LATENCY_MIN_SAMPLES:
            break
        new = [(i, value) for i, value in enumerate(key) if value not in allowed[i]]
        for i, value in new:
            allowed[i].add(value)
        widened = {
            group
            for i, value in new
            for group in holding[i][value]
            if group not in matched_keys
            and all(v in known for v, known in zip(group, allowed, strict=True))
        }
        more = sum(counts[group] for group in widened)
        if (matched + more) // read_every > LATENCY_TOP_UP_MAX:
            break
        matched += more
        matched_keys |= widened
        chosen.append(key)
    return chosen


def _group_filter(dims: tuple[str, ...], groups: list[Key]) -> tuple[str, list[object]] | None:
    """A WHERE clause over indexed columns matching (at least) the requests of `groups`;
    None when a dimension (a tag) cannot be filtered so."""
    clauses: list[str] = []
    params: list[object] = []
    for i, dim in enumerate(dims):
        values = {group[i] for group in groups}
        if dim.startswith("tag:"):
            return None
        if dim in TIME_DIMENSIONS:
            column, wanted = "r.day", sorted(d for v in values for d in _days_of(dim, v))
        else:
            column = {
                "provider": "r.provider",
                "model": "r.model",
                "key": "r.key_name",
                "endpoint": "r.endpoint",
                "host": "r.host",
            }[dim]
            wanted = sorted(v for v in values if v is not None)
        match = f"{column} IN ({', '.join('?' * len(wanted))})" if wanted else "1 = 0"
        if None in values:  # a missing model is stored as NULL or ''
            match = f"({match} OR {column} IS NULL OR {column} = '')"
        clauses.append(match)
        params.extend(wanted)
    return " AND ".join(clauses), params


def _days_of(dim: str, value: str | None) -> list[str]:
    """The days (ISO dates) a day / week (its Monday) / month (YYYY-MM) label covers."""
    if value is None:
        return []
    if dim == "day":
        return [value]
    if dim == "week":
        monday = date.fromisoformat(value)
        return [(monday + timedelta(days=i)).isoformat() for i in range(7)]
    year, month = (int(part) for part in value.split("-"))
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    return [(first + timedelta(days=i)).isoformat() for i in range((following - first).days)]


def _percentiles(latencies: list[float], ttfbs: list[float]) -> dict[str, float | None]:
    latencies.sort()
    ttfbs.sort()
    return {
        "latency_p50_ms": nearest_rank(latencies, 0.50),
        "latency_p95_ms": nearest_rank(latencies, 0.95),
        "ttfb_p50_ms": nearest_rank(ttfbs, 0.50),
    }


def nearest_rank(ordered: Sequence[float], p: float) -> float | None:
    """The p-th percentile by the nearest-rank method: the value at rank ceil(p·n)."""
    if not ordered:
        return None
    return ordered[max(math.ceil(p * len(ordered)), 1) - 1]
