"""PriceBook and the cost of a recorded request: the decision chain below, from a book of the
user's prices. Runs in the record writer, never on the proxy's hot path.

Where a cost comes from, in order (the first that applies wins):
1. `provider`: the provider's own figure (OpenRouter `usage.cost`, Perplexity
   `usage.cost.total_cost`, xAI `cost_in_usd_ticks`) — what the user is actually billed.
2. `override`: the first matching `[[prices]]` entry in config.toml (token rates, a discount
   on the list price, or a time price).
3. `computed`: genai-prices' bundled list prices at the request's time (tiers, cache reads,
   5m/1h cache writes, service tiers); or, for Replicate, MeterFox's small built-in table.
4. `unpriced`: nothing knows the model. The cost is NULL, never 0, and the reason is kept.

Every priced record keeps its `Quote` as JSON in `price_detail`: each bucket's units, rate and
where the rates came from, so `meterfox explain` can show the arithmetic and `meterfox reprice`
can recompute it. Money is Decimal throughout and stored as integer nano-USD.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from meterfox_cli import cache_storage_prices, replicate_prices
from meterfox_cli.config import PriceOverride, PricingConfig
from meterfox_cli.money import decimal_text
from meterfox_cli.pricing.compact import current_table
from meterfox_cli.pricing.genai import UsageMismatch, genai_quote, pricing_id
from meterfox_cli.pricing.price_data import genai_version, load_prices_file
from meterfox_cli.pricing.quote import (
    COMPUTED,
    NO_USAGE,
    OVERRIDE,
    PROVIDER,
    UNPRICED_SOURCE,
    Bucket,
    Price,
    Quote,
    quote_time,
    revised,
    usage_decimal,
)
from meterfox_cli.pricing.tariff import fast_price, fast_quote, known_model
from meterfox_cli.records import UsageRecord
from meterfox_cli.usage import Reading, Usage

log = logging.getLogger("meterfox.pricing")


@dataclass(frozen=True)
class PriceBook:
    """The user's overrides and hardware rows on top of the built-in tables, and the
    genai-prices provider id of each provider slug the caller's registry knows one for."""

    overrides: tuple[PriceOverride, ...] = ()
    extra_hardware: tuple[tuple[str, Decimal], ...] = ()
    pricing_ids: tuple[tuple[str, str], ...] = ()  # (our slug, genai-prices provider id)
    extra_cache_storage: tuple[tuple[str, Decimal], ...] = ()  # [pricing.cache_storage]
    hardware: Mapping[str, Decimal] = field(init=False, repr=False, compare=False)
    cache_storage: Mapping[str, Decimal] = field(init=False, repr=False, compare=False)
    _ids: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _matched: dict[tuple[str, str | None], PriceOverride | None] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        table = dict(replicate_prices.HARDWARE_USD_PER_SECOND)
        table.update(dict(self.extra_hardware))
        object.__setattr__(self, "hardware", table)
        storage = dict(cache_storage_prices.USD_PER_MTOK_HOUR)
        storage.update(dict(self.extra_cache_storage))
        object.__setattr__(self, "cache_storage", storage)
        object.__setattr__(self, "_ids", dict(self.pricing_ids))
        object.__setattr__(self, "_matched", {})

    @classmethod
    def from_config(
        cls, pricing: PricingConfig, pricing_ids: Mapping[str, str] | None = None
    ) -> PriceBook:
        """The book for a config; `pricing_ids` comes from the caller's provider registry."""
        return cls(
            overrides=pricing.overrides,
            extra_hardware=pricing.hardware,
            pricing_ids=tuple((pricing_ids or {}).items()),
            extra_cache_storage=pricing.cache_storage,
        )

    def pricing_id(self, slug: str) -> str | None:
        """The genai-prices provider id for one of our slugs: the registry's, else
        `genai.pricing_id`'s (a few known slugs, then the name genai-prices knows the slug by,
        as for a user-declared `[providers.novita]`)."""
        return self._ids.get(slug) or pricing_id(slug)

    def override_for(self, provider: str, model: str | None) -> PriceOverride | None:
        """The first entry matching a provider and model; remembered, since matching every
        glob again for every record adds up in the writer."""
        if not self.overrides:
            return None
        key = (provider, model)
        if key not in self._matched:
            if len(self._matched) >= 4096:
                self._matched.clear()
            self._matched[key] = next(
                (o for o in self.overrides if o.matches(provider, model)), None
            )
        return self._matched[key]

    def hardware_source(self, name: str) -> str:
        if name in dict(self.extra_hardware):
            return "config.toml [pricing.hardware]"
        return replicate_prices.HARDWARE_SOURCE

    def storage_rate(self, model: str) -> tuple[Decimal, str] | None:
        """USD per 1M tokens per hour a Gemini cache of `model` is kept, and where it comes from."""
        found = cache_storage_prices.storage_rate(model, self.cache_storage)
        if found is None:
            return None
        row, rate = found
        if row in dict(self.extra_cache_storage):
            return rate, f"{row} at ${decimal_text(rate)} from config.toml [pricing.cache_storage]"
        return rate, f"{row} at ${decimal_text(rate)} from {cache_storage_prices.SOURCE}"

    @classmethod
    def load(
        cls,
        pricing: PricingConfig,
        config_dir: Path | None = None,
        pricing_ids: Mapping[str, str] | None = None,
    ) -> PriceBook:
        """The book for a config, loading its `[pricing] prices_file` (relative paths are
        relative to the config directory) into genai-prices first."""
        if pricing.prices_file:
            path = Path(pricing.prices_file).expanduser()
            if not path.is_absolute() and config_dir is not None:
                path = config_dir / path
            load_prices_file(str(path))
        return cls.from_config(pricing, pricing_ids)

    def warm(self) -> None:
        """Load the price data now, not on the first record: the compact table (milliseconds,
        without genai-prices), or genai-prices itself (about 0.2 s) when the table cannot
        stand for its data (a prices file, another version); see `compact`."""
        current_table()
        self.pricing_id("openai")

    def __call__(self, record: UsageRecord) -> Price:
        return price_record(record, self)


# No overrides and no registry ids (tests, benchmarks, a writer built without a book): every
# built-in slug still gets the id the registry gives it, from genai.pricing_id.
DEFAULT_BOOK = PriceBook()


def price_record(record: UsageRecord, book: PriceBook = DEFAULT_BOOK) -> Price:
    """The cost of one recorded request. Called by the record writer, off the event loop."""
    model = record.reading.model or record.model
    return price_reading(record.provider, model, record.started_at, record.reading, book)


def price_reading(
    provider: str,
    model: str | None,
    started_at: float,
    reading: Reading,
    book: PriceBook = DEFAULT_BOOK,
    *,
    fast: bool = True,
) -> Price:
    """The cost of one response's usage, at the prices in force at `started_at` (unix s).

    A list price goes through the tariff fast path when it can (see `Tariff`); `fast=False`
    forces the reference path through genai-prices' own unit model, which the fast path must
    always agree with to the byte (tests and bench/pricing.py compare the two).
    """
    usage = reading.usage
    if usage is None:
        return NO_USAGE
    at = datetime.fromtimestamp(started_at, UTC)
    at_text = quote_time(started_at, at)
    override = book.override_for(provider, model)
    provider_id = book.pricing_id(provider)
    storage_hours = usage.unit(cache_storage_prices.STORAGE_UNIT) if usage.units else 0
    plain = override is None and reading.reported_cost_usd is None and not storage_hours
    if fast and plain and model is not None:
        price = fast_price(provider, provider_id, model, reading.price_context, usage, at, at_text)
        if price is not None:
            return price
    base = Quote(
        source=UNPRICED_SOURCE,
        at=at_text,
        provider=provider,
        model=model,
        pricing_id=provider_id,
        context=reading.price_context,
    )
    if reading.reported_cost_usd is not None:
        return _reported(base, reading.reported_cost_usd, usage, at, fast).price()
    if override is not None:
        quote = _overridden(base, override, usage, at, book, fast)
    else:
        quote = _computed(base, usage, at, fast)
    return _with_storage(quote, storage_hours, book).price()


def _with_storage(quote: Quote, token_hours: float, book: PriceBook) -> Quote:
    """A Gemini cache's storage for its TTL, one more bucket of a priced quote. Without a
    storage price for the model the whole record is unpriced, with the reason: a cost without
    its storage would pass for complete."""
    if not token_hours or quote.source not in (COMPUTED, OVERRIDE) or quote.model is None:
        return quote
    found = book.storage_rate(quote.model)
    if found is None:
        return revised(
            quote,
            source=UNPRICED_SOURCE,
            buckets=(),
            discount=None,
            reason=f"no cache-storage price for {quote.model!r} (the cache is kept for "
            f"{decimal_text(usage_decimal(token_hours))} token-hours): add it to "
            "[pricing.cache_storage] in config.toml, then `meterfox reprice`",
        )
    rate, source = found
    bucket = Bucket(cache_storage_prices.STORAGE_UNIT, usage_decimal(token_hours), rate)
    return revised(
        quote,
        buckets=(*quote.buckets, bucket),
        rates_from=f"{quote.rates_from}; cache storage per 1M tokens per hour: {source}",
    )


def _reported(base: Quote, reported: Decimal, usage: Usage, at: datetime, fast: bool) -> Quote:
    """The provider's figure; the list price beside it only for comparison in `explain`."""
    try:
        listed = _computed(base, usage, at, fast)
    except Exception:  # the reported cost stands whatever happens to the comparison
        log.exception("list price for %s/%s failed", base.provider, base.model)
        listed = base
    return revised(
        base,
        source=PROVIDER,
        rates_from=f"reported by {base.provider} in the response's usage",
        reported_usd=reported,
        list_usd=listed.total() if listed.source == COMPUTED else None,
        model_id=listed.model_id,
    )


def _computed(base: Quote, usage: Usage, at: datetime, fast: bool = True) -> Quote:
    if base.provider == "replicate":
        return _replicate(base, usage)
    if base.model is None:
        return revised(base, reason="the response named no model")
    if base.pricing_id is None:
        return revised(
            base,
            reason=f"genai-prices has no provider for {base.provider!r}; "
            f'add [[prices]] provider = "{base.provider}" model = "…" to config.toml',
        )
    found = fast_quote(base, usage, at) if fast else None
    if found is not None:
        return found
    if fast and not known_model(base.pricing_id, base.model):
        return _unknown_model(base)  # as genai-prices would find: no need to import it
    try:
        found = genai_quote(base, usage, at)
    except UsageMismatch as exc:
        return revised(base, reason=f"genai-prices refused the usage: {exc}")
    return found if found is not None else _unknown_model(base)


def _unknown_model(base: Quote) -> Quote:
    return revised(
        base,
        reason=f"no price for model {base.model!r} at {base.provider} in genai-prices "
        f"{genai_version()}; add a [[prices]] entry to config.toml, then `meterfox reprice`",
    )


def _overridden(
    base: Quote, override: PriceOverride, usage: Usage, at: datetime, book: PriceBook, fast: bool
) -> Quote:
    source = override.describe() + (f" — {override.note}" if override.note else "")
    if override.kind == "discount":
        listed = _computed(base, usage, at, fast)
        if listed.source != COMPUTED:
            why = listed.reason or "no list price"
            return revised(listed, reason=f"{source} is a discount, but {why}")
        return revised(
            listed,
            source=OVERRIDE,
            discount=override.discount,
            rates_from=f"{listed.rates_from} × {decimal_text(override.discount)} ({source})",
        )
    if override.kind == "time":
        return _time_priced(base, override, usage, book, source)
    buckets = _token_buckets(override, usage)
    return revised(base, source=OVERRIDE, rates_from=source, buckets=buckets)


def _token_buckets(o: PriceOverride, usage: Usage) -> tuple[Bucket, ...]:
    """Our normalised usage split into billed buckets at the override's per-MTok rates."""
    assert o.input is not None and o.output is not None
    write = _first(o.cache_write, o.input)
    write_1h = _first(o.cache_write_1h, write)
    one_hour = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    uncached = max(usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
    counts = (
        ("input_tokens", uncached, o.input),
        ("cache_read_tokens", usage.cached_tokens, _first(o.cached_input, o.input)),
        ("cache_write_tokens", usage.cache_write_tokens - one_hour, write),
        ("cache_write_1h_tokens", one_hour, write_1h),
        ("output_tokens", usage.output_tokens, o.output),
    )
    return tuple(
        Bucket(key, Decimal(units), rate) for key, units, rate in counts if units or key in _ALWAYS
    )


_ALWAYS = frozenset({"input_tokens", "output_tokens"})


def _first(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


def _time_priced(
    base: Quote, o: PriceOverride, usage: Usage, book: PriceBook, source: str
) -> Quote:
    seconds = usage.unit("seconds")
    if not seconds:
        return revised(base, reason=f"{source} prices by time, but the usage has no seconds")
    if o.per_second is not None:
        rate, rates_from = o.per_second, source
    else:
        assert o.hardware is not None
        rate = book.hardware[o.hardware]
        rates_from = f"{source}: hardware {o.hardware} at ${decimal_text(rate)}/s from "
        rates_from += book.hardware_source(o.hardware)
    bucket = Bucket("seconds", usage_decimal(seconds), rate, per=1)
    return revised(base, source=OVERRIDE, rates_from=rates_from, buckets=(bucket,))


def _replicate(base: Quote, usage: Usage) -> Quote:
    """Replicate's official language models by token; anything else needs its hardware."""
    name = (base.model or "").split(":", 1)[0].lower()
    rates = replicate_prices.TOKEN_MODELS.get(name)
    if rates is None:
        return revised(
            base,
            reason=f"Replicate bills {base.model!r} by run time on its hardware; add "
            f'[[prices]] provider = "replicate" model = "{name or "owner/name"}" '
            'hardware = "gpu-…" to config.toml (see `meterfox prices --provider replicate`)',
        )
    buckets = (
        Bucket("input_tokens", Decimal(usage.input_tokens), rates.input),
        Bucket("output_tokens", Decimal(usage.output_tokens), rates.output),
    )
    return revised(
        base,
        source=COMPUTED,
        rates_from=f"MeterFox built-in table: {replicate_prices.TOKEN_MODELS_SOURCE}",
        model_id=name,
        buckets=buckets,
    )
