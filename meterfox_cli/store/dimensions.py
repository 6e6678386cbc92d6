"""What a report can group by: the dimension names people type (`provider`, `week`,
`tag:feature`…), their SQL over a request or rollup row, and the label of a group."""

from __future__ import annotations

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.store.dialect import SQLITE, Dialect

UNKNOWN_GROUP = "(unknown)"
UNTAGGED_GROUP = "(untagged)"
TOTAL_GROUP = "total"
GROUP_SEPARATOR = " / "

# Dimension → SQL over a rollup or request row named {t} (they share these column names).
_COLUMN_DIMENSIONS = {
    "provider": "{t}.provider",
    "model": "NULLIF({t}.model, '')",
    "key": "{t}.key_name",
    "endpoint": "{t}.endpoint",
    "host": "NULLIF({t}.host, '')",  # kept by day_rollup only (migration 013)
    "day": "{t}.day",
    "week": "{week}",  # the Monday that starts the ISO week (the dialect's SQL)
    "month": "substr({t}.day, 1, 7)",
}
DIMENSION_NAMES = tuple(_COLUMN_DIMENSIONS)  # and tag:NAME
TIME_DIMENSIONS = frozenset({"day", "week", "month"})
# Dimensions the hourly rollup does not keep: a report grouped by one reads day_rollup for whole
# UTC days and `requests` for the rest (with tags, or without day_rollup: `requests` alone).
RAW_DIMENSIONS = frozenset({"host"})


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


def tag_joins(dims: tuple[str, ...]) -> tuple[str, list[object], list[str]]:
    """Each tag dimension of a request row `r` as a column tagN, its value looked up by the
    tags' key (`tag_lookup`): no join, so '' in place of one; the parameters (the tags'
    names, in the order of `dims`) come before any other of the statement's."""
    params, columns = [], []
    for i, dim in enumerate(dims):
        if dim.startswith("tag:"):
            params.append(dim[4:])
            columns.append(f"{tag_lookup(i)} AS tag{i}")
    return "", params, columns


def tag_lookup(index: int) -> str:
    """The value of request `r`'s tag named by a parameter (NULL when it has none): one read
    by the tags' primary key (request, name) per request row. (As a LEFT JOIN, PostgreSQL
    would rather hash every tag of that name in the table: seconds at 10,000,000 requests.)"""
    t = f"t{index}"
    return f"(SELECT {t}.value FROM request_tags {t} WHERE {t}.request_id = r.id AND {t}.name = ?)"


def dimension_sql(dim: str, index: int, alias: str = "x", *, dialect: Dialect = SQLITE) -> str:
    """The SQL for a dimension over the summed source `x` or over a request row `r`."""
    if dim.startswith("tag:"):
        return f"x.tag{index}" if alias == "x" else tag_lookup(index)
    return _COLUMN_DIMENSIONS[dim].format(t=alias, week=dialect.week(f"{alias}.day"))


def label(dims: tuple[str, ...], values: tuple[str | None, ...]) -> str:
    """A group's name for people: its values joined, a missing one shown as unknown/untagged."""
    parts = [
        value
        if value is not None
        else (UNTAGGED_GROUP if dim.startswith("tag:") else UNKNOWN_GROUP)
        for dim, value in zip(dims, values, strict=True)
    ]
    return GROUP_SEPARATOR.join(parts) or TOTAL_GROUP
