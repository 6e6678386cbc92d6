"""A price and the arithmetic behind it: Price (what a record stores), Bucket and Quote (how the
cost was reached, as the `price_detail` JSON) and the cost sources. Amounts are Decimal
throughout and stored as integer nano-USD (`meterfox_cli.money`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from meterfox_cli.frozen import quick_init
from meterfox_cli.money import decimal_text, to_nanousd

MTOK = 1_000_000
DETAIL_VERSION = 1

PROVIDER = "provider"
COMPUTED = "computed"
OVERRIDE = "override"
UNPRICED_SOURCE = "unpriced"


@quick_init
@dataclass(frozen=True, slots=True)
class Price:
    """A record's cost in nano-USD (None when unknown), where it came from, and how."""

    cost_nanousd: int | None
    source: str  # provider | computed | override | unpriced | no_usage
    detail: str | None = None


UNPRICED = Price(None, UNPRICED_SOURCE)
NO_USAGE = Price(None, "no_usage")  # the response carried no usage (an error, a cut stream)


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


def _decimal_or_none(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def revised(quote: Quote, **changes: Any) -> Quote:
    """dataclasses.replace without its per-call field checks (several µs, on every priced
    record that is not a plain computed cost)."""
    values = {name: getattr(quote, name) for name in _QUOTE_FIELDS}
    values.update(changes)
    return Quote(**values)


def usage_decimal(value: float) -> Decimal:
    """A usage amount as an exact Decimal (a whole float as an integer)."""
    return Decimal(int(value)) if float(value).is_integer() else Decimal(repr(value))


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
    "cache_storage_token_hours": "cache storage",  # per 1M tokens per hour kept
}


def bucket_label(key: str) -> str:
    """A usage key as people read it (`cache_read_tokens` → "cache read")."""
    return _KEY_LABELS.get(key) or key.removesuffix("_tokens").replace("_", " ")


def quote_time(started_at: float, at: datetime) -> str:
    """A Quote's `at`: `at` (UTC, from `started_at`) as ISO 8601 with a Z, as
    `at.isoformat().replace("+00:00", "Z")` writes it. isoformat is about 11k instructions a
    record in the writer; the text of the whole second is kept from one record to the next
    (they come in time order) and only the microseconds are written."""
    global _second
    micro = at.microsecond
    if not micro or started_at < 0:  # a whole second (or one carried to): isoformat decides
        return at.isoformat().replace("+00:00", "Z")
    whole = int(started_at)  # the second `at` is in: fromtimestamp carried nothing over
    second = _second
    if second[0] != whole:
        second = (whole, at.replace(microsecond=0, tzinfo=None).isoformat())
        _second = second  # one assignment: a thread reading it sees the old pair or the new one
    return f"{second[1]}.{str(1_000_000 + micro)[1:]}Z"


_second: tuple[int, str] = (-1, "")  # (unix second, its text): one record's to the next
