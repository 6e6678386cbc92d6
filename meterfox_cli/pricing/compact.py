"""genai-prices' price data as plain data, and the lookups the tariff fast path makes over it
(provider ids, model names, the prices in force, which missing usage counts as 0), without
importing genai-prices or pydantic (about 13 MB and 0.2 s at start-up).

The data ships beside this module as `genai_table.json`, built from the pinned genai-prices by
`python -m meterfox_cli.pricing.compact`; it is used only when the installed genai-prices is the
version it was built from and no `[pricing] prices_file` replaced the bundled data. Otherwise the
same table is built in memory from genai-prices' own snapshot, so there is one code path either
way. tests/pricing/test_compact.py checks the shipped file against the installed genai-prices and
every lookup against genai-prices' own answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import cache, lru_cache, partial
from pathlib import Path
from typing import Any

from meterfox_cli.pricing.price_data import (
    bundled_data_in_use,
    cleared_when_data_changes,
    genai_version,
)

TABLE_FILE = Path(__file__).with_name("genai_table.json")
FORMAT = 1  # bump when the file's shape changes

# --- The shapes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unit:
    """A genai-prices unit: what a usage key counts, priced under `price_key` per `per`."""

    usage_key: str
    price_key: str
    per: int
    dimensions: Mapping[str, str]

    def within(self, other: Unit) -> bool:
        """genai-prices' `is_descendant_or_self(self, other)`: `other` is a part of `self`."""
        return self.dimensions.items() <= other.dimensions.items()

    def compatible(self, other: Unit) -> bool:
        return all(other.dimensions.get(k, v) == v for k, v in self.dimensions.items())


@dataclass(frozen=True, slots=True)
class Tiered:
    """genai-prices' TieredPrices: `base` until the prompt passes a tier's start (a cliff)."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...]  # (start, rate), ascending

    def rate_for(self, prompt_tokens: int) -> tuple[Decimal, str | None]:
        for start, rate in reversed(self.tiers):
            if prompt_tokens > start:
                return rate, f"prompt > {start:,} tokens"
        return self.base, None


Rate = Decimal | Tiered
PriceMap = tuple[tuple[str, Rate | None], ...]  # a ModelPrice's attributes, in its order


@dataclass(frozen=True, slots=True)
class FromDate:
    """StartDateConstraint: from a UTC date on."""

    start: date

    def active(self, at: datetime) -> bool:
        return at.astimezone(UTC).date() >= self.start


@dataclass(frozen=True, slots=True)
class Daily:
    """TimeOfDateConstraint: a daily window in UTC (crossing midnight when end < start)."""

    start: time
    end: time

    def active(self, at: datetime) -> bool:
        now = at.astimezone(UTC).time()
        if self.end < self.start:
            return now >= self.start or now < self.end
        return self.start <= now < self.end


Constraint = FromDate | Daily


@dataclass(frozen=True, slots=True)
class Conditional:
    constraint: Constraint | None
    prices: PriceMap


@dataclass(frozen=True, slots=True)
class Variant:
    when: Mapping[str, str]
    constraint: Constraint | None
    prices: PriceMap


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    match: tuple  # a clause: (op, text) or ("or" | "and", (clause, ...))
    plain: PriceMap | None  # a single ModelPrice, or
    conditional: tuple[Conditional, ...]  # ConditionalPrices, the last active one wins
    price_variants: tuple[Variant, ...]

    def get_prices(self, at: datetime, context: Mapping[str, str] | None) -> dict[str, Rate | None]:
        """ModelInfo.get_prices: the standard prices in force, then each matching active
        variant's prices over them (the first variant setting a key wins)."""
        if self.plain is not None:
            standard = self.plain
        else:
            standard = self.conditional[0].prices
            for conditional in reversed(self.conditional):
                if conditional.constraint is None or conditional.constraint.active(at):
                    standard = conditional.prices
                    break
        resolved = dict(standard)
        if not context:
            return resolved
        overrides: dict[str, Rate] = {}
        for variant in self.price_variants:
            if variant.constraint is not None and not variant.constraint.active(at):
                continue
            if not all(context.get(key) == value for key, value in variant.when.items()):
                continue
            for key, price in variant.prices:
                if price is not None:
                    overrides.setdefault(key, price)
        resolved.update(overrides)
        return resolved


class Provider:
    """A provider: its id and match clauses, and its models, read from their line of the table
    on first use (most providers' models are never needed in a process)."""

    __slots__ = ("_models", "_read", "fallbacks", "id", "model_match", "provider_match")

    def __init__(
        self,
        id: str,
        provider_match: tuple | None,
        model_match: tuple | None,
        fallbacks: tuple[str, ...],
        read_models: Callable[[], str | bytes],
    ) -> None:
        self.id = id
        self.provider_match = provider_match
        self.model_match = model_match
        self.fallbacks = fallbacks
        self._read = read_models
        self._models: tuple[Model, ...] | None = None

    @property
    def models(self) -> tuple[Model, ...]:
        models = self._models
        if models is None:  # two threads may both parse it: the same result, one kept
            models = self._models = tuple(_model(raw) for raw in json.loads(self._read()))
        return models


# --- The table and its lookups ----------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # hashed by identity: the lookups below are cached per table
class Table:
    """genai-prices' providers, models and units, and DataSnapshot's lookups over them."""

    version: str  # the genai-prices version the data comes from
    units: Mapping[str, Unit]  # by usage key, in the registry's order
    providers: tuple[Provider, ...]

    def __post_init__(self) -> None:
        by_price = {unit.price_key: unit for unit in self.units.values()}
        object.__setattr__(self, "_by_price_key", by_price)
        object.__setattr__(self, "_by_id", {p.id: p for p in reversed(self.providers)})

    def find_provider(self, provider_id: str) -> Provider | None:
        """find_provider_by_id: the provider of that id, else the first whose match takes it."""
        wanted = provider_id.lower().strip()
        found = self._by_id.get(wanted)  # type: ignore[attr-defined]
        if found is not None:
            return found
        for provider in self.providers:
            if provider.provider_match is not None and matches(provider.provider_match, wanted):
                return provider
        return None

    def find_model(self, provider_id: str, model_ref: str) -> tuple[Provider, Model] | None:
        """DataSnapshot.find_provider_model(model_ref, None, provider_id, None), None for its
        LookupError."""
        ref = model_ref.lower()
        if provider_id.lower() == "litellm" and "/" in ref:
            actual, rest = ref.split("/", 1)
            if actual and self.find_provider(actual) is not None:
                provider_id, ref = actual, rest
        provider = self.find_provider(provider_id)
        if provider is None and provider_id.lower() == "litellm":
            provider = next(
                (p for p in self.providers if p.model_match and matches(p.model_match, ref)), None
            )
        if provider is None:
            return None
        model = self._match(provider, ref, fallback=True)
        if model is None:
            normalized = _normalize_compact_dated_ref(ref)
            if normalized != ref:
                model = self._match(provider, normalized, fallback=True)
        return None if model is None else (provider, model)

    def _match(self, provider: Provider, ref: str, *, fallback: bool) -> Model | None:
        for model in provider.models:
            if matches(model.match, ref):
                return model
        if fallback:
            for other_id in provider.fallbacks:
                other = self._by_id.get(other_id)  # type: ignore[attr-defined]
                if other is not None and (model := self._match(other, ref, fallback=False)):
                    return model
        return None

    def resolved(self, prices: Mapping[str, Rate | None]) -> tuple[tuple[Unit, Rate], ...]:
        """_collect_resolved_model_prices: each priced unit and its validated rate, in the
        prices' order (keys no unit prices are left out, as genai-prices does after a warning)."""
        by_price: dict[str, Unit] = self._by_price_key  # type: ignore[attr-defined]
        return tuple(
            (by_price[key], _validated(key, value))
            for key, value in prices.items()
            if value is not None and key in by_price
        )

    def zero_keys(self, missing: frozenset[str], present: frozenset[str]) -> tuple[str, ...]:
        """The keys of `missing` genai-prices' Usage infers as 0 when only `present` are
        reported (as non-zero); the others it refuses (genai.zero_keys, without genai-prices)."""
        return _zero_keys(self, missing, present)


@lru_cache(maxsize=1024)
def _zero_keys(table: Table, missing: frozenset[str], present: frozenset[str]) -> tuple[str, ...]:
    reported = [table.units[key] for key in present if key in table.units and key != "requests"]
    return tuple(
        key
        for key in sorted(missing - {"requests"})
        if key in table.units and _infers_zero(table.units[key], reported)
    )


def _infers_zero(wanted: Unit, reported: list[Unit]) -> bool:
    """Usage._infer_missing_value: 0 unless a part of `wanted`, or two units joining into it,
    were reported (then genai-prices refuses to guess)."""
    if any(unit is not wanted and wanted.within(unit) for unit in reported):
        return False
    ordered = sorted(reported, key=lambda unit: unit.usage_key)
    for index, left in enumerate(ordered):
        for right in ordered[index + 1 :]:
            if not left.compatible(right) or left.within(right) or right.within(left):
                continue
            if dict(wanted.dimensions) == {**left.dimensions, **right.dimensions}:
                return False
    return True


def _validated(key: str, value: Rate) -> Rate:
    """_validate_model_price_value: a finite non-negative rate, tiers ascending from 0 on."""
    if isinstance(value, Decimal) and _valid_rate(value):
        return value
    if isinstance(value, Tiered) and _valid_rate(value.base):
        previous = -1
        for start, rate in value.tiers:
            if type(start) is not int or start < 0 or start < previous or not _valid_rate(rate):
                break
            previous = start
        else:
            return value
    raise ValueError(
        f"Invalid price value for {key}: expected a finite non-negative Decimal or valid "
        "tiered prices"
    )


def _valid_rate(value: Decimal) -> bool:
    return value.is_finite() and value >= 0


def matches(clause: tuple, text: str) -> bool:
    """A genai-prices match clause against a (lower-case) name; texts are stored lower-cased,
    as each clause lower-cases both sides, except a regex, which searches the name as given."""
    op, arg = clause
    if op == "eq":
        return text == arg
    if op == "sw":
        return text.startswith(arg)
    if op == "ew":
        return text.endswith(arg)
    if op == "in":
        return arg in text
    if op == "re":
        return re.search(arg, text) is not None
    if op == "or":
        return any(matches(sub, text) for sub in arg)
    return all(matches(sub, text) for sub in arg)  # "and"


_COMPACT_DATE = re.compile(r"(-)(20\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=-|:|$)")


def _normalize_compact_dated_ref(model_ref: str) -> str:
    """genai-prices' retry for LiteLLM/OpenRouter names: `-20251211` as `-2025-12-11`."""

    def dashed(found: re.Match[str]) -> str:
        year, month, day = (int(found.group(i)) for i in range(2, 5))
        try:
            date(year, month, day)
        except ValueError:
            return found.group(0)
        return f"{found.group(1)}{year:04d}-{month:02d}-{day:02d}"

    return _COMPACT_DATE.sub(dashed, model_ref)


# --- Which table -----------------------------------------------------------------------------


@cleared_when_data_changes
@cache
def current_table() -> Table:
    """The shipped table when it was built from the installed genai-prices and its bundled data
    is in use; else the same table built now from genai-prices' snapshot (importing it)."""
    if bundled_data_in_use():
        shipped = _shipped()
        if shipped is not None:
            return shipped
    header, lines = build_lines()
    return table_from_lines(header, [partial(str, line) for line in lines])


def _shipped() -> Table | None:
    """The shipped table, if built from the installed genai-prices. Only the header line is
    kept in memory; each provider's line is read from the file when its models are needed."""
    try:
        data = TABLE_FILE.read_bytes()
        stamp = _stamp()
    except OSError:
        return None
    end = data.index(b"\n")
    header = json.loads(data[:end])
    if header.get("format") != FORMAT or header.get("genai_prices") != genai_version():
        return None
    readers = []
    while end + 1 < len(data):
        start, end = end + 1, data.index(b"\n", end + 1)
        readers.append(partial(_read_line, start, end - start, stamp))
    return table_from_lines(header, readers)


def _stamp() -> tuple[int, int]:
    status = TABLE_FILE.stat()
    return status.st_size, status.st_mtime_ns


def _read_line(offset: int, length: int, stamp: tuple[int, int]) -> bytes:
    """One provider's line of the shipped file, as it was when the table was loaded."""
    if _stamp() != stamp:
        raise RuntimeError(f"{TABLE_FILE} changed since serve started (an upgrade?): restart it")
    with TABLE_FILE.open("rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def table_from_lines(
    header: Mapping[str, Any], model_lines: Sequence[Callable[[], str | bytes]]
) -> Table:
    """A Table from the file's shape: a header line (version, units, providers without their
    models), then one line per provider with its models, in the header's order (each given as
    the function that reads it)."""
    units = {
        key: Unit(key, price_key, per, dict(dimensions))
        for key, price_key, per, dimensions in header["units"]
    }
    providers = tuple(
        Provider(
            raw["id"],
            _clause(raw.get("provider_match")),
            _clause(raw.get("model_match")),
            tuple(raw.get("fallbacks") or ()),
            line,
        )
        for raw, line in zip(header["providers"], model_lines, strict=True)
    )
    return Table(header["genai_prices"], units, providers)


def _model(raw: Mapping[str, Any]) -> Model:
    plain = raw.get("prices")
    return Model(
        raw["id"],
        _clause(raw["match"]),
        None if plain is None else _prices(plain),
        tuple(Conditional(_constraint(c), _prices(p)) for c, p in raw.get("conditional") or ()),
        tuple(
            Variant(dict(when), _constraint(c), _prices(p))
            for when, c, p in raw.get("variants") or ()
        ),
    )


def _clause(raw: Any) -> tuple | None:
    if raw is None:
        return None
    op, arg = raw
    if op in ("or", "and"):
        return op, tuple(_clause(sub) for sub in arg)
    return op, arg


def _prices(raw: Mapping[str, Any]) -> PriceMap:
    return tuple((key, _rate(value)) for key, value in raw.items())


def _rate(raw: Any) -> Rate | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return Decimal(raw)
    base, tiers = raw
    return Tiered(Decimal(base), tuple((start, Decimal(rate)) for start, rate in tiers))


def _constraint(raw: Any) -> Constraint | None:
    if raw is None:
        return None
    if raw[0] == "date":
        return FromDate(date.fromisoformat(raw[1]))
    return Daily(time.fromisoformat(raw[1]), time.fromisoformat(raw[2]))


# --- Building it from genai-prices ------------------------------------------------------------


def build_lines() -> tuple[dict[str, Any], list[str]]:
    """genai-prices' current snapshot and unit registry in the table's shape: the header, and
    each provider's models as one line of JSON."""
    from genai_prices.data_snapshot import get_snapshot
    from genai_prices.units import _get_registry

    providers = get_snapshot().providers
    header = {
        "format": FORMAT,
        "genai_prices": genai_version(),
        "units": [
            [unit.usage_key, unit.price_key, unit.per, dict(unit.dimensions)]
            for unit in _get_registry().units.values()
        ],
        "providers": [_provider_data(p) for p in providers],
    }
    lines = [_json([_model_data(m) for m in p.models]) for p in providers]
    return header, lines


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def _provider_data(provider: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": provider.id}
    if provider.provider_match is not None:
        data["provider_match"] = _clause_data(provider.provider_match)
    if provider.model_match is not None:
        data["model_match"] = _clause_data(provider.model_match)
    if provider.fallback_model_providers:
        data["fallbacks"] = list(provider.fallback_model_providers)
    return data


def _model_data(info: Any) -> dict[str, Any]:
    from genai_prices.types import ModelPrice

    data: dict[str, Any] = {"id": info.id, "match": _clause_data(info.match)}
    if isinstance(info.prices, ModelPrice):
        data["prices"] = _prices_data(info.prices)
    else:
        data["conditional"] = [
            [_constraint_data(c.constraint), _prices_data(c.prices)] for c in info.prices
        ]
    if info.price_variants:
        data["variants"] = [
            [dict(v.when), _constraint_data(v.constraint), _prices_data(v.prices)]
            for v in info.price_variants
        ]
    return data


def _clause_data(clause: Any) -> list[Any]:
    from genai_prices import types

    simple = (
        (types.ClauseEquals, "eq", "equals"),
        (types.ClauseStartsWith, "sw", "starts_with"),
        (types.ClauseEndsWith, "ew", "ends_with"),
        (types.ClauseContains, "in", "contains"),
    )
    for kind, op, field in simple:
        if isinstance(clause, kind):
            return [op, getattr(clause, field).lower()]
    if isinstance(clause, types.ClauseRegex):
        return ["re", clause.regex]
    if isinstance(clause, types.ClauseOr):
        return ["or", [_clause_data(sub) for sub in clause.or_]]
    if isinstance(clause, types.ClauseAnd):
        return ["and", [_clause_data(sub) for sub in clause.and_]]
    raise TypeError(f"unknown genai-prices match clause {clause!r}")


def _prices_data(model_price: Any) -> dict[str, Any]:
    """A ModelPrice's attributes in its own order (which decides the buckets' order)."""
    return {
        key: _rate_data(value)
        for key, value in model_price.__dict__.items()
        if not key.startswith("_")
    }


def _rate_data(value: Any) -> Any:
    from genai_prices.types import TieredPrices

    if value is None:
        return None
    if isinstance(value, TieredPrices):
        return [str(value.base), [[tier.start, str(tier.price)] for tier in value.tiers]]
    return str(value)


def _constraint_data(constraint: Any) -> list[str] | None:
    from genai_prices.types import StartDateConstraint, TimeOfDateConstraint, _utc_timetz

    if constraint is None:
        return None
    if isinstance(constraint, StartDateConstraint):
        return ["date", constraint.start_date.isoformat()]
    if isinstance(constraint, TimeOfDateConstraint):
        start, end = (
            _utc_timetz(t).replace(tzinfo=None)
            for t in (constraint.start_time, constraint.end_time)
        )
        return ["time", start.isoformat(), end.isoformat()]
    raise TypeError(f"unknown genai-prices constraint {constraint!r}")


def table_text() -> str:
    """The file's text for the installed genai-prices' current data."""
    header, lines = build_lines()
    return "\n".join([_json(header), *lines]) + "\n"


def write_table(path: Path = TABLE_FILE) -> None:
    """Write the table for the installed genai-prices' bundled data."""
    path.write_text(table_text(), encoding="utf-8")


if __name__ == "__main__":
    write_table()
    print(f"{TABLE_FILE}: genai-prices {genai_version()}")
