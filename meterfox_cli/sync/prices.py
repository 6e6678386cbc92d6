"""What sync and reconcile ask of our prices: the cost of tokens a provider reported without
money (a bucket's `computed` cost, from the same price book as the proxy's records), and the
one name of a model, so a dated snapshot and its alias meet where genai-prices says they are
one model (`gpt-4o-mini-2024-07-18` is `gpt-4o-mini`)."""

from __future__ import annotations

from functools import lru_cache

from meterfox_cli.pricing.book import DEFAULT_BOOK, PriceBook, price_reading
from meterfox_cli.pricing.genai import find_model
from meterfox_cli.sync.buckets import PriceFn
from meterfox_cli.sync.reconcile import Canonical
from meterfox_cli.usage import Reading, Usage


def computed_price(book: PriceBook = DEFAULT_BOOK) -> PriceFn:
    def price(provider: str, model: str, at: int, usage: Usage) -> int | None:
        if not model:
            return None
        reading = Reading(model=model, usage=usage)
        return price_reading(provider, model, at, reading, book).cost_nanousd

    return price


def canonical_model(book: PriceBook = DEFAULT_BOOK) -> Canonical:
    """(provider, model) → genai-prices' id for the model, or the name itself when unknown."""

    @lru_cache(maxsize=4096)
    def canonical(provider: str, model: str) -> str:
        provider_id = book.pricing_id(provider)
        found = find_model(provider_id, model) if provider_id and model else None
        return found[1].id if found else model

    return canonical
