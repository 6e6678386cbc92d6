"""`meterfox prices`, `meterfox explain`, `meterfox reprice`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import click

from meterfox_cli.money import decimal_text, exact_usd, from_nanousd, to_nanousd

if TYPE_CHECKING:
    from meterfox_cli.pricing.book import PriceBook
    from meterfox_cli.pricing.quote import Bucket, Quote
    from meterfox_cli.pricing.rate_cards import Rate, RateCard
    from meterfox_cli.store.rows import StoredRequest


_PER = {1_000_000: "MTok", 1_000: "K", 3_600: "hour", 1: "unit"}


def _per(key: str, per: int) -> str:
    if key == "seconds":
        return "s"
    return _PER.get(per, f"{per:,}")


def _units(key: str, units: Decimal) -> str:
    noun = "s" if key == "seconds" else ("tokens" if key.endswith("tokens") else "")
    return f"{decimal_text(units) if units % 1 else f'{int(units):,}'} {noun}".rstrip()


# --- prices ---------------------------------------------------------------------------------


@click.command()
@click.argument("model", required=False)
@click.option("--provider", "-p", default=None, help="Only this provider (its MeterFox slug).")
@click.option("--at", "at", default=None, help="Prices in force at this time (default: now).")
def prices(model: str | None, provider: str | None, at: str | None) -> None:
    """Show the rates MeterFox uses for MODEL, and where each comes from.

    Without MODEL: your [[prices]] overrides and the time-priced hardware table.
    """
    from meterfox_cli.cli.common import load_settings, price_book
    from meterfox_cli.pricing.rate_cards import candidate_providers, rate_cards

    settings = load_settings()
    book = price_book(settings)
    from meterfox_cli.timewindow import parse_when

    when = datetime.fromtimestamp(parse_when(at) or time.time(), tz=UTC)
    if model is None:
        _list_book(book, provider)
        return
    slugs = candidate_providers(provider, (p.slug for p in settings.registry))
    cards = rate_cards(model, slugs, book, when)
    if not cards:
        where = f" at {provider}" if provider else ""
        click.echo(f"No price known for {model!r}{where}: its requests are recorded as unpriced.")
        click.echo(
            'Add one to config.toml: [[prices]] provider = "…" model = "…" input = … output = …'
        )
        raise SystemExit(1)
    for card in cards:
        _echo_card(card)


def _echo_card(card: RateCard) -> None:
    from meterfox_cli.pricing.quote import bucket_label

    matched = f" → {card.model_id}" if card.model_id and card.model_id != card.model else ""
    click.echo(f"{card.provider}  {card.model}{matched}")
    click.echo(f"  {card.source}: {card.rates_from}")
    for rate in card.rates:
        amount = f"${decimal_text(rate.rate)}/{_per(rate.key, rate.per)}"
        click.echo(f"    {bucket_label(rate.key):<18} {amount}{_tiers(rate)}")
    for note in card.notes:
        click.echo(f"    {note}")


def _tiers(rate: Rate) -> str:
    return "".join(
        f"; ${decimal_text(price)} when the prompt is over {start:,} tokens"
        for start, price in rate.tiers
    )


def _list_book(book: PriceBook, provider: str | None) -> None:
    from meterfox_cli import replicate_prices
    from meterfox_cli.pricing.rate_cards import hardware_rows

    overrides = [o for o in book.overrides if provider is None or o.matches(provider, o.model)]
    click.echo("Your price overrides (config.toml [[prices]], first match wins):")
    for o in overrides:
        click.echo(f"  #{o.position} provider={o.provider} model={o.model}  {_override_text(o)}")
    if not overrides:
        click.echo("  none")
    if provider in (None, "replicate"):
        click.echo("Replicate official models, USD per MTok in / out (built in):")
        for name, rates in sorted(replicate_prices.TOKEN_MODELS.items()):
            click.echo(f"  {name:<36} ${decimal_text(rates.input)} / ${decimal_text(rates.output)}")
        click.echo("Hardware for time-priced models, USD per second:")
        for name, rate, source in hardware_rows(book):
            click.echo(f"  {name:<20} ${decimal_text(rate)}/s  ({source})")
    click.echo("Rates for one model: meterfox prices MODEL [--provider P]")


def _override_text(o) -> str:
    if o.kind == "discount":
        return f"list price × {decimal_text(o.discount)}"
    if o.kind == "time":
        return f"${decimal_text(o.per_second)}/s" if o.per_second else f"hardware {o.hardware}"
    parts = [
        f"{name} ${decimal_text(getattr(o, name))}/MTok"
        for name in ("input", "cached_input", "cache_write", "cache_write_1h", "output")
        if getattr(o, name) is not None
    ]
    return ", ".join(parts)


# --- explain --------------------------------------------------------------------------------


@click.command()
@click.argument("request_id")
def explain(request_id: str) -> None:
    """Show how one request's cost was reached: each bucket × its rate, and the total.

    REQUEST_ID is the X-MeterFox-Request-Id response header (a unique prefix will do).
    """
    from meterfox_cli.cli.common import current_ledger
    from meterfox_cli.store.costs import find_request

    conn = _reading(current_ledger())
    try:
        stored = find_request(conn, request_id)
    finally:
        conn.close()
    _echo_explanation(stored)


def _echo_explanation(stored: StoredRequest) -> None:
    from meterfox_cli.pricing.quote import NO_USAGE, UNPRICED_SOURCE

    when = datetime.fromtimestamp(stored.ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    click.echo(f"Request {stored.id}  {stored.provider}  {stored.model or '(no model)'}  {when}")
    click.echo(f"  {stored.endpoint}  status {stored.status}  {stored.outcome}")
    quote = stored.quote
    if stored.cost_source == NO_USAGE.source or stored.reading.usage is None:
        click.echo("No usage in the response (an error or a cut stream): no cost recorded.")
        return
    if quote is None:
        click.echo(f"Cost source: {stored.cost_source}; no pricing detail was stored.")
        return
    if quote.source == UNPRICED_SOURCE:
        click.echo(f"Unpriced: {quote.reason}")
        return
    click.echo(f"Cost source: {quote.source} — {quote.rates_from}")
    if quote.context:
        click.echo("  price context: " + ", ".join(f"{k}={v}" for k, v in quote.context))
    if quote.source == "provider":
        _echo_reported(quote)
    else:
        _echo_buckets(quote)
    _echo_check(stored, quote)


def _echo_buckets(quote: Quote) -> None:
    split_writes = any(b.key == "cache_write_1h_tokens" for b in quote.buckets)
    rows = [_bucket_row(bucket, split_writes) for bucket in quote.buckets]
    subtotal = sum((bucket.cost for bucket in quote.buckets), Decimal(0))
    if quote.discount is not None:
        rows += [("subtotal", exact_usd(subtotal)), (f"× {decimal_text(quote.discount)}", "")]
    rows.append(("total", exact_usd(quote.total())))
    width = max(len(left) for left, _ in rows)
    for left, cost in rows:
        click.echo(f"  {left:<{width}}  = {cost}" if cost else f"  {left}")


def _bucket_row(bucket: Bucket, split_writes: bool) -> tuple[str, str]:
    from meterfox_cli.pricing.quote import bucket_label

    label = bucket_label(bucket.key)
    if split_writes and bucket.key == "cache_write_tokens":
        label = "cache write (5m)"
    rate = f"${decimal_text(bucket.rate)}/{_per(bucket.key, bucket.per)}"
    tier = f" ({bucket.tier})" if bucket.tier else ""
    left = f"{label:<16} {_units(bucket.key, bucket.units):>16} × {rate}{tier}"
    return left, exact_usd(bucket.cost)


def _echo_reported(quote: Quote) -> None:
    click.echo(f"  reported by the provider  = {exact_usd(quote.reported_usd)}")
    if quote.list_usd is not None:
        click.echo(f"  (at list prices it would be {exact_usd(quote.list_usd)})")


def _echo_check(stored: StoredRequest, quote: Quote) -> None:

    total = quote.total()
    recomputed = None if total is None else to_nanousd(total)
    stored_usd = from_nanousd(stored.cost_nanousd)
    click.echo(f"Stored cost: {exact_usd(stored_usd)}")
    if recomputed != stored.cost_nanousd:
        click.echo("Warning: the stored cost differs from its detail; run `meterfox reprice`.")


# --- reprice --------------------------------------------------------------------------------


@click.command()
@click.option("--since", default=None, help="Start: 7d, 24h, 30m, or a date (2026-11-01).")
@click.option("--until", default=None, help="End (exclusive), same forms as --since.")
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
def reprice(since: str | None, until: str | None, dry_run: bool) -> None:
    """Recompute stored costs with today's overrides and price data.

    Run it after adding a [[prices]] override or refreshing prices. Provider-reported costs
    stay as reported. Restart `meterfox serve` too, so new requests use the new prices.
    """

    from meterfox_cli.cli.common import current_ledger, load_settings, price_book
    from meterfox_cli.store.costs import reprice as run_reprice
    from meterfox_cli.timewindow import parse_window

    settings = load_settings()
    book = price_book(settings)
    window = parse_window(since, until)
    ledger = current_ledger(settings)
    conn = _reading(ledger) if dry_run else ledger.open_writer()
    try:
        result = run_reprice(conn, book, window, dry_run=dry_run)
    finally:
        conn.close()
    verb = "Would change" if dry_run else "Changed"
    click.echo(
        f"Repriced {result.examined:,} requests. {verb} {result.changed:,} "
        f"({result.newly_priced:,} newly priced, {result.newly_unpriced:,} now unpriced)."
    )
    before, after = (from_nanousd(n) for n in (result.before_nanousd, result.after_nanousd))
    delta = after - before
    sign = "+" if delta >= 0 else "-"
    click.echo(
        f"Total cost: {exact_usd(before)} → {exact_usd(after)} ({sign}{exact_usd(abs(delta))})"
    )


def _reading(ledger):
    """A read connection to the ledger; StoreError, saying how to start, when there is none."""
    from meterfox_cli.errors import StoreError

    conn = ledger.read_connection()
    if conn is None:
        raise StoreError(
            f"no database at {ledger.describe()}: start `meterfox serve` and send a request first"
        )
    return conn


COMMANDS = [prices, explain, reprice]
