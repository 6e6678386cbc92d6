"""`meterfox reconcile`'s rows, for the terminal and the dashboard alike: read (`reconciled`:
each synced provider's proxied sums and billed buckets over a window of UTC days, compared by
the pure `sync/reconcile`), and shown for people and programs: a rich table (most money at
stake first, a totals line), JSON and CSV with the issue's field names and exact numbers."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.money import decimal_text, format_usd, from_nanousd
from meterfox_cli.store.billed import proxied_by_utc_day, read_buckets, sync_states
from meterfox_cli.store.dialect import LedgerConnection
from meterfox_cli.sync.pages import day_floor, utc_day
from meterfox_cli.sync.reconcile import DIMENSIONS, Canonical, Row, by_stake, reconcile, totals
from meterfox_cli.timewindow import utc_when

if TYPE_CHECKING:  # rich is loaded by `render` only: `serve` imports this module for the dashboard
    from rich.console import Console

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


@dataclass(frozen=True)
class Reconciled:
    """The providers ever synced, the window (UTC; None: open), and the compared rows."""

    synced: tuple[str, ...]
    since: float | None
    until: float | None
    rows: list[Row]


def parse_by(by: str) -> tuple[str, ...]:
    dims = tuple(d.strip() for d in by.split(",") if d.strip())
    if not dims or set(dims) - set(DIMENSIONS):
        raise MeterFoxError(f"--by {by!r}: use one or more of {', '.join(DIMENSIONS)}")
    return dims


def reconciled(
    conn: LedgerConnection,
    since: str | None,
    until: str | None,
    by: tuple[str, ...],
    *,
    tolerance: Decimal,
    now: float,
    canonical: Canonical,
) -> Reconciled:
    """Proxied vs billed over [since, until) as typed (a bare date is a UTC day), for the
    providers synced so far (none: no rows)."""
    start = utc_when(since, now)
    start = None if start is None else day_floor(start)
    end = utc_when(until, now)
    spans = sync_states(conn)
    synced = tuple(sorted(spans))
    if not synced:
        return Reconciled(synced, start, end, [])
    # each provider from the first day its syncs covered (before it, nothing is known);
    # later days stay in: a day the provider has not published yet is `proxy_only`
    proxied = [
        p
        for p in proxied_by_utc_day(conn, start, end, synced)
        if utc_day(spans[p.provider][0]) <= p.day
    ]
    billed = read_buckets(conn, start, end, synced)
    rows = reconcile(proxied, billed, by=by, tolerance=tolerance, now=now, canonical=canonical)
    return Reconciled(synced, start, end, rows)


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
    from rich.table import Table
    from rich.text import Text

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
        table.add_row(  # Text: a model name from an admin API is data, never rich markup
            *[Text(getattr(row, d) or "") for d in dims],
            *[cell(row) for _, cell in numeric],
            Text(f"{row.status}", style=style),
            Text(row.note or ""),
        )
    console.print(table)


def _count(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def _money(nanousd: int | None) -> str:
    return "—" if nanousd is None else format_usd(nanousd)


def _percent(ratio: Decimal | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.1f}%"
