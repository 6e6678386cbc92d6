"""`meterfox reconcile`'s rows for people and programs: a rich table (most money at stake
first, a totals line), JSON and CSV with the issue's field names and exact numbers."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from rich.console import Console
from rich.table import Table

from meterfox_cli.money import decimal_text, format_usd, from_nanousd
from meterfox_cli.sync.reconcile import Row, by_stake, totals

FIELDS = (
    "day",
    "provider",
    "model",
    "proxied_requests",
    "proxied_input_tokens",
    "proxied_output_tokens",
    "proxied_cost_usd",
    "billed_requests",
    "billed_input_tokens",
    "billed_output_tokens",
    "billed_cost_usd",
    "coverage",
    "status",
    "note",
)
_STYLE = {"match": "green", "bypassed": "red", "proxy_only": "yellow", "price_mismatch": "magenta"}


def values(row: Row) -> dict[str, object]:
    """A row by the issue's field names: costs as exact USD Decimals (None: not given)."""
    out: dict[str, object] = {}
    for name in FIELDS:
        if name.endswith("_cost_usd"):
            out[name] = from_nanousd(getattr(row, name.replace("_usd", "_nanousd")))
        else:
            out[name] = getattr(row, name)
    return out


def to_json(rows: list[Row]) -> str:
    """A JSON list of rows; money and coverage as JSON numbers with every digit (no float)."""
    objects = [
        "  {" + ", ".join(f"{json.dumps(k)}: {_json(v)}" for k, v in values(r).items()) + "}"
        for r in rows
    ]
    return "[\n" + ",\n".join(objects) + "\n]" if objects else "[]"


def _json(value: object) -> str:
    return decimal_text(value) if isinstance(value, Decimal) else json.dumps(value)


def to_csv(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv(v) for k, v in values(row).items()})
    return out.getvalue()


def _csv(value: object) -> object:
    if value is None:
        return ""
    return decimal_text(value) if isinstance(value, Decimal) else value


def render(rows: list[Row], console: Console, title: str) -> None:
    dims = [d for d in ("day", "provider", "model") if any(getattr(r, d) for r in rows)]
    table = Table(title=title, title_justify="left", show_footer=True)
    total = totals(rows)
    labels = {"day": "day", "provider": "provider", "model": "model"}
    for i, d in enumerate(dims):
        table.add_column(labels[d], footer="total" if i == 0 else "")
    numeric = [
        ("proxied req", lambda r: _count(r.proxied_requests)),
        ("proxied in", lambda r: _count(r.proxied_input_tokens)),
        ("proxied out", lambda r: _count(r.proxied_output_tokens)),
        ("proxied $", lambda r: format_usd(r.proxied_cost_nanousd)),
        ("billed req", lambda r: _count(r.billed_requests)),
        ("billed in", lambda r: _count(r.billed_input_tokens)),
        ("billed out", lambda r: _count(r.billed_output_tokens)),
        ("billed $", lambda r: _money(r.billed_cost_nanousd)),
        ("coverage", lambda r: _percent(r.coverage)),
    ]
    for name, cell in numeric:
        table.add_column(name, justify="right", footer=cell(total))
    table.add_column("status")
    table.add_column("why")
    for row in by_stake(rows):
        style = _STYLE.get(row.status or "", "")
        table.add_row(
            *[getattr(row, d) or "" for d in dims],
            *[cell(row) for _, cell in numeric],
            f"[{style}]{row.status}[/]",
            row.note,
        )
    console.print(table)


def _count(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def _money(nanousd: int | None) -> str:
    return "—" if nanousd is None else format_usd(nanousd)


def _percent(ratio: Decimal | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.1f}%"
