"""Report queries: sums per group, the Report and its rows. Grouping and sums happen in
the database (SQLite, or a PostgreSQL ledger: store/backend.py); money stays in integer nano-USD.

Sums come from the rollups (exact sums kept by triggers, see migrations.py): `day_rollup` for
the whole UTC days of a window, `request_rollup` for the whole hours around them, and `requests`
only for the partial hours at its edges. A grouping or filter on tags reads `tag_rollup` (per
UTC day and whole tag set) for whole days, and the tags of each set are matched and grouped
here; a UTC day the window cuts is read from the requests of its smaller part (inside the
window; or outside it, taken from the day's rollup rows). A grouping on `host` (kept by
`day_rollup` alone, migration 013) reads it for whole UTC days and `requests` for the partial
days; `host` with tags, or a database without the rollups, reads `requests` alone. Every path gives the same numbers (tests/store/test_queries.py
and tests/store/test_tag_rollup.py check it). Latency percentiles are a second pass over the same
snapshot (store/latency.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

from meterfox_cli.money import from_nanousd
from meterfox_cli.pricing.quote import UNPRICED_SOURCE
from meterfox_cli.store.backend import Ledger, as_ledger
from meterfox_cli.store.dialect import DAY_S, HOUR_S, LedgerConnection, dialect_of
from meterfox_cli.store.dimensions import (
    RAW_DIMENSIONS,
    TIME_DIMENSIONS,
    TOTAL_GROUP,
    dimension_sql,
    label,
    parse_dimensions,
    tag_joins,
)
from meterfox_cli.store.latency import latency_percentiles
from meterfox_cli.store.select import NO_FILTERS, Filters, TimeRange, filter_sql, window_sql
from meterfox_cli.store.tagsets import decode, encode

_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nanousd",
    "priced_requests",
    "unpriced_requests",
    "unpriced_input_tokens",
    "unpriced_output_tokens",
)
# The same sums over single request rows `r`, matching the rollup's triggers (in SQL both
# backends run alike: a condition counts through CASE, as PostgreSQL cannot sum a boolean).
_UNPRICED = f"r.cost_source = '{UNPRICED_SOURCE}'"
_REQUEST_SUMS = (
    "1",
    "CASE WHEN r.status >= 400 OR r.outcome != 'ok' THEN 1 ELSE 0 END",
    "r.input_tokens",
    "r.cached_tokens",
    "r.cache_write_tokens",
    "r.output_tokens",
    "r.reasoning_tokens",
    "r.cost_nanousd",
    "CASE WHEN r.cost_nanousd IS NOT NULL THEN 1 ELSE 0 END",
    f"CASE WHEN {_UNPRICED} THEN 1 ELSE 0 END",
    f"CASE WHEN {_UNPRICED} THEN r.input_tokens ELSE 0 END",
    f"CASE WHEN {_UNPRICED} THEN r.output_tokens ELSE 0 END",
)
_KEY_COLUMNS = "r.day, r.provider, COALESCE(r.model, '') AS model, r.key_name, r.endpoint"


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One group's sums. The first ten fields are the JSON contract of `meterfox report`."""

    group: str
    requests: int
    errors: int
    input_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None  # None when no request in the group could be priced
    unpriced_requests: int
    dims: tuple[str | None, ...] = ()  # one value per dimension, None when unknown
    cost_nanousd: int | None = None
    priced_requests: int = 0
    unpriced_input_tokens: int = 0
    unpriced_output_tokens: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    ttfb_p50_ms: float | None = None
    latency_sample_every: int = 1  # percentiles from every request (1) or one in n

    @property
    def priced_share(self) -> float | None:
        """Priced requests over those that needed a price (requests with no usage need none)."""
        needing = self.priced_requests + self.unpriced_requests
        return None if needing == 0 else self.priced_requests / needing


@dataclass(frozen=True, slots=True)
class Report:
    dimensions: tuple[str, ...]
    window: TimeRange
    filters: Filters
    rows: tuple[ReportRow, ...]
    total: ReportRow
    sample_every: int = 1  # the latency sample of the largest groups: every request, or 1 in n


@dataclass(slots=True)
class _Acc:
    sums: list[int] = field(default_factory=lambda: [0] * len(_SUMS))


def build_report(
    conn: LedgerConnection,
    dimensions: Sequence[str],
    window: TimeRange,
    filters: Filters = NO_FILTERS,
    *,
    latency: bool = True,
) -> Report:
    """Sums per group, most expensive first (oldest first when grouped by time first), over
    either backend.

    Both passes read one snapshot (a read transaction: under WAL it never blocks the writer),
    so the latency pass sees exactly the requests that were summed."""
    if conn.in_transaction:
        return _build_report(conn, tuple(dimensions), window, filters, latency)
    conn.execute(dialect_of(conn).begin_snapshot_sql)
    try:
        return _build_report(conn, tuple(dimensions), window, filters, latency)
    finally:
        conn.execute("COMMIT")


def _build_report(
    conn: LedgerConnection,
    dims: tuple[str, ...],
    window: TimeRange,
    filters: Filters,
    latency: bool,
) -> Report:
    groups = _sums(conn, dims, window, filters)
    total = _row((), _total(groups.values()))
    rows = [_row(key, acc.sums) for key, acc in groups.items()]
    sample_every = 1
    if latency and rows:
        counts = {key: acc.sums[0] for key, acc in groups.items()}
        sample_every, percentiles = latency_percentiles(conn, dims, window, filters, counts)
        unseen = {"latency_sample_every": sample_every}  # no request of it in the sample
        rows = [replace(row, **percentiles.get(row.dims, unseen)) for row in rows]
        total = replace(total, **percentiles.get(None, {}))
    rows.sort(key=_order(dims))
    labelled = tuple(replace(row, group=label(dims, row.dims)) for row in rows)
    return Report(dims, window, filters, labelled, total, sample_every)


def read_report(
    ledger: Path | Ledger,
    dimensions: Sequence[str],
    window: TimeRange,
    filters: Filters = NO_FILTERS,
    *,
    latency: bool = True,
) -> Report | None:
    """The report over the ledger (or the SQLite file at a path), opened read-only; None when
    nothing has been recorded yet (no database, or no request in it)."""
    conn = as_ledger(ledger).open_reader()
    if conn is None:
        return None
    try:
        return build_report(conn, dimensions, window, filters, latency=latency)
    finally:
        conn.close()


def empty_report(dimensions: Sequence[str], window: TimeRange, filters: Filters) -> Report:
    return Report(tuple(dimensions), window, filters, (), _row((), [0] * len(_SUMS)))


def group_by(
    conn: LedgerConnection, by: str, window: TimeRange, filters: Filters = NO_FILTERS
) -> list[ReportRow]:
    """The rows of a report grouped by `by` (e.g. `model` or `provider,model`)."""
    return list(build_report(conn, parse_dimensions(by), window, filters).rows)


def has_rollup(conn: LedgerConnection, table: str = "request_rollup") -> bool:
    found = conn.execute(dialect_of(conn).table_exists_sql, (table,)).fetchone()
    return found is not None


# --- sums ---------------------------------------------------------------------------------


def _sums(
    conn: LedgerConnection, dims: tuple[str, ...], window: TimeRange, filters: Filters
) -> dict[tuple[str | None, ...], _Acc]:
    tagged = filters.tags or any(dim.startswith("tag:") for dim in dims)
    if tagged and not RAW_DIMENSIONS.intersection(dims) and has_rollup(conn, "tag_rollup"):
        return _tag_sums(conn, dims, window, filters)
    return _grouped_sums(conn, dims, _source(conn, dims, window, filters))


def _grouped_sums(
    conn: LedgerConnection, dims: tuple[str, ...], source_sql: tuple[str, list[object]]
) -> dict[tuple[str | None, ...], _Acc]:
    source, params = source_sql
    keys = [dimension_sql(dim, i, dialect=dialect_of(conn)) for i, dim in enumerate(dims)]
    select = ", ".join([*keys, *(f"SUM(x.{name})" for name in _SUMS)])
    group = f"GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
    sql = f"SELECT {select} FROM ({source}) x {group}"
    groups: dict[tuple[str | None, ...], _Acc] = {}
    for row in conn.execute(sql, params):
        key = tuple(row[: len(dims)])
        if row[len(dims)] is None:  # no request at all (an ungrouped query over nothing)
            continue
        # int(): PostgreSQL sums integers as numeric (a Decimal here); SQLite's are ints.
        groups[key] = _Acc([int(value or 0) for value in row[len(dims) :]])
    return groups


def _source(
    conn: LedgerConnection, dims: tuple[str, ...], window: TimeRange, filters: Filters
) -> tuple[str, list[object]]:
    """The rows to sum: `day_rollup` rows for whole UTC days, `request_rollup` rows for the
    whole hours around them, request rows for the partial hours at the edges (or request rows
    alone, for a dimension the rollups do not keep)."""
    tagged = filters.tags or any(dim.startswith("tag:") for dim in dims)
    raw = RAW_DIMENSIONS.intersection(dims)
    if raw and not tagged and _day_rollup_keeps(conn, raw):
        return _daily_source(conn, dims, window, filters)
    if tagged or raw or not has_rollup(conn):
        return _request_source(dims, filters, window_sql(window))
    first, end = _whole_buckets(window, HOUR_S)
    if first is not None and end is not None and first >= end:
        return _request_source(dims, filters, window_sql(window))
    parts = _rolled_up_parts(conn, filters, first, end)
    edges = _edge_sql(window, first, end, HOUR_S, dialect_of(conn).hour("r.ts"))
    if edges is not None:
        parts.append(_request_source(dims, filters, edges))
    return " UNION ALL ".join(sql for sql, _ in parts), [p for _, ps in parts for p in ps]


def _day_rollup_keeps(conn: LedgerConnection, columns: Iterable[str]) -> bool:
    """Whether `day_rollup` exists and is keyed by these columns too (`host`: migration 013)."""
    if not has_rollup(conn, "day_rollup"):
        return False
    kept = {column[0] for column in conn.execute("SELECT * FROM day_rollup LIMIT 0").description}
    return kept.issuperset(columns)


def _daily_source(
    conn: LedgerConnection, dims: tuple[str, ...], window: TimeRange, filters: Filters
) -> tuple[str, list[object]]:
    """For a dimension only `day_rollup` keeps (host): its rows for the window's whole UTC
    days, request rows for the partial days at the edges (or for a window shorter than a day),
    split by the trigger's own UTC day."""
    first, end = _whole_buckets(window, DAY_S)
    if first is not None and end is not None and first >= end:
        return _request_source(dims, filters, window_sql(window))
    raw = [dim for dim in dims if dim in RAW_DIMENSIONS]
    parts = [_rollup_source(filters, first, end, "day_rollup", "utc_day", raw)]
    edges = _edge_sql(window, first, end, DAY_S, dialect_of(conn).bucket("r.ts", DAY_S))
    if edges is not None:
        parts.append(_request_source(dims, filters, edges))
    return " UNION ALL ".join(sql for sql, _ in parts), [p for _, ps in parts for p in ps]


def _rolled_up_parts(
    conn: LedgerConnection, filters: Filters, first: int | None, end: int | None
) -> list[tuple[str, list[object]]]:
    """Hours [first, end): the whole UTC days among them from `day_rollup` (when the database
    has it), the rest from `request_rollup`. Day d holds hours [24d, 24d + 24)."""
    days = 24
    first_day = None if first is None else -(-first // days)
    end_day = None if end is None else end // days
    if (first_day is not None and end_day is not None and first_day >= end_day) or not has_rollup(
        conn, "day_rollup"
    ):
        return [_rollup_source(filters, first, end)]
    parts = [_rollup_source(filters, first_day, end_day, "day_rollup", "utc_day")]
    if first is not None and first_day is not None and first < first_day * days:
        parts.append(_rollup_source(filters, first, first_day * days))
    if end is not None and end_day is not None and end_day * days < end:
        parts.append(_rollup_source(filters, end_day * days, end))
    return parts


def _whole_buckets(window: TimeRange, size: int) -> tuple[int | None, int | None]:
    """Spans of `size` seconds [first, end) lying wholly inside the window (hours, or UTC
    days); None: unbounded on that side."""
    first = None if window.since is None else math.ceil(window.since / size)
    end = None if window.until is None else math.floor(window.until / size)
    return first, end


def _rollup_source(
    filters: Filters,
    first: int | None,
    end: int | None,
    table: str = "request_rollup",
    bucket: str = "hour",
    raw: Sequence[str] = (),
) -> tuple[str, list[object]]:
    clauses, params = filter_sql(replace(filters, tags=()), "x")
    if first is not None:
        clauses.append(f"x.{bucket} >= ?")
        params.append(first)
    if end is not None:
        clauses.append(f"x.{bucket} < ?")
        params.append(end)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    keys = ["x.day", "x.provider", "x.model", "x.key_name", "x.endpoint"]
    columns = ", ".join([*keys, *(f"x.{dim}" for dim in raw)])
    sums = ", ".join(f"x.{name}" for name in _SUMS)
    return f"SELECT {columns}, {sums} FROM {table} x {where}", params


def _request_source(
    dims: tuple[str, ...],
    filters: Filters,
    window: tuple[str, list[object]],
) -> tuple[str, list[object]]:
    joins, params, tag_columns = tag_joins(dims)
    clauses, filter_params = filter_sql(filters, "r")
    window_sql, window_params = window
    if window_sql:
        clauses.append(window_sql)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sums = ", ".join(f"{expr} AS {name}" for expr, name in zip(_REQUEST_SUMS, _SUMS, strict=True))
    raw_columns = [f"r.{dim}" for dim in dims if dim in RAW_DIMENSIONS]
    columns = ", ".join([_KEY_COLUMNS, *raw_columns, *tag_columns, sums])
    sql = f"SELECT {columns} FROM requests r {joins} {where}"
    return sql, [*params, *filter_params, *window_params]


def _edge_sql(
    window: TimeRange, first: int | None, end: int | None, size: int, bucket: str
) -> tuple[str, list[object]] | None:
    """Requests in the window's partial spans (hours or days of `size` seconds). The `bucket`
    of a request is computed exactly as the rollup's trigger computes it, so no request is
    counted twice or missed at a boundary."""
    parts, params = [], []
    if window.since is not None and first is not None and first * size != window.since:
        parts.append(f"(r.ts >= ? AND r.ts < ? AND {bucket} < ?)")
        params.extend([window.since, first * size + 1, first])
    if window.until is not None and end is not None and end * size != window.until:
        parts.append(f"(r.ts < ? AND r.ts >= ? AND {bucket} >= ?)")
        params.extend([window.until, end * size - 1, end])
    if not parts:
        return None
    return f"({' OR '.join(parts)})", params


def _tag_sums(
    conn: LedgerConnection, dims: tuple[str, ...], window: TimeRange, filters: Filters
) -> dict[tuple[str | None, ...], _Acc]:
    """Sums for a grouping or filter on tags: `tag_rollup` for the window's whole UTC days,
    and a partial UTC day at an edge from the request rows (joined to their tags) of whichever
    part of it is smaller: the part inside the window, added, or the part outside, taken from
    that whole day's `tag_rollup` rows (a window shorter than a day: its request rows)."""
    first, end = _whole_buckets(window, DAY_S)
    if first is not None and end is not None and first >= end:
        return _grouped_sums(conn, dims, _request_source(dims, filters, window_sql(window)))
    groups = _tagset_sums(conn, dims, filters, first, end)
    day_of = dialect_of(conn).bucket("r.ts", DAY_S)
    for day, inside, outside in _partial_days(window, first, end, day_of):
        if _requests_in(conn, outside) < _requests_in(conn, inside):
            _add(groups, _tagset_sums(conn, dims, filters, day, day + 1))
            _add(groups, _grouped_sums(conn, dims, _request_source(dims, filters, outside)), -1)
        else:
            _add(groups, _grouped_sums(conn, dims, _request_source(dims, filters, inside)))
    return {key: acc for key, acc in groups.items() if acc.sums[0]}


Clause = tuple[str, list[object]]


def _partial_days(
    window: TimeRange, first: int | None, end: int | None, day_of: str
) -> list[tuple[int, Clause, Clause]]:
    """The UTC days the window cuts (the one before `first`, the one at `end`), each with the
    requests of that day inside the window and those outside it. `day_of` is the trigger's own
    UTC day of a request, so the two parts are exactly the requests the day's rollup rows sum."""
    days: list[tuple[int, Clause, Clause]] = []
    if window.since is not None and first is not None and first * DAY_S != window.since:
        day, since = first - 1, window.since
        inside = f"r.ts >= ? AND r.ts < ? AND {day_of} = ?", [since, first * DAY_S + 1, day]
        outside = f"r.ts < ? AND r.ts >= ? AND {day_of} = ?", [since, day * DAY_S - 1, day]
        days.append((day, inside, outside))
    if window.until is not None and end is not None and end * DAY_S != window.until:
        day, until = end, window.until
        inside = f"r.ts < ? AND r.ts >= ? AND {day_of} = ?", [until, day * DAY_S - 1, day]
        outside = f"r.ts >= ? AND r.ts < ? AND {day_of} = ?", [until, (day + 1) * DAY_S + 1, day]
        days.append((day, inside, outside))
    return days


def _requests_in(conn: LedgerConnection, clause: Clause) -> int:
    """How many requests match `clause` (all filters aside): an index-only count on `ts`."""
    where, params = clause
    return conn.execute(f"SELECT COUNT(*) FROM requests r WHERE {where}", params).fetchone()[0]


def _add(
    groups: dict[tuple[str | None, ...], _Acc],
    more: dict[tuple[str | None, ...], _Acc],
    sign: int = 1,
) -> None:
    for key, acc in more.items():
        into = groups.setdefault(key, _Acc())
        into.sums = [a + sign * b for a, b in zip(into.sums, acc.sums, strict=True)]


def _tagset_sums(
    conn: LedgerConnection,
    dims: tuple[str, ...],
    filters: Filters,
    first: int | None,
    end: int | None,
) -> dict[tuple[str | None, ...], _Acc]:
    """`tag_rollup` summed per (the grouping's other dimensions, tag set) in the database;
    each tag set is then matched against the tag filters and split into its tag dimensions
    here (a window holds few distinct sets). A tag filter leaves out in SQL the sets that do
    not hold its encoded pair (a LIKE: a superset, checked exactly here). Groups of zero
    requests (left by a tag's move from one set to another) are skipped."""
    dialect = dialect_of(conn)
    plain = [dimension_sql(d, i, dialect=dialect) for i, d in enumerate(dims) if d[:4] != "tag:"]
    clauses, params = filter_sql(replace(filters, tags=()), "x")
    for name, value in filters.tags:
        clauses.append("x.tagset LIKE ? ESCAPE '\\'")
        params.append(f"%{_like_escaped(encode({name: value}))}%")
    if first is not None:
        clauses.append("x.utc_day >= ?")
        params.append(first)
    if end is not None:
        clauses.append("x.utc_day < ?")
        params.append(end)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    select = ", ".join([*plain, "x.tagset", *(f"SUM(x.{name})" for name in _SUMS)])
    group = ", ".join(str(i + 1) for i in range(len(plain) + 1))
    sql = f"SELECT {select} FROM tag_rollup x {where} GROUP BY {group}"
    groups: dict[tuple[str | None, ...], _Acc] = {}
    for row in conn.execute(sql, params):
        tags = dict(decode(row[len(plain)]))
        if any(tags.get(name) != value for name, value in filters.tags):
            continue
        values = iter(row[: len(plain)])
        key = tuple(tags.get(d[4:]) if d[:4] == "tag:" else next(values) for d in dims)
        acc = groups.setdefault(key, _Acc())
        acc.sums = [a + int(b or 0) for a, b in zip(acc.sums, row[len(plain) + 1 :], strict=True)]
    return {key: acc for key, acc in groups.items() if acc.sums[0]}


def _like_escaped(text: str) -> str:
    """`text` matched literally by LIKE … ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- rows ----------------------------------------------------------------------------------


def _total(groups: Iterable[_Acc]) -> list[int]:
    total = [0] * len(_SUMS)
    for acc in groups:
        total = [a + b for a, b in zip(total, acc.sums, strict=True)]
    return total


def _row(dims: tuple[str | None, ...], sums: list[int]) -> ReportRow:
    named = dict(zip(_SUMS, sums, strict=True))
    nano = named["cost_nanousd"] if named["priced_requests"] else None
    return ReportRow(
        group=TOTAL_GROUP,
        requests=named["requests"],
        errors=named["errors"],
        input_tokens=named["input_tokens"],
        cached_tokens=named["cached_tokens"],
        cache_write_tokens=named["cache_write_tokens"],
        output_tokens=named["output_tokens"],
        reasoning_tokens=named["reasoning_tokens"],
        cost_usd=from_nanousd(nano),
        unpriced_requests=named["unpriced_requests"],
        dims=dims,
        cost_nanousd=nano,
        priced_requests=named["priced_requests"],
        unpriced_input_tokens=named["unpriced_input_tokens"],
        unpriced_output_tokens=named["unpriced_output_tokens"],
    )


def _order(dims: tuple[str, ...]):
    """Most expensive first; groups led by a time dimension go oldest first, then by cost."""
    timed = bool(dims) and dims[0] in TIME_DIMENSIONS

    def key(row: ReportRow) -> tuple:
        cost = row.cost_nanousd
        by_cost = (cost is None, -(cost or 0), -row.requests, _sortable(row.dims))
        return ((row.dims[0] or ""), *by_cost) if timed else by_cost

    return key


def _sortable(values: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is None, value or "") for value in values)
