"""The cost of a recorded request. Runs in the record writer, never on the proxy's hot path.

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

genai-prices is imported lazily (it loads a 30k-line data module): inside the writer thread or
a command, never on `meterfox --help` and never per request on the event loop.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterfox_cli import pricing_tables
from meterfox_cli.config import PriceOverride, PricingConfig
from meterfox_cli.records import UsageRecord
from meterfox_cli.usage import Reading, Usage

if TYPE_CHECKING:
    from genai_prices.types import ModelPrice

log = logging.getLogger("meterfox.pricing")

NANO = Decimal("1e-9")
_ONE = Decimal(1)
MTOK = 1_000_000
DETAIL_VERSION = 1

PROVIDER = "provider"
COMPUTED = "computed"
OVERRIDE = "override"
UNPRICED_SOURCE = "unpriced"


@dataclass(frozen=True, slots=True)
class Price:
    """A record's cost in nano-USD (None when unknown), where it came from, and how."""

    cost_nanousd: int | None
    source: str  # provider | computed | override | unpriced | no_usage
    detail: str | None = None


UNPRICED = Price(None, UNPRICED_SOURCE)
NO_USAGE = Price(None, "no_usage")  # the response carried no usage (an error, a cut stream)


def to_nanousd(usd: Decimal) -> int:
    return int(usd.scaleb(9).quantize(_ONE, ROUND_HALF_EVEN))  # = usd / NANO, rounded


# --- The arithmetic behind a cost -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bucket:
    """One billed quantity: `units` × `rate` USD per `per` units (per = 1e6 for tokens)."""

    key: str  # genai-prices usage key (input_tokens, cache_read_tokens, …) or "seconds"
    units: Decimal
    rate: Decimal
    per: int = MTOK
    tier: str | None = None  # e.g. "prompt > 200,000 tokens" when a tier rate applied

    @property
    def cost(self) -> Decimal:
        return self.units * self.rate / self.per


@dataclass(frozen=True, slots=True)
class Quote:
    """How a cost was reached, complete enough to recompute it (stored as `price_detail`)."""

    source: str
    at: str  # the request's time, ISO 8601 UTC: prices in force then were used
    provider: str
    model: str | None
    rates_from: str = ""
    model_id: str | None = None  # the price table's model, when it differs from `model`
    pricing_id: str | None = None
    context: tuple[tuple[str, str], ...] = ()
    buckets: tuple[Bucket, ...] = ()
    discount: Decimal | None = None
    reported_usd: Decimal | None = None
    list_usd: Decimal | None = None  # for provider costs: what the list price would have been
    reason: str | None = None  # why a request is unpriced

    def total(self) -> Decimal | None:
        """The cost in USD, recomputed from the buckets (or the provider's figure)."""
        if self.source == PROVIDER:
            return self.reported_usd
        if self.source == UNPRICED_SOURCE:
            return None
        subtotal = sum((bucket.cost for bucket in self.buckets), Decimal(0))
        return subtotal * self.discount if self.discount is not None else subtotal

    def price(self) -> Price:
        total = self.total()
        cost = None if total is None else to_nanousd(total)
        return Price(cost, self.source, self._json(total))

    def to_json(self) -> str:
        return self._json(self.total())

    def _json(self, total: Decimal | None) -> str:
        data: dict[str, Any] = {
            "v": DETAIL_VERSION,
            "source": self.source,
            "at": self.at,
            "provider": self.provider,
            "model": self.model,
            "rates_from": self.rates_from,
            "model_id": self.model_id,
            "pricing_id": self.pricing_id,
            "context": dict(self.context) or None,
            "buckets": [_bucket_json(b) for b in self.buckets] or None,
            "discount": decimal_text(self.discount),
            "reported_usd": decimal_text(self.reported_usd),
            "list_usd": decimal_text(self.list_usd),
            "reason": self.reason,
            "total_usd": decimal_text(total),
        }
        return json.dumps({k: v for k, v in data.items() if v not in (None, "")})

    @classmethod
    def from_json(cls, text: str) -> Quote:
        data = json.loads(text)
        return cls(
            source=data["source"],
            at=data.get("at", ""),
            provider=data.get("provider", ""),
            model=data.get("model"),
            rates_from=data.get("rates_from", ""),
            model_id=data.get("model_id"),
            pricing_id=data.get("pricing_id"),
            context=tuple((data.get("context") or {}).items()),
            buckets=tuple(
                Bucket(
                    key=b["key"],
                    units=Decimal(b["units"]),
                    rate=Decimal(b["rate"]),
                    per=int(b["per"]),
                    tier=b.get("tier"),
                )
                for b in data.get("buckets") or ()
            ),
            discount=_decimal_or_none(data.get("discount")),
            reported_usd=_decimal_or_none(data.get("reported_usd")),
            list_usd=_decimal_or_none(data.get("list_usd")),
            reason=data.get("reason"),
        )


_QUOTE_FIELDS = tuple(f.name for f in fields(Quote))


def _bucket_json(bucket: Bucket) -> dict[str, object]:
    data: dict[str, object] = {
        "key": bucket.key,
        "units": decimal_text(bucket.units),
        "rate": decimal_text(bucket.rate),
        "per": bucket.per,
        "cost": decimal_text(bucket.cost),
    }
    if bucket.tier:
        data["tier"] = bucket.tier
    return data


def decimal_text(value: Decimal | None) -> str | None:
    """A Decimal as plain text without exponent or trailing zeros (`0.00725`, `12`)."""
    if value is None:
        return None
    text = str(value)  # plain unless the exponent is large (str is ~3x faster than format)
    if "E" in text:
        text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _decimal_or_none(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


# --- What the pricer needs to know ----------------------------------------------------------


@dataclass(frozen=True)
class PriceBook:
    """The user's overrides and hardware rows on top of the built-in tables."""

    overrides: tuple[PriceOverride, ...] = ()
    extra_hardware: tuple[tuple[str, Decimal], ...] = ()
    hardware: Mapping[str, Decimal] = field(init=False, repr=False, compare=False)
    _matched: dict[tuple[str, str | None], PriceOverride | None] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        table = dict(pricing_tables.HARDWARE_USD_PER_SECOND)
        table.update(dict(self.extra_hardware))
        object.__setattr__(self, "hardware", table)
        object.__setattr__(self, "_matched", {})

    @classmethod
    def from_config(cls, pricing: PricingConfig) -> PriceBook:
        return cls(overrides=pricing.overrides, extra_hardware=pricing.hardware)

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
        return pricing_tables.HARDWARE_SOURCE

    @classmethod
    def load(cls, pricing: PricingConfig, config_dir: Path | None = None) -> PriceBook:
        """The book for a config, loading its `[pricing] prices_file` (relative paths are
        relative to the config directory) into genai-prices first."""
        if pricing.prices_file:
            path = Path(pricing.prices_file).expanduser()
            if not path.is_absolute() and config_dir is not None:
                path = config_dir / path
            load_prices_file(str(path))
        return cls.from_config(pricing)

    def warm(self) -> None:
        """Load genai-prices and its data now (about 0.2 s), not on the first record."""
        pricing_id("openai")
        _genai_price("openai", "gpt-4o", Usage(input_tokens=1, output_tokens=1), _now(), ())

    def __call__(self, record: UsageRecord) -> Price:
        return price_record(record, self)


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
    at_text = at.isoformat().replace("+00:00", "Z")
    override = book.override_for(provider, model)
    if fast and override is None and reading.reported_cost_usd is None and model is not None:
        price = _fast_price(provider, model, reading.price_context, usage, at, at_text)
        if price is not None:
            return price
    base = Quote(
        source=UNPRICED_SOURCE,
        at=at_text,
        provider=provider,
        model=model,
        pricing_id=pricing_id(provider),
        context=reading.price_context,
    )
    if reading.reported_cost_usd is not None:
        return _reported(base, reading.reported_cost_usd, usage, at, fast).price()
    if override is not None:
        return _overridden(base, override, usage, at, book, fast).price()
    return _computed(base, usage, at, fast).price()


def _reported(base: Quote, reported: Decimal, usage: Usage, at: datetime, fast: bool) -> Quote:
    """The provider's figure; the list price beside it only for comparison in `explain`."""
    try:
        listed = _computed(base, usage, at, fast)
    except Exception:  # the reported cost stands whatever happens to the comparison
        log.exception("list price for %s/%s failed", base.provider, base.model)
        listed = base
    return _replace(
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
        return _replace(base, reason="the response named no model")
    if base.pricing_id is None:
        return _replace(
            base,
            reason=f"genai-prices has no provider for {base.provider!r}; "
            f'add [[prices]] provider = "{base.provider}" model = "…" to config.toml',
        )
    found = _fast_quote(base, usage, at) if fast else None
    if found is not None:
        return found
    try:
        found = _genai_quote(base, usage, at)
    except UsageMismatch as exc:
        return _replace(base, reason=f"genai-prices refused the usage: {exc}")
    return found if found is not None else _unknown_model(base)


def _unknown_model(base: Quote) -> Quote:
    return _replace(
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
            return _replace(listed, reason=f"{source} is a discount, but {why}")
        return _replace(
            listed,
            source=OVERRIDE,
            discount=override.discount,
            rates_from=f"{listed.rates_from} × {decimal_text(override.discount)} ({source})",
        )
    if override.kind == "time":
        return _time_priced(base, override, usage, book, source)
    buckets = _token_buckets(override, usage)
    return _replace(base, source=OVERRIDE, rates_from=source, buckets=buckets)


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
        return _replace(base, reason=f"{source} prices by time, but the usage has no seconds")
    if o.per_second is not None:
        rate, rates_from = o.per_second, source
    else:
        assert o.hardware is not None
        rate = book.hardware[o.hardware]
        rates_from = f"{source}: hardware {o.hardware} at ${decimal_text(rate)}/s from "
        rates_from += book.hardware_source(o.hardware)
    bucket = Bucket("seconds", _decimal(seconds), rate, per=1)
    return _replace(base, source=OVERRIDE, rates_from=rates_from, buckets=(bucket,))


def _replicate(base: Quote, usage: Usage) -> Quote:
    """Replicate's official language models by token; anything else needs its hardware."""
    name = (base.model or "").split(":", 1)[0].lower()
    rates = pricing_tables.TOKEN_MODELS.get(name)
    if rates is None:
        return _replace(
            base,
            reason=f"Replicate bills {base.model!r} by run time on its hardware; add "
            f'[[prices]] provider = "replicate" model = "{name or "owner/name"}" '
            'hardware = "gpu-…" to config.toml (see `meterfox prices --provider replicate`)',
        )
    buckets = (
        Bucket("input_tokens", Decimal(usage.input_tokens), rates.input),
        Bucket("output_tokens", Decimal(usage.output_tokens), rates.output),
    )
    return _replace(
        base,
        source=COMPUTED,
        rates_from=f"MeterFox built-in table: {pricing_tables.TOKEN_MODELS_SOURCE}",
        model_id=name,
        buckets=buckets,
    )


def _replace(quote: Quote, **changes: Any) -> Quote:
    """dataclasses.replace without its per-call field checks (several µs, on every priced
    record that is not a plain computed cost)."""
    values = {name: getattr(quote, name) for name in _QUOTE_FIELDS}
    values.update(changes)
    return Quote(**values)


def _decimal(value: float) -> Decimal:
    return Decimal(int(value)) if float(value).is_integer() else Decimal(repr(value))


def _now() -> datetime:
    return datetime.now(tz=UTC)


# --- Provider ids and model names for genai-prices ------------------------------------------

# Slugs whose genai-prices id differs, for providers not (yet) in our registry.
_PRICING_ID_FALLBACK = {
    "anthropic": "anthropic",
    "gemini": "google",
    "google": "google",
    "cohere": "cohere",
    "xai": "x-ai",
    "azure": "azure",
    "bedrock": "aws",
}


@cache
def pricing_id(slug: str) -> str | None:
    """The genai-prices provider id for one of our provider slugs; None when it has none.

    The registry's `Provider.pricing_id` first; then a few known slugs; then the slug itself
    when genai-prices knows a provider by that name (a user-declared `[providers.novita]`).
    """
    from meterfox_cli.providers.registry import build_registry

    provider = build_registry().get(slug)
    if provider is not None and provider.pricing_id:
        return provider.pricing_id
    if slug in _PRICING_ID_FALLBACK:
        return _PRICING_ID_FALLBACK[slug]
    if slug == "replicate":
        return None
    from genai_prices.data_snapshot import get_snapshot

    try:
        return get_snapshot().find_provider(None, slug, None).id
    except LookupError:
        return None


def model_refs(pricing: str, model: str) -> list[str]:
    """The names to try in genai-prices for a model as the response named it."""
    refs = [model]
    if model.startswith("models/"):  # Gemini's native resource name
        refs.append(model.removeprefix("models/"))
    if pricing == "fireworks" and not model.startswith("accounts/"):
        refs.append(f"accounts/fireworks/models/{model}")  # genai-prices keys full names only
    return refs


# --- genai-prices ---------------------------------------------------------------------------

# Our Usage.units names → genai-prices usage keys. Units outside this map are not priced by
# genai-prices (they may still be priced by an override).
_UNIT_KEYS = {
    "input_audio_tokens": "input_audio_tokens",
    "output_audio_tokens": "output_audio_tokens",
    "input_image_tokens": "input_image_tokens",
    "output_image_tokens": "output_image_tokens",
    "input_video_tokens": "input_video_tokens",
    "cache_audio_read_tokens": "cache_audio_read_tokens",
    "web_searches": "web_searches",
    "web_search_requests": "web_searches",
    "search_queries": "web_searches",
    "input_document_pages": "input_document_pages",
    "audio_seconds": "audio_seconds",
}

_KEY_LABELS = {
    "input_tokens": "input",
    "cache_read_tokens": "cache read",
    "cache_write_tokens": "cache write",
    "cache_write_5m_tokens": "cache write (5m)",
    "cache_write_1h_tokens": "cache write (1h)",
    "output_tokens": "output",
    "output_reasoning_tokens": "reasoning",
    "requests": "requests",
    "seconds": "run time",
}


def bucket_label(key: str) -> str:
    return _KEY_LABELS.get(key) or key.removesuffix("_tokens").replace("_", " ")


def genai_usage(usage: Usage) -> Any:
    """Our normalised usage as a genai_prices.Usage: the same meaning, totals and parts."""
    from genai_prices import Usage as GenaiUsage

    return GenaiUsage(**usage_values(usage))


def usage_values(usage: Usage) -> dict[str, int | Decimal]:
    """Our usage under genai-prices' usage keys, zeros left out (genai-prices' "not reported").

    Whole amounts are ints, fractional ones (seconds) Decimals."""
    values: dict[str, int | Decimal] = {
        "input_tokens": usage.input_tokens,
        "cache_read_tokens": usage.cached_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cache_write_1h_tokens": min(usage.cache_write_1h_tokens, usage.cache_write_tokens),
        "output_tokens": usage.output_tokens,
        "output_reasoning_tokens": min(usage.reasoning_tokens, usage.output_tokens),
    }
    if not usage.units:
        return {k: v for k, v in values.items() if v}
    for name, amount in usage.units:
        key = _UNIT_KEYS.get(name)
        if key is not None and amount:
            values[key] = values.get(key, 0) + _decimal(amount)
    return {k: _whole(v) for k, v in values.items() if v}


def _whole(value: int | Decimal) -> int | Decimal:
    return int(value) if isinstance(value, Decimal) and value == value.to_integral() else value


class UsageMismatch(Exception):
    """genai-prices rejected the usage (a part larger than its total: an adapter bug)."""


@dataclass(frozen=True, slots=True)
class _GenaiResult:
    model_id: str
    provider_id: str
    buckets: tuple[Bucket, ...]
    total: Decimal


def _genai_quote(base: Quote, usage: Usage, at: datetime) -> Quote | None:
    assert base.model is not None and base.pricing_id is not None
    result = _genai_price(base.pricing_id, base.model, usage, at, base.context)
    if result is None:
        return None
    return _replace(
        base,
        source=COMPUTED,
        rates_from=f"genai-prices {genai_version()} {data_label()}: "
        f"{result.provider_id}/{result.model_id}",
        model_id=result.model_id,
        buckets=result.buckets,
    )


def _genai_price(
    provider_id: str,
    model: str,
    usage: Usage,
    at: datetime,
    context: Iterable[tuple[str, str]],
) -> _GenaiResult | None:
    """genai-prices' cost for the first name it knows, split into buckets; None if unknown.

    Does what `genai_prices.calc_price` does (find the model, pick the prices in force at `at`
    for this context, decompose the usage into priced units) once, keeping each unit's count
    and rate; tests check the buckets always add up to `calc_price`'s own total.
    """
    for ref in model_refs(provider_id, model):
        found = _find_model(provider_id, ref.lower())
        if found is None:
            continue
        provider, info = found
        gusage = genai_usage(usage)
        if (provider.id, info.id) in _CALC_PRICE_ONLY:
            return _via_calc_price(provider, info, gusage, at, context)
        price_context = dict(context) or None
        if price_context and not any(info is m for m in provider.models):
            price_context = None  # genai-prices ignores context for a fallback provider's model
        try:
            buckets = genai_buckets(info.get_prices(at, price_context), gusage)
        except ValueError as exc:
            raise UsageMismatch(str(exc)) from exc
        total = sum((b.cost for b in buckets), Decimal(0))
        return _GenaiResult(info.id, provider.id, buckets, total)
    return None


@lru_cache(maxsize=4096)
def _find_model(provider_id: str, ref: str) -> tuple[Any, Any] | None:
    """genai-prices' (provider, model) for a name, misses included (it caches only hits)."""
    from genai_prices.data_snapshot import get_snapshot

    try:
        return get_snapshot().find_provider_model(ref, None, provider_id, None)
    except LookupError:
        return None


# Models genai-prices special-cases inside ModelInfo.calc_price (a 10 s minimum per request).
_CALC_PRICE_ONLY = frozenset({("groq", "whisper-large-v3"), ("groq", "whisper-large-v3-turbo")})


def _via_calc_price(
    provider: Any, info: Any, gusage: Any, at: datetime, context: Iterable[tuple[str, str]]
) -> _GenaiResult:
    try:
        calc = info.calc_price(
            gusage, provider, genai_request_timestamp=at, price_context=dict(context) or None
        )
    except ValueError as exc:
        raise UsageMismatch(str(exc)) from exc
    bucket = Bucket("total", Decimal(1), calc.total_price, per=1)
    return _GenaiResult(info.id, provider.id, (bucket,), calc.total_price)


def genai_buckets(model_price: ModelPrice, gusage: Any) -> tuple[Bucket, ...]:
    """The billed quantity and rate of each priced unit, as genai-prices computes them.

    Uses genai-prices' own unit decomposition (private API, hence the exact pin on 0.2.3):
    cache reads and writes are carved out of input, 1h writes out of all writes, reasoning out
    of output where a model prices it apart.
    """
    from genai_prices.types import (
        TieredPrices,
        _collect_resolved_model_prices,
        _compute_registry_priced_counts,
    )
    from genai_prices.units import _get_registry

    resolved = _collect_resolved_model_prices(model_price, _get_registry())
    _fill_zeros(gusage, frozenset(unit.usage_key for unit, _ in resolved))
    counts = _compute_registry_priced_counts(resolved, gusage)
    tiered = any(isinstance(price, TieredPrices) for _, price in resolved)
    prompt = gusage.input_tokens if tiered else 0
    buckets = []
    for unit, price in resolved:
        count = counts.get(unit.usage_key) or 0
        if not count:
            continue
        rate, tier = _tier_rate(price, prompt)
        buckets.append(Bucket(unit.usage_key, _decimal_units(count), rate, unit.per, tier))
    return tuple(buckets)


def _fill_zeros(gusage: Any, priced: frozenset[str]) -> None:
    """Report 0 for priced units the usage leaves out, where genai-prices would infer 0.

    genai-prices infers each missing unit on every access (the costliest step of a price);
    whether it infers 0 or refuses depends only on which units are non-zero, so the answer is
    cached per pattern. Units it would refuse are left out, so it still refuses them.
    """
    reported = gusage._reported_values()
    present = frozenset(key for key, value in reported.items() if value > 0)
    for key in _zero_keys(priced.difference(reported), present):
        setattr(gusage, key, 0)


@lru_cache(maxsize=1024)
def _zero_keys(missing: frozenset[str], present: frozenset[str]) -> tuple[str, ...]:
    from genai_prices import Usage as GenaiUsage

    probe = GenaiUsage(**dict.fromkeys(present, 1))
    zeros = []
    for key in sorted(missing - {"requests"}):
        try:
            if getattr(probe, key) == 0:
                zeros.append(key)
        except ValueError:
            continue
    return tuple(zeros)


def _tier_rate(price: Any, prompt_tokens: int) -> tuple[Decimal, str | None]:
    """The rate that applies, mirroring genai_prices.types.calc_unit_price's cliff tiers."""
    from genai_prices.types import TieredPrices

    if not isinstance(price, TieredPrices):
        return price, None
    for tier in reversed(price.tiers):
        if prompt_tokens > tier.start:
            return tier.price, f"prompt > {tier.start:,} tokens"
    return price.base, None


def _decimal_units(count: int | float | Decimal) -> Decimal:
    if isinstance(count, Decimal):
        return count
    return Decimal(count) if isinstance(count, int) else Decimal(repr(count))


# --- The fast path: one tariff per model, price context and price period --------------------
#
# The reference path above has genai-prices resolve the model's prices, then validate and
# decompose the usage, for every record: roughly 80-130 µs on the development machine, nearly
# all of it re-deriving the same things. A model's prices change only at a few instants (a new list price from some date,
# DeepSeek's off-peak hours), so everything that depends on the prices alone is worked out
# once per price period and kept in a `Tariff`: each priced unit's rate at each long-context
# tier, the order in which genai-prices carves units out of one another, and the quote's JSON
# around the numbers. Per record what remains is integer subtraction, one Decimal product per
# non-empty bucket, and joining strings. The result is the reference path's, to the byte:
# tests compare the two on random usage over many models, hours and price contexts.
#
# Covered: genai-prices list prices for usage in whole units: a `computed` cost (its JSON
# rendered straight from the tariff), and, as a Quote, the list price under a discount override
# or beside a provider-reported cost. Everything else takes the reference path: token and time
# overrides (cheap already), Replicate, unknown models and providers, the models genai-prices
# special-cases in calc_price (Groq Whisper), fractional units (seconds), and usage genai-prices
# would refuse (a part larger than its total, or a part reported without its total), so that
# the stored reason is the one genai-prices gives.


@dataclass(frozen=True, slots=True)
class _Line:
    """One priced unit at one tier level: its rate, and its bucket's JSON around the numbers."""

    key: str
    rate: Decimal
    per: int
    tier: str | None
    json_units: str  # '{"key": "input_tokens", "units": "'
    json_cost: str  # '", "rate": "2.5", "per": 1000000, "cost": "'
    json_end: str  # '"}', or '", "tier": "prompt > 200,000 tokens"}'


@dataclass(frozen=True, slots=True)
class Tariff:
    """What genai-prices charges for one model, as one provider names it, in one price context,
    during one price period: all that `genai_buckets` works out per record, worked out once."""

    model_id: str
    leaves: tuple[tuple[str, tuple[str, ...]], ...]  # each priced unit, with the priced units
    # inside it, in genai-prices' decomposition order (the most specific first)
    per_request: bool  # a price per request: one unit per record
    needed: frozenset[str]  # the usage keys genai-prices reads; a missing one must infer as 0
    tiers: tuple[int, ...]  # the prompt sizes above which other rates apply, ascending
    lines: tuple[tuple[_Line, ...], ...]  # per tier level, in genai-prices' order
    rates_from: str
    json_about: str  # the quote's JSON fields between "at" and "buckets"
    verdicts: dict[frozenset[str], bool] = field(default_factory=dict, compare=False)

    def accepts(self, reported: frozenset[str]) -> bool:
        """Whether genai-prices takes usage reporting exactly these keys (as non-zero) without
        complaint: it infers 0 for each priced key left out. Depends on the keys alone."""
        verdict = self.verdicts.get(reported)
        if verdict is None:
            missing = self.needed - reported
            verdict = len(_zero_keys(missing, reported)) == len(missing)
            if len(self.verdicts) < 1024:
                self.verdicts[reported] = verdict
        return verdict

    def counts(self, values: Mapping[str, int]) -> dict[str, int] | None:
        """Each priced unit's own count, as genai-prices' compute_leaf_values decomposes the
        usage; None when a part exceeds its total (genai-prices refuses that usage)."""
        own: dict[str, int] = {}
        for key, inside in self.leaves:
            count = values.get(key, 0)
            for part in inside:
                count -= own[part]
            if count < 0:
                return None
            own[key] = count
        if self.per_request:
            own["requests"] = 1
        return own


@dataclass(slots=True)
class _Schedule:
    """A model as one provider names it, in one price context: its genai-prices entry, the
    constraints deciding which of its prices are in force, and the tariff of each period seen."""

    slug: str
    model: str
    context: tuple[tuple[str, str], ...]
    provider: Any  # genai_prices.types.Provider
    info: Any  # genai_prices.types.ModelInfo
    price_context: dict[str, str] | None  # as ModelInfo.get_prices gets it
    standard: tuple[tuple[int, Any], ...]  # (index, constraint) of its conditional prices
    variants: tuple[tuple[int, Any], ...]  # (index, constraint) of variants matching the context
    tariffs: dict[tuple[int, tuple[int, ...]], Tariff] = field(default_factory=dict)

    def tariff_at(self, at: datetime) -> Tariff:
        period = self.period(at)
        tariff = self.tariffs.get(period)
        if tariff is None:
            tariff = self.tariffs[period] = _tariff(self, at)
        return tariff

    def period(self, at: datetime) -> tuple[int, tuple[int, ...]]:
        """All that `ModelInfo.get_prices(at, context)` depends on: which conditional price is
        in force (the last active one, else the first) and which matching variants are active.
        The constraints' own `active` decides, so a period is genai-prices' own notion."""
        chosen = 0
        for index, constraint in self.standard:
            if constraint is None or constraint.active(at):
                chosen = index
                break
        return chosen, tuple(i for i, c in self.variants if c is None or c.active(at))


@lru_cache(maxsize=256)  # ~6 KB a tariff: bounded, whatever model names clients send
def _schedule(slug: str, model: str, context: tuple[tuple[str, str], ...]) -> _Schedule | None:
    """The schedule for a model as named, or None when only the reference path can price it."""
    from genai_prices.types import ModelPrice

    provider_id = pricing_id(slug)
    if provider_id is None or slug == "replicate":
        return None
    for ref in model_refs(provider_id, model):
        found = _find_model(provider_id, ref.lower())
        if found is None:
            continue
        provider, info = found
        if (provider.id, info.id) in _CALC_PRICE_ONLY:
            return None
        price_context = dict(context) or None
        if price_context and not any(info is m for m in provider.models):
            price_context = None  # as in _genai_price
        conditional = () if isinstance(info.prices, ModelPrice) else info.prices
        variants = (info.price_variants or ()) if price_context else ()
        return _Schedule(
            slug,
            model,
            context,
            provider,
            info,
            price_context,
            standard=tuple((i, c.constraint) for i, c in reversed(list(enumerate(conditional)))),
            variants=tuple(
                (i, v.constraint)
                for i, v in enumerate(variants)
                if all(price_context.get(key) == value for key, value in v.when.items())
            ),
        )
    return None


def _tariff(schedule: _Schedule, at: datetime) -> Tariff:
    """The tariff in force at `at`, from genai-prices' own resolution of the prices."""
    from genai_prices.decompose import is_descendant_or_self
    from genai_prices.types import TieredPrices, _collect_resolved_model_prices
    from genai_prices.units import _get_registry

    prices = schedule.info.get_prices(at, schedule.price_context)
    resolved = _collect_resolved_model_prices(prices, _get_registry())
    units = sorted(
        (unit for unit, _ in resolved if unit.usage_key != "requests"),
        key=lambda unit: (-len(unit.dimensions), unit.usage_key),
    )
    leaves = tuple(
        (
            unit.usage_key,
            tuple(d.usage_key for d in units if d is not unit and is_descendant_or_self(unit, d)),
        )
        for unit in units
    )
    tiered = [price for _, price in resolved if isinstance(price, TieredPrices)]
    tiers = tuple(sorted({tier.start for price in tiered for tier in price.tiers}))
    needed = {unit.usage_key for unit in units} | ({"input_tokens"} if tiered else set())
    levels = tuple(
        tuple(
            _line(unit.usage_key, unit.per, *_tier_rate(price, prompt)) for unit, price in resolved
        )
        for prompt in (0, *(start + 1 for start in tiers))  # a prompt size within each level
    )
    info = schedule.info
    rates_from = f"genai-prices {genai_version()} {data_label()}: {schedule.provider.id}/{info.id}"
    about = {
        "provider": schedule.slug,
        "model": schedule.model,
        "rates_from": rates_from,
        "model_id": info.id,
        "pricing_id": pricing_id(schedule.slug),
        "context": dict(schedule.context) or None,
    }
    return Tariff(
        model_id=info.id,
        leaves=leaves,
        per_request=any(unit.usage_key == "requests" for unit, _ in resolved),
        needed=frozenset(needed),
        tiers=tiers,
        lines=levels,
        rates_from=rates_from,
        json_about="".join(
            f", {json.dumps(k)}: {json.dumps(v)}" for k, v in about.items() if v not in (None, "")
        ),
    )


def _line(key: str, per: int, rate: Decimal, tier: str | None) -> _Line:
    end = f'", "tier": {json.dumps(tier)}}}' if tier else '"}'
    return _Line(
        key,
        rate,
        per,
        tier,
        json_units=f'{{"key": {json.dumps(key)}, "units": "',
        json_cost=f'", "rate": "{decimal_text(rate)}", "per": {per}, "cost": "',
        json_end=end,
    )


def _billed(
    slug: str, model: str, context: tuple[tuple[str, str], ...], usage: Usage, at: datetime
) -> tuple[Tariff, list[tuple[_Line, int, Decimal]]] | None:
    """The tariff in force and each non-empty bucket (its line, units and cost in USD), in
    genai-prices' order; None when the reference path must price it (see the section comment)."""
    schedule = _schedule(slug, model, context)
    if schedule is None:
        return None
    values = usage_values(usage)
    if not all(type(v) is int and v > 0 for v in values.values()):
        return None  # fractional (or invalid) amounts: genai-prices' own arithmetic decides
    try:
        tariff = schedule.tariff_at(at)
    except ValueError:  # price data genai-prices rejects: the reference path reports it
        return None
    if not tariff.accepts(frozenset(values)):
        return None
    counts = tariff.counts(values)  # all ints, checked above
    if counts is None:
        return None
    level = bisect_left(tariff.tiers, values.get("input_tokens", 0)) if tariff.tiers else 0
    return tariff, [
        (line, count, Decimal(count) * line.rate / line.per)  # as Bucket.cost
        for line in tariff.lines[level]
        if (count := counts.get(line.key))
    ]


def _fast_price(
    slug: str,
    model: str,
    context: tuple[tuple[str, str], ...],
    usage: Usage,
    at: datetime,
    at_text: str,
) -> Price | None:
    """A `computed` Price through the tariff, its detail byte for byte `Quote.to_json()`'s."""
    found = _billed(slug, model, context, usage, at)
    if found is None:
        return None
    tariff, billed = found
    total = sum((cost for _, _, cost in billed), Decimal(0))  # in bucket order, as Quote.total
    buckets = ", ".join(
        f"{line.json_units}{count}{line.json_cost}{decimal_text(cost)}{line.json_end}"
        for line, count, cost in billed
    )
    listed = f', "buckets": [{buckets}]' if buckets else ""
    detail = (
        f'{{"v": {DETAIL_VERSION}, "source": "{COMPUTED}", "at": "{at_text}"{tariff.json_about}'
        f'{listed}, "total_usd": "{decimal_text(total)}"}}'
    )
    return Price(to_nanousd(total), COMPUTED, detail)


def _fast_quote(base: Quote, usage: Usage, at: datetime) -> Quote | None:
    """The `computed` Quote through the tariff, for the paths that build on one (a discount,
    the list price beside a reported cost); None when the reference path must price it."""
    assert base.model is not None
    found = _billed(base.provider, base.model, base.context, usage, at)
    if found is None:
        return None
    tariff, billed = found
    return _replace(
        base,
        source=COMPUTED,
        rates_from=tariff.rates_from,
        model_id=tariff.model_id,
        buckets=tuple(
            Bucket(line.key, Decimal(count), line.rate, line.per, line.tier)
            for line, count, _ in billed
        ),
    )


@cache
def genai_version() -> str:
    from genai_prices import __version__

    return __version__


def data_label() -> str:
    """Which price data genai-prices is using: its bundled module or a loaded prices file."""
    return _loaded_file[0] if _loaded_file else "(bundled data)"


_loaded_file: list[str] = []


def load_prices_file(path: str) -> int:
    """Use a local copy of genai-prices' `data.json` instead of the bundled data (offline
    refresh). Returns the number of providers loaded. The same as an `UpdatePrices.fetch()`
    override reading a file, without the background thread."""
    from genai_prices import data_snapshot
    from genai_prices.types import _providers_from_raw
    from genai_prices.units import _get_registry

    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a JSON array of providers (genai-prices data.json)")
    providers = _providers_from_raw(raw, _get_registry())
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers, from_auto_update=True))
    _loaded_file[:] = [f"(prices file {path})"]
    _forget_lookups()
    return len(providers)


def use_bundled_prices() -> None:
    """Back to the data bundled with the pinned genai-prices."""
    from genai_prices import data_snapshot

    data_snapshot.set_custom_snapshot(None)
    _loaded_file.clear()
    _forget_lookups()


def _forget_lookups() -> None:
    pricing_id.cache_clear()
    _find_model.cache_clear()
    _schedule.cache_clear()
