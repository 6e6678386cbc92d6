"""The genai-prices adapter: our provider slugs and model names as genai-prices knows them, our
usage under its usage keys, and its list price of a usage split into billed buckets.

genai-prices is imported lazily (it loads a 30k-line data module and pydantic): for the
reference path and `explain`, never for a price the compact table's fast path gives, never on
`meterfox --help` and never per request on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from meterfox_cli.pricing.price_data import cleared_when_data_changes, data_label, genai_version
from meterfox_cli.pricing.quote import COMPUTED, Bucket, Quote, revised, usage_decimal
from meterfox_cli.usage import Usage

if TYPE_CHECKING:
    from genai_prices.types import ModelPrice

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


@cleared_when_data_changes
@cache
def pricing_id(slug: str) -> str | None:
    """The genai-prices provider id for a slug the caller's registry gives none for (see
    `PriceBook.pricing_id`); None when it has none.

    A few known slugs first; then the slug itself when genai-prices knows a provider by that
    name (a user-declared `[providers.novita]`).
    """
    if slug in _PRICING_ID_FALLBACK:
        return _PRICING_ID_FALLBACK[slug]
    if slug == "replicate":
        return None
    from meterfox_cli.pricing.compact import current_table

    provider = current_table().find_provider(slug)
    return None if provider is None else provider.id


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
    "cache_image_read_tokens": "cache_image_read_tokens",
    "web_searches": "web_searches",
    "web_search_requests": "web_searches",
    "search_queries": "web_searches",
    "input_document_pages": "input_document_pages",
    "audio_seconds": "audio_seconds",
    "input_characters": "input_characters",
}


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
            values[key] = values.get(key, 0) + usage_decimal(amount)
    return {k: _whole(v) for k, v in values.items() if v}


def _whole(value: int | Decimal) -> int | Decimal:
    return int(value) if isinstance(value, Decimal) and value == value.to_integral() else value


class UsageMismatch(Exception):
    """genai-prices rejected the usage (a part larger than its total: an adapter bug)."""


@dataclass(frozen=True, slots=True)
class GenaiResult:
    model_id: str
    provider_id: str
    buckets: tuple[Bucket, ...]
    total: Decimal


def genai_quote(base: Quote, usage: Usage, at: datetime) -> Quote | None:
    assert base.model is not None and base.pricing_id is not None
    result = genai_price(base.pricing_id, base.model, usage, at, base.context)
    if result is None:
        return None
    return revised(
        base,
        source=COMPUTED,
        rates_from=f"genai-prices {genai_version()} {data_label()}: "
        f"{result.provider_id}/{result.model_id}",
        model_id=result.model_id,
        buckets=result.buckets,
    )


def genai_price(
    provider_id: str,
    model: str,
    usage: Usage,
    at: datetime,
    context: Iterable[tuple[str, str]],
) -> GenaiResult | None:
    """genai-prices' cost for the first name it knows, split into buckets; None if unknown.

    Does what `genai_prices.calc_price` does (find the model, pick the prices in force at `at`
    for this context, decompose the usage into priced units) once, keeping each unit's count
    and rate; tests check the buckets always add up to `calc_price`'s own total.
    """
    for ref in model_refs(provider_id, model):
        found = find_model(provider_id, ref.lower())
        if found is None:
            continue
        provider, info = found
        gusage = genai_usage(usage)
        if (provider.id, info.id) in CALC_PRICE_ONLY:
            return _via_calc_price(provider, info, gusage, at, context)
        price_context = dict(context) or None
        if price_context and not any(info is m for m in provider.models):
            price_context = None  # genai-prices ignores context for a fallback provider's model
        try:
            buckets = genai_buckets(info.get_prices(at, price_context), gusage)
        except ValueError as exc:
            raise UsageMismatch(str(exc)) from exc
        total = sum((b.cost for b in buckets), Decimal(0))
        return GenaiResult(info.id, provider.id, buckets, total)
    return None


@cleared_when_data_changes
@lru_cache(maxsize=4096)
def find_model(provider_id: str, ref: str) -> tuple[Any, Any] | None:
    """genai-prices' (provider, model) for a name, misses included (it caches only hits)."""
    from genai_prices.data_snapshot import get_snapshot

    try:
        return get_snapshot().find_provider_model(ref, None, provider_id, None)
    except LookupError:
        return None


# Models genai-prices special-cases inside ModelInfo.calc_price (a 10 s minimum per request).
CALC_PRICE_ONLY = frozenset({("groq", "whisper-large-v3"), ("groq", "whisper-large-v3-turbo")})


def _via_calc_price(
    provider: Any, info: Any, gusage: Any, at: datetime, context: Iterable[tuple[str, str]]
) -> GenaiResult:
    try:
        calc = info.calc_price(
            gusage, provider, genai_request_timestamp=at, price_context=dict(context) or None
        )
    except ValueError as exc:
        raise UsageMismatch(str(exc)) from exc
    bucket = Bucket("total", Decimal(1), calc.total_price, per=1)
    return GenaiResult(info.id, provider.id, (bucket,), calc.total_price)


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
        rate, tier = tier_rate(price, prompt)
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
    for key in zero_keys(priced.difference(reported), present):
        setattr(gusage, key, 0)


@lru_cache(maxsize=1024)
def zero_keys(missing: frozenset[str], present: frozenset[str]) -> tuple[str, ...]:
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


def tier_rate(price: Any, prompt_tokens: int) -> tuple[Decimal, str | None]:
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
