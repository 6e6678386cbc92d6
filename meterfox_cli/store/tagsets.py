"""A request's whole set of tags as one string, the key the tag rollup (SQLite's migration 009,
PostgreSQL's 010) sums under: the SQL that builds it from `request_tags` (either dialect) and
the Python that reads it back.

Each tag is `len(name):name` `len(value):value` (lengths in characters), tags ordered by name
and concatenated: no name or value can be mistaken for a separator, whatever it holds. An
untagged request's set is ''. Reading does not rely on the order, so a set built in any order
decodes to the same tags.
"""

from __future__ import annotations

from functools import lru_cache

from meterfox_cli.store.dialect import SQLITE, Dialect

Tags = dict[str, str]

_PAIR = "length({n}) || ':' || {n} || length({v}) || ':' || {v}"


def tagset_sql(rows: str, dialect: Dialect = SQLITE) -> str:
    """The encoded set of the tag rows `rows` (a SELECT of `name, value`), '' when none: a
    scalar subquery in `dialect`'s SQL."""
    return dialect.concat_ordered(_PAIR.format(n="name", v="value"), rows, "name")


def request_tags_sql(request_id: str, *, without: str | None = None) -> str:
    """The tag rows of the request `request_id` (an SQL expression), leaving out the tag named
    `without` (an SQL expression) when given."""
    skip = f" AND name != {without}" if without is not None else ""
    return f"SELECT name, value FROM request_tags WHERE request_id = {request_id}{skip}"


@lru_cache(maxsize=4096)
def decode(encoded: str) -> tuple[tuple[str, str], ...]:
    """The (name, value) pairs of an encoded set, by name."""
    pairs, at = [], 0
    while at < len(encoded):
        name, at = _field(encoded, at)
        value, at = _field(encoded, at)
        pairs.append((name, value))
    return tuple(sorted(pairs))


def encode(tags: Tags) -> str:
    """The encoded set of `tags` (what `tagset_sql` builds in the database)."""
    return "".join(f"{len(n)}:{n}{len(v)}:{v}" for n, v in sorted(tags.items()))


def _field(encoded: str, at: int) -> tuple[str, int]:
    colon = encoded.index(":", at)
    start = colon + 1
    end = start + int(encoded[at:colon])
    return encoded[start:end], end
