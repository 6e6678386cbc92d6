"""Report queries. Grouping and sums happen in SQLite; money stays in integer nano-USD.

Sums come from `request_rollup` (exact per-hour sums kept by triggers, see migrations.py) for
the whole hours of a window, and from `requests` only for the partial hours at its edges; a
grouping or filter on tags, or a database without the rollup, reads `requests` alone. Both
paths give the same numbers (tests/store/test_queries.py checks it).

Latency percentiles (nearest rank) need the individual requests: a second pass reads them
from the narrow covering index `requests_latency`. Reading a request costs about a
microsecond in Python (sorting a million in SQLite costs far more), so a window of more than
LATENCY_SAMPLE_MAX requests is sampled one in m by rowid, and the groups that sample leaves
thin are read in full (see `_latency`); each row says how its percentiles were taken.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.store.db import has_requests, open_readonly

UNKNOWN_GROUP = "(unknown)"
UNTAGGED_GROUP = "(untagged)"
TOTAL_GROUP = "total"
GROUP_SEPARATOR = " / "
LATENCY_SAMPLE_MAX = 100_000  # requests the uniform latency pass reads at most
LATENCY_MIN_SAMPLES = 1_000  # a group sampled thinner than this is read in full…
LATENCY_TOP_UP_MAX = 100_000  # …as far as this many more requests
HOUR_S = 3600

# Dimension → SQL over a rollup or request row named {t} (they share these column names).
_COLUMN_DIMENSIONS = {
    "provider": "{t}.provider",
    "model": "NULLIF({t}.model, '')",
    "key": "{t}.key_name",
    "endpoint": "{t}.endpoint",
    "day": "{t}.day",
    "week": "date({t}.day, 'weekday 0', '-6 days')",  # the Monday that starts the ISO week
    "month": "substr({t}.day, 1, 7)",
}
TIME_DIMENSIONS = frozenset({"day", "week", "month"})
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
# The same sums over single request rows `r`, matching the rollup's triggers.
_REQUEST_SUMS = (
    "1",
    "(r.status >= 400 OR r.outcome != 'ok')",
    "r.input_tokens",
    "r.cached_tokens",
    "r.cache_write_tokens",
    "r.output_tokens",
    "r.reasoning_tokens",
    "r.cost_nanousd",
    "(r.cost_nanousd IS NOT NULL)",
    "(r.cost_source = 'unpriced')",
    "IIF(r.cost_source = 'unpriced', r.input_tokens, 0)",
    "IIF(r.cost_source = 'unpriced', r.output_tokens, 0)",
)
_KEY_COLUMNS = "r.day, r.provider, IFNULL(r.model, '') AS model, r.key_name, r.endpoint"


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
class TimeRange:
    since: float | None = None  # unix seconds, inclusive
    until: float | None = None  # unix seconds, exclusive


@dataclass(frozen=True, slots=True)
class Filters:
    """Keep only requests matching every given field (any of the values within a field)."""

    providers: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()  # (name, value), all must match


NO_FILTERS = Filters()


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


def parse_dimensions(text: str) -> tuple[str, ...]:
    """`provider,model` / `tag:Feature` / `day` → normalised dimension names, checked."""
    dims: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if name.lower().startswith("tag:"):
            tag = name[4:].strip().lower()
            if not tag:
                raise MeterFoxError("--by tag:NAME needs a tag name, e.g. --by tag:feature")
            name = f"tag:{tag}"
        else:
            name = name.lower()
            if name == "key_name":
                name = "key"
            if name not in _COLUMN_DIMENSIONS:
                known = ", ".join([*_COLUMN_DIMENSIONS, "tag:NAME"])
                raise MeterFoxError(f"cannot group by {part.strip()!r}; use one of: {known}")
        if name in dims:
            raise MeterFoxError(f"--by names {name!r} twice")
        dims.append(name)
    return tuple(dims)


def build_report(
    conn: sqlite3.Connection,
    dimensions: Sequence[str],
    window: TimeRange,
    filters: Filters = NO_FILTERS,
    *,
    latency: bool = True,
) -> Report:
    """Sums per group, most expensive first (oldest first when grouped by time first).

    Both passes read one snapshot (a read transaction: under WAL it never blocks the writer),
    so the latency pass sees exactly the requests that were summed."""
    if conn.in_transaction:
        return _build_report(conn, tuple(dimensions), window, filters, latency)
    conn.execute("BEGIN")
    try:
        return _build_report(conn, tuple(dimensions), window, filters, latency)
    finally:
        conn.execute("COMMIT")


def _build_report(
    conn: sqlite3.Connection,
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
        sample_every, percentiles = _latency(conn, dims, window, filters, counts)
        unseen = {"latency_sample_every": sample_every}  # no request of it in the sample
        rows = [replace(row, **percentiles.get(row.dims, unseen)) for row in rows]
        total = replace(total, **percentiles.get(None, {}))
    rows.sort(key=_order(dims))
    labelled = tuple(replace(row, group=_label(dims, row.dims)) for row in rows)
    return Report(dims, window, filters, labelled, total, sample_every)


def read_report(
    path: Path,
    dimensions: Sequence[str],
    window: TimeRange,
    filters: Filters = NO_FILTERS,
    *,
    latency: bool = True,
) -> Report | None:
    """The report over the database at `path`, opened read-only; None when nothing has been
    recorded yet (no database, or no request in it)."""
    conn = open_readonly(path)
    if conn is None:
        return None
    try:
        if not has_requests(conn):
            return None
        return build_report(conn, dimensions, window, filters, latency=latency)
    finally:
        conn.close()


def empty_report(dimensions: Sequence[str], window: TimeRange, filters: Filters) -> Report:
    return Report(tuple(dimensions), window, filters, (), _row((), [0] * len(_SUMS)))


def group_by(
    conn: sqlite3.Connection, by: str, window: TimeRange, filters: Filters = NO_FILTERS
) -> list[ReportRow]:
    """The rows of a report grouped by `by` (e.g. `model` or `provider,model`)."""
    return list(build_report(conn, parse_dimensions(by), window, filters).rows)


def has_rollup(conn: sqlite3.Connection) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'request_rollup'"
    ).fetchone()
    return found is not None


# --- sums ---------------------------------------------------------------------------------


def _sums(
    conn: sqlite3.Connection, dims: tuple[str, ...], window: TimeRange, filters: Filters
) -> dict[tuple[str | None, ...], _Acc]:
    source, params = _source(conn, dims, window, filters)
    keys = [_dimension_sql(dim, i) for i, dim in enumerate(dims)]
    select = ", ".join([*keys, *(f"SUM(x.{name})" for name in _SUMS)])
    group = f"GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
    sql = f"SELECT {select} FROM ({source}) x {group}"
    groups: dict[tuple[str | None, ...], _Acc] = {}
    for row in conn.execute(sql, params):
        key = tuple(row[: len(dims)])
        if row[len(dims)] is None:  # no request at all (an ungrouped query over nothing)
            continue
        groups[key] = _Acc([value or 0 for value in row[len(dims) :]])
    return groups


def _source(
    conn: sqlite3.Connection, dims: tuple[str, ...], window: TimeRange, filters: Filters
) -> tuple[str, list[object]]:
    """The rows to sum: rollup rows for whole hours, request rows for the rest."""
    tagged = filters.tags or any(dim.startswith("tag:") for dim in dims)
    if tagged or not has_rollup(conn):
        return _request_source(dims, filters, window_sql(window))
    first, end = _whole_hours(window)
    if first is None or end is None or first < end:
        rollup, rollup_params = _rollup_source(filters, first, end)
        edges = _edge_sql(window, first, end)
        if edges is None:
            return rollup, rollup_params
        raw, raw_params = _request_source(dims, filters, edges)
        return f"{rollup} UNION ALL {raw}", [*rollup_params, *raw_params]
    return _request_source(dims, filters, window_sql(window))


def _whole_hours(window: TimeRange) -> tuple[int | None, int | None]:
    """Hours [first, end) lying wholly inside the window; None: unbounded on that side."""
    first = None if window.since is None else math.ceil(window.since / HOUR_S)
    end = None if window.until is None else math.floor(window.until / HOUR_S)
    return first, end


def _rollup_source(
    filters: Filters, first: int | None, end: int | None
) -> tuple[str, list[object]]:
    clauses, params = filter_sql(replace(filters, tags=()), "x")
    if first is not None:
        clauses.append("x.hour >= ?")
        params.append(first)
    if end is not None:
        clauses.append("x.hour < ?")
        params.append(end)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    columns = ", ".join(["x.day", "x.provider", "x.model", "x.key_name", "x.endpoint"])
    sums = ", ".join(f"x.{name}" for name in _SUMS)
    return f"SELECT {columns}, {sums} FROM request_rollup x {where}", params


def _request_source(
    dims: tuple[str, ...],
    filters: Filters,
    window: tuple[str, list[object]],
) -> tuple[str, list[object]]:
    joins, params, tag_columns = _tag_joins(dims)
    clauses, filter_params = filter_sql(filters, "r")
    window_sql, window_params = window
    if window_sql:
        clauses.append(window_sql)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sums = ", ".join(f"{expr} AS {name}" for expr, name in zip(_REQUEST_SUMS, _SUMS, strict=True))
    columns = ", ".join([_KEY_COLUMNS, *tag_columns, sums])
    sql = f"SELECT {columns} FROM requests r {joins} {where}"
    return sql, [*params, *filter_params, *window_params]


def _tag_joins(dims: tuple[str, ...]) -> tuple[str, list[object], list[str]]:
    joins, params, columns = [], [], []
    for i, dim in enumerate(dims):
        if dim.startswith("tag:"):
            joins.append(f"LEFT JOIN request_tags t{i} ON t{i}.request_id = r.id AND t{i}.name = ?")
            params.append(dim[4:])
            columns.append(f"t{i}.value AS tag{i}")
    return " ".join(joins), params, columns


def filter_sql(filters: Filters, alias: str = "r") -> tuple[list[str], list[object]]:
    """WHERE clauses (AND-ed) for `filters` over a `requests` row (or, without tags, a rollup
    row) named `alias`."""
    clauses: list[str] = []
    params: list[object] = []
    for column, values in (
        ("provider", filters.providers),
        ("model", filters.models),
        ("key_name", filters.keys),
    ):
        if values:
            clauses.append(f"{alias}.{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    for name, value in filters.tags:
        clauses.append(
            "EXISTS (SELECT 1 FROM request_tags f "
            f"WHERE f.request_id = {alias}.id AND f.name = ? AND f.value = ?)"
        )
        params.extend([name, value])
    return clauses, params


def window_sql(window: TimeRange) -> tuple[str, list[object]]:
    """A WHERE clause (maybe empty) keeping requests `r` inside the window."""
    clauses, params = [], []
    if window.since is not None:
        clauses.append("r.ts >= ?")
        params.append(window.since)
    if window.until is not None:
        clauses.append("r.ts < ?")
        params.append(window.until)
    return " AND ".join(clauses), params


def _edge_sql(
    window: TimeRange, first: int | None, end: int | None
) -> tuple[str, list[object]] | None:
    """Requests in the window's partial hours. The hour is computed exactly as the rollup's
    trigger computes it, so no request is counted twice or missed at a boundary."""
    hour = f"CAST(r.ts / {HOUR_S} AS INTEGER)"
    parts, params = [], []
    if window.since is not None and first is not None and first * HOUR_S != window.since:
        parts.append(f"(r.ts >= ? AND r.ts < ? AND {hour} < ?)")
        params.extend([window.since, first * HOUR_S + 1, first])
    if window.until is not None and end is not None and end * HOUR_S != window.until:
        parts.append(f"(r.ts < ? AND r.ts >= ? AND {hour} >= ?)")
        params.extend([window.until, end * HOUR_S - 1, end])
    if not parts:
        return None
    return f"({' OR '.join(parts)})", params


def _dimension_sql(dim: str, index: int, alias: str = "x") -> str:
    """The SQL for a dimension over the summed source `x` or over a request row `r`."""
    if dim.startswith("tag:"):
        return f"x.tag{index}" if alias == "x" else f"t{index}.value"
    return _COLUMN_DIMENSIONS[dim].format(t=alias)


# --- latency percentiles -------------------------------------------------------------------


_NONE = "\x1e"  # a dimension value that is NULL, inside a joined latency-pass key
_JOIN = "\x1f"  # between dimension values, inside a joined latency-pass key

Key = tuple[str | None, ...]


def _latency(
    conn: sqlite3.Connection,
    dims: tuple[str, ...],
    window: TimeRange,
    filters: Filters,
    counts: dict[Key, int],
) -> tuple[int, dict[Key | None, dict[str, object]]]:
    """p50/p95 latency and p50 time to first byte per group (key None: all groups).

    Every request is read when the window holds at most LATENCY_SAMPLE_MAX; else one in
    `every` by rowid (a systematic sample, spread evenly over the recording order), and then
    every request of the groups that sample leaves with fewer than LATENCY_MIN_SAMPLES, as far
    as LATENCY_TOP_UP_MAX allows and the grouping can be filtered on indexed columns.
    """
    every = max(1, math.ceil(sum(counts.values()) / LATENCY_SAMPLE_MAX))
    sample = ("r.rowid % ? = 0", [every]) if every > 1 else None
    latencies, ttfbs = _read_latencies(conn, dims, window, filters, sample)
    overall = _percentiles(
        [v for values in latencies.values() for v in values],
        [v for values in ttfbs.values() for v in values],
    )
    exact: set[Key] = set(counts) if every == 1 else set()
    small = _small_groups(counts, every) if every > 1 else []
    narrowing = _group_filter(dims, small) if small else None
    if narrowing is not None:
        full, full_ttfbs = _read_latencies(conn, dims, window, filters, narrowing)
        for key in small:  # the narrowing filter may match more than these groups
            latencies[key] = full.get(key, [])
            ttfbs[key] = full_ttfbs.get(key, [])
        exact.update(small)
    result: dict[Key | None, dict[str, object]] = {
        key: {
            **_percentiles(values, ttfbs.get(key, [])),
            "latency_sample_every": 1 if key in exact else every,
        }
        for key, values in latencies.items()
    }
    result[None] = {**overall, "latency_sample_every": every}
    return every, result


def _read_latencies(
    conn: sqlite3.Connection,
    dims: tuple[str, ...],
    window: TimeRange,
    filters: Filters,
    extra: tuple[str, list[object]] | None,
) -> tuple[dict[Key, list[float]], dict[Key, list[float]]]:
    """Latencies and times to first byte per group. The loop runs once per request read,
    so it is kept minimal: SQLite joins a multi-dimension key into one string."""
    keys = [_dimension_sql(dim, i, "r") for i, dim in enumerate(dims)]
    joins, params, _ = _tag_joins(dims)
    clauses, filter_params = filter_sql(filters, "r")
    window_clause, window_params = window_sql(window)
    clauses += [window_clause] if window_clause else []
    params += [*filter_params, *window_params]
    if extra is not None:
        clauses.append(extra[0])
        params += extra[1]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    if len(keys) == 1:
        key_sql = keys[0]
    else:
        key_sql = " || char(31) || ".join(f"IFNULL({key}, char(30))" for key in keys) or "''"
    latencies: defaultdict[object, list[float]] = defaultdict(list)
    ttfbs: defaultdict[object, list[float]] = defaultdict(list)
    sql = f"SELECT {key_sql}, r.latency_ms, r.ttfb_ms FROM requests r {joins} {where}"
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


def _small_groups(counts: dict[Key, int], every: int) -> list[Key]:
    """Groups the sample would leave short, smallest first, while every request the
    narrowing filter would read stays within LATENCY_TOP_UP_MAX. The filter matches the
    cross product of the chosen groups' values, so that is what is counted."""
    chosen: list[Key] = []
    values: list[set[str | None]] = [set() for _ in next(iter(counts), ())]
    for key, n in sorted(counts.items(), key=lambda item: item[1])[:500]:
        if n // every >= LATENCY_MIN_SAMPLES:
            break
        widened = [known | {value} for known, value in zip(values, key, strict=True)]
        matched = sum(
            count
            for group, count in counts.items()
            if all(value in allowed for value, allowed in zip(group, widened, strict=True))
        )
        if matched > LATENCY_TOP_UP_MAX:
            break
        chosen.append(key)
        values = widened
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
            }[dim]
            wanted = sorted(v for v in values if v is not None)
        match = f"{column} IN ({', '.join('?' * len(wanted))})" if wanted else "0"
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
        cost_usd=None if nano is None else Decimal(nano).scaleb(-9),
        unpriced_requests=named["unpriced_requests"],
        dims=dims,
        cost_nanousd=nano,
        priced_requests=named["priced_requests"],
        unpriced_input_tokens=named["unpriced_input_tokens"],
        unpriced_output_tokens=named["unpriced_output_tokens"],
    )


def _label(dims: tuple[str, ...], values: tuple[str | None, ...]) -> str:
    parts = [
        value
        if value is not None
        else (UNTAGGED_GROUP if dim.startswith("tag:") else UNKNOWN_GROUP)
        for dim, value in zip(dims, values, strict=True)
    ]
    return GROUP_SEPARATOR.join(parts) or TOTAL_GROUP


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
