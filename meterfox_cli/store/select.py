"""Which requests a read covers: a time window and filters, and the SQL WHERE clauses that keep
only those requests. Reports, `tail`/`export` and `reprice` all select through here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meterfox_cli.errors import MeterFoxError


@dataclass(frozen=True, slots=True)
class TimeRange:
    """From `since` (inclusive) to `until` (exclusive); None leaves that side open."""

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


def parse_filters(
    providers: Iterable[str], models: Iterable[str], keys: Iterable[str], tags: Iterable[str]
) -> Filters:
    """Filters as people type them (`--tag feature=search`); tag names are lower-cased."""
    parsed = []
    for tag in tags:
        name, sep, value = tag.partition("=")
        if not sep or not name.strip():
            raise MeterFoxError(f"--tag {tag!r}: expected NAME=VALUE, e.g. --tag feature=search")
        parsed.append((name.strip().lower(), value.strip()))
    return Filters(tuple(providers), tuple(models), tuple(keys), tuple(parsed))


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
    for name, value in filters.tags:  # a scalar lookup by the tags' key, per request row
        # (an EXISTS would let PostgreSQL hash every tag of that name and value instead)
        clauses.append(
            f"(SELECT f.value FROM request_tags f WHERE f.request_id = {alias}.id AND f.name = ?) = ?"
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
