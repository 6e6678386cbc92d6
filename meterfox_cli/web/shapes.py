"""What the dashboard's JSON API says: money as exact nano-USD, exact USD and the CLI's own
human text (so the page never formats money itself), report rows exactly as
`meterfox report --format json` writes them, keys as `meterfox keys list --format json` does,
reconcile rows as `meterfox reconcile --format json` does, and a finished request as Live
shows it."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from meterfox_cli.keys.proxy_keys import KeyListing, list_keys, listing_fields
from meterfox_cli.money import decimal_text, format_usd, from_nanousd
from meterfox_cli.pricing.book import PriceBook
from meterfox_cli.pricing.quote import UNPRICED_SOURCE
from meterfox_cli.report import reconcile as reconcile_rows
from meterfox_cli.report.formats import CONTRACT_FIELDS, EXTRA_FIELDS, to_json
from meterfox_cli.store.dialect import LedgerConnection
from meterfox_cli.store.queries import Report, build_report, empty_report
from meterfox_cli.store.rows import RequestLine
from meterfox_cli.sync.prices import canonical_model
from meterfox_cli.sync.reconcile import totals


def money(nanousd: int | None) -> dict[str, object]:
    """`{"nanousd": 1234, "usd": "0.000001234", "text": "$0.000001"}`; all None when unknown."""
    if nanousd is None:
        return {"nanousd": None, "usd": None, "text": "—"}
    return {
        "nanousd": nanousd,
        "usd": decimal_text(from_nanousd(nanousd)),
        "text": format_usd(nanousd),
    }


def report_json(report: Report) -> str:
    """The report as the API sends it: the CLI's JSON rows verbatim (exact decimals), the total
    row, and money texts for the page."""
    total = {name: getattr(report.total, name) for name in (*CONTRACT_FIELDS[1:], *EXTRA_FIELDS)}
    head = {
        "dimensions": list(report.dimensions),
        "window": {"since": report.window.since, "until": report.window.until},
        "sample_every": report.sample_every,
        "texts": [format_usd(row.cost_nanousd or 0) for row in report.rows],
        "total_text": money(report.total.cost_nanousd)["text"],
    }
    start = json.dumps(head)[:-1]
    return f'{start}, "rows": {to_json(report)}, "total": {_exact_json(total)}}}'


def _exact_json(values: dict[str, object]) -> str:
    items = []
    for name, value in values.items():
        if hasattr(value, "as_tuple"):  # Decimal: the exact number, as the CLI writes it
            items.append(f"{json.dumps(name)}: {decimal_text(value)}")  # type: ignore[arg-type]
        else:
            items.append(f"{json.dumps(name)}: {json.dumps(value)}")
    return "{" + ", ".join(items) + "}"


def key_json(item: KeyListing) -> dict[str, object]:
    """A key's listing (its prefix only, never the key), with spend and budget for the page."""
    fields = listing_fields(item)
    fields["spend"] = money(item.spend_nanousd)
    budget = item.key.budget
    fields["budget"] = money(budget.nanousd) if budget else None
    fields["budget_share"] = (item.spend_nanousd / budget.nanousd) if budget else None
    return fields


def line_json(line: RequestLine) -> dict[str, object]:
    """One finished request, as Live shows it."""
    return {
        "rowid": line.rowid,
        "ts": line.ts,
        "provider": line.provider,
        "model": line.model,
        "endpoint": line.endpoint,
        "key": line.key_name,
        "status": line.status,
        "outcome": line.outcome,
        "failed": line.status >= 400 or line.outcome != "ok",
        "unpriced": line.cost_source == UNPRICED_SOURCE,
        "streamed": line.streamed,
        "latency_ms": line.latency_ms,
        "input_tokens": line.input_tokens,
        "output_tokens": line.output_tokens,
        "cost": money(line.cost_nanousd),
    }


def reconcile_text(
    conn: LedgerConnection,
    since: str | None,
    until: str | None,
    by: tuple[str, ...],
    tolerance: Decimal,
    pricing_ids: tuple[tuple[str, str], ...],
) -> str:
    """`meterfox reconcile`'s read (`report/reconcile.reconciled`), its rows as its JSON writes
    them (in key order: day, provider, model), the totals line the same way, the money texts
    for the page, the window and the providers synced so far (none: run `meterfox sync`).
    `pricing_ids` are the registry's, the only part of a price book a model's one name needs."""
    found = reconcile_rows.reconciled(
        conn,
        since,
        until,
        by,
        tolerance=tolerance,
        now=time.time(),
        canonical=canonical_model(PriceBook(pricing_ids=pricing_ids)),
    )
    total = totals(found.rows)
    head = {
        "dimensions": [d for d in ("day", "provider", "model") if d in by],
        "synced": list(found.synced),
        "window": {"since": found.since, "until": found.until},
        "texts": [_reconcile_texts(row) for row in found.rows],
        "total_texts": _reconcile_texts(total),
    }
    rows = reconcile_rows.to_json(found.rows)
    total_json = reconcile_rows.to_json([total])[1:-1].strip()
    return f'{json.dumps(head)[:-1]}, "rows": {rows}, "total": {total_json}}}'


def _reconcile_texts(row) -> dict[str, str]:
    return {
        "proxied_cost": format_usd(row.proxied_cost_nanousd),
        "billed_cost": "—"
        if row.billed_cost_nanousd is None
        else format_usd(row.billed_cost_nanousd),
    }


def report_text(conn: LedgerConnection, dims, window, filters, shape) -> tuple[str, str]:
    """The report's dimensions (for a file name) and its text (`shape`: JSON or CSV), in the
    read worker."""
    recorded = conn.execute("SELECT 1 FROM requests LIMIT 1").fetchone() is not None
    report = (
        build_report(conn, dims, window, filters)
        if recorded
        else empty_report(dims, window, filters)
    )
    return "-".join(d.replace(":", "_") for d in report.dimensions), shape(report)


def keys_json(conn: LedgerConnection) -> dict:
    return {"keys": [key_json(item) for item in list_keys(conn)]}
