"""A Report as JSON or CSV: stable field names (the contract, then one field per dimension, then
the extras), every number exact: tokens as integers, `cost_usd` as the exact decimal (never a
rounded float), `cost_nanousd` as an integer. Never any colour codes."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from meterfox_cli.money import decimal_text
from meterfox_cli.store.queries import Report, ReportRow

CONTRACT_FIELDS = (
    "group",
    "requests",
    "errors",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_requests",
)
EXTRA_FIELDS = (
    "cost_nanousd",
    "priced_requests",
    "unpriced_input_tokens",
    "unpriced_output_tokens",
    "latency_p50_ms",
    "latency_p95_ms",
    "ttfb_p50_ms",
    "latency_sample_every",
)


def fields_for(report: Report) -> list[str]:
    """Stable field names: the contract, one field per dimension after `group`, the extras."""
    return [CONTRACT_FIELDS[0], *report.dimensions, *CONTRACT_FIELDS[1:], *EXTRA_FIELDS]


def row_values(report: Report, row: ReportRow) -> dict[str, object]:
    values: dict[str, object] = {"group": row.group}
    values.update(zip(report.dimensions, row.dims, strict=True))
    for name in (*CONTRACT_FIELDS[1:], *EXTRA_FIELDS):
        values[name] = getattr(row, name)
    return values


def to_json(report: Report) -> str:
    """A JSON list of rows (no totals row: the totals are the sum of the rows)."""
    if not report.rows:
        return "[]"
    rows = [_json_object(row_values(report, row)) for row in report.rows]
    return "[\n" + ",\n".join(rows) + "\n]"


def _json_object(values: dict[str, object]) -> str:
    items = (f"{json.dumps(name)}: {_json_value(value)}" for name, value in values.items())
    return "  {\n    " + ",\n    ".join(items) + "\n  }"


def _json_value(value: object) -> str:
    if isinstance(value, Decimal):
        return decimal_text(value)  # a JSON number with every nano-dollar, not a float
    return json.dumps(value)


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields_for(report), lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        values = row_values(report, row)
        writer.writerow({name: _csv_value(value) for name, value in values.items()})
    return out.getvalue()


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, bool):
        return int(value)
    return value
