"""Report rows → a rich table, JSON or CSV. The Console is injected so tests can read it."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, fields
from decimal import Decimal

from meterfox_cli.store.queries import ReportRow

FIELDS = [f.name for f in fields(ReportRow)]


def to_json(rows: Sequence[ReportRow]) -> str:
    return json.dumps([_plain(row) for row in rows], indent=2)


def to_csv(rows: Sequence[ReportRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        plain = _plain(row)
        plain["cost_usd"] = "" if row.cost_usd is None else _money_text(row.cost_usd)
        writer.writerow(plain)
    return out.getvalue()


def render_table(rows: Sequence[ReportRow], by: str, console) -> None:
    from rich.table import Table

    table = Table(title=f"Spend by {by}", show_footer=len(rows) > 1)
    table.add_column(by, footer="total")
    numeric = [
        ("requests", "requests"),
        ("errors", "errors"),
        ("input", "input_tokens"),
        ("cached", "cached_tokens"),
        ("cache write", "cache_write_tokens"),
        ("output", "output_tokens"),
        ("reasoning", "reasoning_tokens"),
    ]
    for title, name in numeric:
        total = sum(getattr(row, name) for row in rows)
        table.add_column(title, justify="right", footer=f"{total:,}")
    costs = [row.cost_usd for row in rows if row.cost_usd is not None]
    unpriced = sum(row.unpriced_requests for row in rows)
    table.add_column(
        "cost (USD)", justify="right", footer=_money_cell(sum(costs, Decimal(0)), unpriced)
    )
    for row in rows:
        table.add_row(
            row.group,
            *(f"{getattr(row, name):,}" for _, name in numeric),
            _money_cell(row.cost_usd, row.unpriced_requests),
        )
    console.print(table)


def _money_cell(cost: Decimal | None, unpriced: int) -> str:
    text = "—" if cost is None else money(cost)
    if unpriced:
        text += f" (+{unpriced} unpriced)"
    return text


def money(cost: Decimal) -> str:
    """Dollars for people: at least cents, at most micro-dollars, no trailing zeros."""
    whole, _, fraction = f"{cost:,.6f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def _money_text(cost: Decimal) -> str:
    return format(cost.normalize(), "f")


def _plain(row: ReportRow) -> dict[str, object]:
    plain = asdict(row)
    plain["cost_usd"] = None if row.cost_usd is None else float(row.cost_usd)
    return plain
