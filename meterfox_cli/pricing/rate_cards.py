"""The rates MeterFox would use for a model, and where they come from (`meterfox prices`).

Pure data for the CLI to render: the same precedence as `book.price_reading` (override, then
built-in Replicate table, then genai-prices), at a given time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from meterfox_cli import replicate_prices
from meterfox_cli.config import PriceOverride
from meterfox_cli.money import decimal_text
from meterfox_cli.pricing.book import PriceBook
from meterfox_cli.pricing.genai import model_refs
from meterfox_cli.pricing.price_data import data_label, genai_version
from meterfox_cli.pricing.quote import MTOK, bucket_label


@dataclass(frozen=True, slots=True)
class Rate:
    key: str  # a usage key (input_tokens, cache_read_tokens, …, seconds)
    rate: Decimal  # USD per `per` units
    per: int = MTOK
    tiers: tuple[tuple[int, Decimal], ...] = ()  # (prompt tokens above which, rate)


@dataclass(frozen=True, slots=True)
class RateCard:
    provider: str  # our slug
    model: str  # as asked
    source: str  # override | computed
    rates_from: str
    model_id: str | None = None
    rates: tuple[Rate, ...] = ()
    notes: tuple[str, ...] = ()


def candidate_providers(provider: str | None, known: Iterable[str]) -> list[str]:
    """The provider slugs to look in: the one asked for, else every one MeterFox knows (the
    caller's registry's slugs, `known`)."""
    if provider:
        return [provider]
    slugs = list(known)
    extra = ["anthropic", "gemini", "cohere", "replicate"]
    return slugs + [slug for slug in extra if slug not in slugs]


def rate_cards(model: str, slugs: Sequence[str], book: PriceBook, at: datetime) -> list[RateCard]:
    """One card per provider of `slugs` that can price `model`, in the order MeterFox would
    decide."""
    cards = []
    for slug in slugs:
        card = _card(slug, model, book, at)
        if card is not None:
            cards.append(card)
    return cards


def _card(slug: str, model: str, book: PriceBook, at: datetime) -> RateCard | None:
    override = book.override_for(slug, model)
    if override is not None:
        return override_card(slug, model, override, book, at)
    if slug == "replicate":
        return _replicate_card(model)
    return _genai_card(slug, model, book, at)


def override_card(
    slug: str, model: str, o: PriceOverride, book: PriceBook, at: datetime
) -> RateCard:
    source = o.describe() + (f" — {o.note}" if o.note else "")
    if o.kind == "discount":
        listed = _genai_card(slug, model, book, at)
        notes = (f"list price × {decimal_text(o.discount)}",)
        if listed is None:
            return RateCard(slug, model, "override", source, notes=("no list price to discount",))
        assert o.discount is not None
        rates = tuple(_scaled(rate, o.discount) for rate in listed.rates)
        return RateCard(slug, model, "override", source, listed.model_id, rates, notes)
    if o.kind == "time":
        if o.per_second is not None:
            per_second = (Rate("seconds", o.per_second, 1),)
            return RateCard(slug, model, "override", source, rates=per_second)
        assert o.hardware is not None
        per_second = (Rate("seconds", book.hardware[o.hardware], 1),)
        note = f"hardware {o.hardware} from {book.hardware_source(o.hardware)}"
        return RateCard(slug, model, "override", source, rates=per_second, notes=(note,))
    assert o.input is not None and o.output is not None
    write = o.cache_write if o.cache_write is not None else o.input
    rates = (
        Rate("input_tokens", o.input),
        Rate("cache_read_tokens", o.cached_input if o.cached_input is not None else o.input),
        Rate("cache_write_tokens", write),
        Rate("cache_write_1h_tokens", o.cache_write_1h if o.cache_write_1h is not None else write),
        Rate("output_tokens", o.output),
    )
    return RateCard(slug, model, "override", source, rates=rates)


def _scaled(rate: Rate, factor: Decimal) -> Rate:
    tiers = tuple((start, price * factor) for start, price in rate.tiers)
    return Rate(rate.key, rate.rate * factor, rate.per, tiers)


def _replicate_card(model: str) -> RateCard | None:
    name = model.split(":", 1)[0].lower()
    rates = replicate_prices.TOKEN_MODELS.get(name)
    if rates is None:
        return None
    return RateCard(
        "replicate",
        model,
        "computed",
        f"MeterFox built-in table: {replicate_prices.TOKEN_MODELS_SOURCE}",
        name,
        (Rate("input_tokens", rates.input), Rate("output_tokens", rates.output)),
    )


def _genai_card(slug: str, model: str, book: PriceBook, at: datetime) -> RateCard | None:
    pid = book.pricing_id(slug)
    if pid is None:
        return None
    found = _genai_model(pid, model)
    if found is None:
        return None
    provider, info = found
    standard = info.get_prices(at)
    notes = tuple(_variant_notes(info, at))
    rates = tuple(model_rates(standard))
    storage = book.storage_rate(model) if slug == "gemini" else None
    if storage is not None:
        rates += (Rate("cache_storage_token_hours", storage[0]),)
        notes += (f"cache storage is per 1M tokens per hour kept: {storage[1]}",)
    source = f"genai-prices {genai_version()} {data_label()}: {provider.id}/{info.id}"
    return RateCard(slug, model, "computed", source, info.id, rates, notes)


def _genai_model(pid: str, model: str) -> tuple[Any, Any] | None:
    from genai_prices.data_snapshot import get_snapshot

    snapshot = get_snapshot()
    for ref in model_refs(pid, model):
        try:
            return snapshot.find_provider_model(ref, None, pid, None)
        except LookupError:
            continue
    return None


def model_rates(model_price: Any) -> Iterable[Rate]:
    """Each rate a genai-prices ModelPrice sets, in the library's unit order."""
    from genai_prices.types import TieredPrices
    from genai_prices.units import _get_registry

    for unit in _get_registry().units.values():
        value = getattr(model_price, unit.price_key, None)
        if value is None:
            continue
        if isinstance(value, TieredPrices):
            tiers = tuple((tier.start, tier.price) for tier in value.tiers)
            yield Rate(unit.usage_key, value.base, unit.per, tiers)
        else:
            yield Rate(unit.usage_key, value, unit.per)


def _variant_notes(info: Any, at: datetime) -> Iterable[str]:
    """Request-dependent prices (service tiers, batch) in force at `at`, one line each."""
    seen: set[str] = set()
    for variant in info.price_variants or ():
        if variant.constraint is not None and not variant.constraint.active(at):
            continue
        when = ", ".join(f"{k}={v}" for k, v in variant.when.items())
        if when in seen:
            continue
        seen.add(when)
        rates = model_rates(variant.prices)
        parts = [f"{bucket_label(rate.key)} ${decimal_text(rate.rate)}" for rate in rates]
        yield f"{when}: " + (", ".join(parts) if parts else "standard rates")


def hardware_rows(book: PriceBook) -> list[tuple[str, Decimal, str]]:
    """The time-priced hardware table: name, USD per second, where the rate comes from."""
    rows = sorted(book.hardware.items())
    return [(name, rate, book.hardware_source(name)) for name, rate in rows]
