"""The cost of a recorded request. Runs in the record writer, never on the proxy's hot path."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from meterfox_cli.records import UsageRecord

NANO = Decimal("1e-9")


@dataclass(frozen=True, slots=True)
class Price:
    """A record's cost in nano-USD (None when unknown), where it came from, and how."""

    cost_nanousd: int | None
    source: str  # provider | computed | override | unpriced | no_usage
    detail: str | None = None


UNPRICED = Price(None, "unpriced")
NO_USAGE = Price(None, "no_usage")  # the response carried no usage (an error, a cut stream)


def to_nanousd(usd: Decimal) -> int:
    return int((usd / NANO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def price_record(record: UsageRecord) -> Price:
    """The provider's own reported cost where it gives one; otherwise unpriced."""
    if record.reading.usage is None:
        return NO_USAGE
    reported = record.reading.reported_cost_usd
    if reported is not None:
        return Price(to_nanousd(reported), "provider", f"reported by {record.provider}")
    return UNPRICED
