"""What the providers billed, as `meterfox sync` stores it: the `billed_buckets` rows, replaced a
provider's window at a time in one transaction, the per-provider `sync_state`, and the sums
`reconcile` and `report --source billed` read. Never touches the proxy's `requests`."""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime, timedelta

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.money import from_nanousd
from meterfox_cli.store.dialect import LedgerConnection, dialect_of, write_transaction
from meterfox_cli.store.dimensions import label
from meterfox_cli.store.queries import Report, ReportRow
from meterfox_cli.store.select import Filters, TimeRange, filter_sql, window_sql

# Where a bucket's cost came from.
COST_API = "cost_api"  # the provider's cost report (OpenAI Costs, Anthropic cost_report)
ACTIVITY = "activity"  # OpenRouter's activity rows (usage in USD)
COMPUTED = "computed"  # our price for the tokens the provider reported: not the provider's word
NO_COST = "none"  # tokens without a cost, and none we could compute
COST_SOURCES = (COST_API, ACTIVITY, COMPUTED, NO_COST)


@dataclass(frozen=True, slots=True)
class BilledBucket:
    """One bucket a provider's usage/cost API gave: a UTC time span, a model and the grouping
    ids it was split by ('' when not grouped), tokens in the normalised usage shape, the
    request count (None where the API has none: Anthropic), and the cost in nano-USD."""

    provider: str
    bucket_start: int  # unix seconds, UTC, inclusive
    bucket_end: int  # exclusive
    model: str = ""
    project_id: str = ""
    workspace_id: str = ""
    api_key_id: str = ""
    service_tier: str = ""
    batch: str = ""
    requests: int | None = None
    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nanousd: int | None = None
    cost_source: str = NO_COST

    @property
    def key(self) -> tuple[object, ...]:
        """The primary key: two buckets with one key are one bucket."""
        return (
            self.provider,
            self.bucket_start,
            self.model,
            self.project_id,
            self.workspace_id,
            self.api_key_id,
            self.service_tier,
            self.batch,
        )


COLUMNS = tuple(f.name for f in fields(BilledBucket))
_INSERT = (
    f"INSERT INTO billed_buckets ({', '.join(COLUMNS)}, synced_at) "
    f"VALUES ({', '.join('?' * (len(COLUMNS) + 1))})"
)


def replace_window(
    conn: LedgerConnection,
    provider: str,
    start: int,
    end: int,
    buckets: list[BilledBucket],
    synced_at: float,
) -> None:
    """In one transaction: drop `provider`'s buckets starting in [start, end), insert `buckets`
    (each must start inside the window), and widen the provider's synced span to cover
    [start, end) (an older window synced again never moves its end back). Running it twice with the
    same buckets leaves the same rows."""
    outside = [b for b in buckets if not (start <= b.bucket_start < end) or b.provider != provider]
    if outside:
        raise ValueError(f"bucket outside the window being replaced: {outside[0]}")
    with write_transaction(conn):
        conn.execute(
            "DELETE FROM billed_buckets WHERE provider = ? AND bucket_start >= ? "
            "AND bucket_start < ?",
            (provider, start, end),
        )
        conn.executemany(_INSERT, [(*astuple(b), synced_at) for b in buckets])
        conn.execute(
            "INSERT INTO sync_state (provider, synced_from, synced_until, synced_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (provider) DO UPDATE SET "
            "synced_from = CASE WHEN excluded.synced_from < sync_state.synced_from "
            "THEN excluded.synced_from ELSE sync_state.synced_from END, "
            "synced_until = CASE WHEN excluded.synced_until > sync_state.synced_until "
            "THEN excluded.synced_until ELSE sync_state.synced_until END, "
            "synced_at = excluded.synced_at",
            (provider, start, end, synced_at),
        )


def synced_until(conn: LedgerConnection, provider: str) -> int | None:
    """The end of `provider`'s last window synced in full, or None if never synced."""
    row = conn.execute(
        "SELECT synced_until FROM sync_state WHERE provider = ?", (provider,)
    ).fetchone()
    return None if row is None else int(row[0])


def sync_states(conn: LedgerConnection) -> dict[str, tuple[int, int]]:
    """provider → (synced_from, synced_until): the span its syncs have covered."""
    rows = conn.execute("SELECT provider, synced_from, synced_until FROM sync_state")
    return {p: (int(f), int(u)) for p, f, u in rows}


def read_buckets(
    conn: LedgerConnection,
    since: int | None = None,
    until: int | None = None,
    providers: tuple[str, ...] = (),
) -> list[BilledBucket]:
    """Every stored bucket starting inside [since, until), in key order."""
    clauses, params = _where(since, until, providers)
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM billed_buckets {clauses} "
        "ORDER BY provider, bucket_start, model, project_id, workspace_id, api_key_id, "
        "service_tier, batch",
        params,
    )
    return [BilledBucket(*row) for row in rows]


def _where(
    since: int | None, until: int | None, providers: tuple[str, ...]
) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if since is not None:
        clauses.append("bucket_start >= ?")
        params.append(since)
    if until is not None:
        clauses.append("bucket_start < ?")
        params.append(until)
    if providers:
        clauses.append(f"provider IN ({', '.join('?' * len(providers))})")
        params.extend(providers)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def snapshot(conn: LedgerConnection) -> list[tuple[object, ...]]:
    """Every billed row without its sync time: what two equal syncs must leave alike."""
    return [astuple(b) for b in read_buckets(conn)]


@dataclass(frozen=True, slots=True)
class ProxiedSum:
    """What the proxy recorded for one UTC day, provider and model: requests that carried
    usage, their tokens, and their cost (unpriced requests add nothing to it)."""

    day: str  # YYYY-MM-DD, UTC
    provider: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_nanousd: int


def proxied_by_utc_day(
    conn: LedgerConnection, since: float | None, until: float | None, providers: tuple[str, ...]
) -> list[ProxiedSum]:
    """The proxy's side of `reconcile`: requests with usage, summed per UTC day (the providers
    bucket by UTC day; the `day` column is local), provider and model."""
    window, params = window_sql(TimeRange(since, until))
    clauses, filter_params = filter_sql(Filters(providers=providers))
    clauses = ["r.usage_known = 1", *([window] if window else []), *clauses]
    params += filter_params
    rows = conn.execute(
        f"SELECT {dialect_of(conn).utc_day('r.ts')} AS d, r.provider, COALESCE(r.model, ''), "
        "COUNT(*), SUM(r.input_tokens), SUM(r.output_tokens), "
        "SUM(COALESCE(r.cost_nanousd, 0)) "
        f"FROM requests r WHERE {' AND '.join(clauses)} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        params,
    )
    # int(): PostgreSQL sums integers as numeric (a Decimal here); SQLite's are ints.
    return [ProxiedSum(d, p, m, *(int(n) for n in sums)) for d, p, m, *sums in rows]


BILLED_DIMENSIONS = ("provider", "model", "day", "week", "month")


def billed_report(
    conn: LedgerConnection, dimensions: tuple[str, ...], window: TimeRange, filters: Filters
) -> Report:
    """`report --source billed`: the billed buckets in the shape of a proxy report, so the same
    tables and exports render them. Days are the buckets' UTC days; a bucket without a request
    count (Anthropic) adds none; costs we computed count as costs (`reconcile` tells them
    apart)."""
    unknown = [d for d in dimensions if d not in BILLED_DIMENSIONS]
    if unknown or filters.keys or filters.tags:
        raise MeterFoxError(
            "billed usage has no proxy keys, endpoints or tags: group by "
            f"{', '.join(BILLED_DIMENSIONS)} and filter by provider or model"
        )
    since = None if window.since is None else int(window.since)
    until = None if window.until is None else int(window.until)
    groups: dict[tuple[str | None, ...], list[BilledBucket]] = {}
    for b in read_buckets(conn, since, until, filters.providers):
        if filters.models and b.model not in filters.models:
            continue
        groups.setdefault(_dims(dimensions, b), []).append(b)
    rows = sorted(
        (_report_row(dimensions, key, buckets) for key, buckets in groups.items()),
        key=lambda r: (
            (r.dims[0] or "") if dimensions[0] in ("day", "week", "month") else "",
            -(r.cost_nanousd or 0),
            tuple(v or "" for v in r.dims),
        ),
    )
    everything = [b for buckets in groups.values() for b in buckets]
    total = _report_row((), (), everything)
    return Report(tuple(dimensions), window, filters, tuple(rows), total)


def _dims(dimensions: tuple[str, ...], b: BilledBucket) -> tuple[str | None, ...]:
    day = datetime.fromtimestamp(b.bucket_start, UTC).date()
    values = {
        "provider": b.provider,
        "model": b.model or None,
        "day": day.isoformat(),
        "week": (day - timedelta(days=day.weekday())).isoformat(),
        "month": day.isoformat()[:7],
    }
    return tuple(values[d] for d in dimensions)


def _report_row(
    dimensions: tuple[str, ...], key: tuple[str | None, ...], buckets: list[BilledBucket]
) -> ReportRow:
    priced = [b.cost_nanousd for b in buckets if b.cost_nanousd is not None]
    nano = sum(priced) if priced else None
    return ReportRow(
        group=label(dimensions, key),
        requests=sum(b.requests or 0 for b in buckets),
        errors=0,
        input_tokens=sum(b.input_tokens for b in buckets),
        cached_tokens=sum(b.cached_tokens for b in buckets),
        cache_write_tokens=sum(b.cache_write_tokens for b in buckets),
        output_tokens=sum(b.output_tokens for b in buckets),
        reasoning_tokens=sum(b.reasoning_tokens for b in buckets),
        cost_usd=from_nanousd(nano),
        unpriced_requests=0,
        dims=key,
        cost_nanousd=nano,
        priced_requests=sum(b.requests or 0 for b in buckets if b.cost_nanousd is not None),
    )
