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
    """LEFT JOINs giving each tag dimension of a request row `r` its value (column tagN)."""
    joins, params, columns = [], [], []
    for i, dim in enumerate(dims):
        if dim.startswith("tag:"):
            joins.append(f"LEFT JOIN request_tags t{i} ON t{i}.request_id = r.id AND t{i}.name = ?")
            params.append(dim[4:])
            columns.append(f"t{i}.value AS tag{i}")
    return " ".join(joins), params, columns


def dimension_sql(dim: str, index: int, alias: str = "x", *, dialect: Dialect = SQLITE) -> str:
    """The SQL for a dimension over the summed source `x` or over a request row `r`."""
    if dim.startswith("tag:"):
        return f"x.tag{index}" if alias == "x" else f"t{index}.value"
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
