"""The fast path for list prices: one `Tariff` per model, price context and price period,
worked out once from genai-prices' data (the compact table: genai-prices itself is not
imported), so a record's `computed` cost is a few integer steps.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from meterfox_cli.money import decimal_text, to_nanousd
from meterfox_cli.pricing.compact import Model, Provider, Rate, Tiered, current_table
from meterfox_cli.pricing.genai import CALC_PRICE_ONLY, model_refs, usage_values
from meterfox_cli.pricing.price_data import cleared_when_data_changes, data_label, genai_version
from meterfox_cli.pricing.quote import (
    COMPUTED,
    DETAIL_VERSION,
    Bucket,
    Price,
    Quote,
    revised,
)
from meterfox_cli.usage import Usage

# The reference path (`genai.genai_quote`) has genai-prices resolve the model's prices, then
# validate and decompose the usage, for every record: roughly 80-130 µs on the development
# machine, nearly all of it re-deriving the same things. A model's prices change only at a few
# instants (a new list price from some date, DeepSeek's off-peak hours), so everything that
# depends on the prices alone is worked out once per price period and kept in a `Tariff`: each
# priced unit's rate at each long-context tier, the order in which genai-prices carves units
# out of one another, and the quote's JSON around the numbers. Per record what remains is
# integer subtraction, one Decimal product per non-empty bucket, and joining strings. The result
# is the reference path's, to the byte: tests compare the two on random usage over many models,
# hours and price contexts.
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
    rate_per: Decimal | None  # rate / per when exact (per a power of ten): a unit's cost


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
            verdict = len(current_table().zero_keys(missing, reported)) == len(missing)
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
    pricing_id: str
    model: str
    context: tuple[tuple[str, str], ...]
    provider: Provider
    info: Model
    price_context: dict[str, str] | None  # as ModelInfo.get_prices gets it
    standard: tuple[tuple[int, Any], ...]  # (index, constraint) of its conditional prices
    variants: tuple[tuple[int, Any], ...]  # (index, constraint) of variants matching the context
    tariffs: dict[tuple[int, tuple[int, ...]], Tariff] = field(default_factory=dict)

    def tariff_at(self, at: datetime) -> Tariff:
        period = self.period(at) if self.standard or self.variants else _ALWAYS
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


_ALWAYS: tuple[int, tuple[int, ...]] = (0, ())  # `period` of a schedule without constraints


@cleared_when_data_changes
@lru_cache(maxsize=256)  # ~6 KB a tariff: bounded, whatever model names clients send
def _schedule(
    slug: str, provider_id: str | None, model: str, context: tuple[tuple[str, str], ...]
) -> _Schedule | None:
    """The schedule for a model as named, or None when only the reference path can price it."""
    if provider_id is None or slug == "replicate":
        return None
    table = current_table()
    for ref in model_refs(provider_id, model):
        found = table.find_model(provider_id, ref.lower())
        if found is None:
            continue
        provider, info = found
        if (provider.id, info.id) in CALC_PRICE_ONLY:
            return None
        price_context = dict(context) or None
        if price_context and not any(info is m for m in provider.models):
            price_context = None  # as in genai_price
        conditional = info.conditional if info.plain is None else ()
        variants = info.price_variants if price_context else ()
        return _Schedule(
            slug,
            provider_id,
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
    """The tariff in force at `at`, resolved as genai-prices resolves it (see `compact`)."""
    prices = schedule.info.get_prices(at, schedule.price_context)
    resolved = current_table().resolved(prices)
    units = sorted(
        (unit for unit, _ in resolved if unit.usage_key != "requests"),
        key=lambda unit: (-len(unit.dimensions), unit.usage_key),
    )
    leaves = tuple(
        (
            unit.usage_key,
            tuple(d.usage_key for d in units if d is not unit and unit.within(d)),
        )
        for unit in units
    )
    tiered = [price for _, price in resolved if isinstance(price, Tiered)]
    tiers = tuple(sorted({start for price in tiered for start, _ in price.tiers}))
    needed = {unit.usage_key for unit in units} | ({"input_tokens"} if tiered else set())
    levels = tuple(
        tuple(_line(unit.usage_key, unit.per, *_rate_at(price, prompt)) for unit, price in resolved)
        for prompt in (0, *(start + 1 for start in tiers))  # a prompt size within each level
    )
    info = schedule.info
    rates_from = f"genai-prices {genai_version()} {data_label()}: {schedule.provider.id}/{info.id}"
    about = {
        "provider": schedule.slug,
        "model": schedule.model,
        "rates_from": rates_from,
        "model_id": info.id,
        "pricing_id": schedule.pricing_id,
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


def _rate_at(price: Rate, prompt_tokens: int) -> tuple[Decimal, str | None]:
    """The rate that applies at a prompt size (genai_prices' cliff tiers), and its tier."""
    return price.rate_for(prompt_tokens) if isinstance(price, Tiered) else (price, None)


def known_model(provider_id: str, model: str) -> bool:
    """Whether genai-prices' data has a price for the model under any name it is tried by."""
    table = current_table()
    return any(table.find_model(provider_id, ref.lower()) for ref in model_refs(provider_id, model))


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
        rate_per=rate / per if str(per).rstrip("0") == "1" else None,
    )


def _billed(
    slug: str,
    provider_id: str | None,
    model: str,
    context: tuple[tuple[str, str], ...],
    usage: Usage,
    at: datetime,
) -> tuple[Tariff, list[tuple[_Line, int, Decimal]]] | None:
    """The tariff in force and each non-empty bucket (its line, units and cost in USD), in
    genai-prices' order; None when the reference path must price it (see the section comment)."""
    schedule = _schedule(slug, provider_id, model, context)
    if schedule is None:
        return None
    values = usage_values(usage)
    for value in values.values():  # a loop, not all() over a generator: once per record
        if type(value) is not int or value <= 0:
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
        (line, count, _cost(line, count))
        for line in tariff.lines[level]
        if (count := counts.get(line.key))
    ]


def _cost(line: _Line, count: int) -> Decimal:
    """Bucket.cost's `units * rate / per`: as `count * (rate / per)` when rate / per is exact,
    one division less. The same number, so the same text once `decimal_text` has dropped the
    trailing zeros (the product's exponent differs) and the same nano-USD; rounded past 28
    digits, the same digits too: dividing by a power of ten only moves the exponent."""
    if line.rate_per is None:
        return Decimal(count) * line.rate / line.per
    return count * line.rate_per


def fast_price(
    slug: str,
    provider_id: str | None,
    model: str,
    context: tuple[tuple[str, str], ...],
    usage: Usage,
    at: datetime,
    at_text: str,
) -> Price | None:
    """A `computed` Price through the tariff, its detail byte for byte `Quote.to_json()`'s."""
    found = _billed(slug, provider_id, model, context, usage, at)
    if found is None:
        return None
    tariff, billed = found
    total = Decimal(0)
    for _, _, cost in billed:  # in bucket order, as Quote.total
        total += cost
    buckets = ", ".join(
        [
            f"{line.json_units}{count}{line.json_cost}{decimal_text(cost)}{line.json_end}"
            for line, count, cost in billed
        ]
    )
    listed = f', "buckets": [{buckets}]' if buckets else ""
    detail = (
        f'{{"v": {DETAIL_VERSION}, "source": "{COMPUTED}", "at": "{at_text}"{tariff.json_about}'
        f'{listed}, "total_usd": "{decimal_text(total)}"}}'
    )
    return Price(to_nanousd(total), COMPUTED, detail)


def fast_quote(base: Quote, usage: Usage, at: datetime) -> Quote | None:
    """The `computed` Quote through the tariff, for the paths that build on one (a discount,
    the list price beside a reported cost); None when the reference path must price it."""
    assert base.model is not None
    found = _billed(base.provider, base.pricing_id, base.model, base.context, usage, at)
    if found is None:
        return None
    tariff, billed = found
    return revised(
        base,
        source=COMPUTED,
        rates_from=tariff.rates_from,
        model_id=tariff.model_id,
        buckets=tuple(
            Bucket(line.key, Decimal(count), line.rate, line.per, line.tier)
            for line, count, _ in billed
        ),
    )
