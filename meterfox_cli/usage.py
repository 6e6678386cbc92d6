"""The one normalised usage shape every provider adapter maps into.

Semantics (see docs/providers.md):
- ``input_tokens``: every prompt token billed as input, cache reads and cache writes included.
- ``cached_tokens``: the part of input read from a prompt cache.
- ``cache_write_tokens``: the part of input written to a prompt cache (all TTLs);
  ``cache_write_1h_tokens`` is the part of that written with a one-hour TTL.
- ``output_tokens``: every billed output token, reasoning included.
- ``reasoning_tokens``: the part of output that was reasoning / thinking.
- ``units``: provider-specific billable units (audio / image tokens, web searches, seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from meterfox_cli.frozen import quick_init


@quick_init
@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    units: tuple[tuple[str, float], ...] = ()

    def unit(self, name: str) -> float:
        return dict(self.units).get(name, 0)


@quick_init
@dataclass(frozen=True, slots=True)
class Reading:
    """What an adapter read from one response: the usage, and the facts needed to price it.

    ``usage`` is None when the response carried no usage (an error, an interrupted stream).
    ``reported_cost_usd`` is the provider's own figure where it reports one (OpenRouter,
    Perplexity, xAI); it wins over a computed cost.
    ``dedupe_key`` names a billable unit that may be seen more than once (a Replicate
    prediction polled twice); the store keeps usage for it only once.
    """

    model: str | None = None
    usage: Usage | None = None
    reported_cost_usd: Decimal | None = None
    price_context: tuple[tuple[str, str], ...] = field(default=())
    dedupe_key: str | None = None


# No real count comes near this (2**53: exact in a float and in JavaScript); a larger one is a
# hostile or broken upstream. Clamping keeps every sum of counts inside SQLite's 64-bit integers.
MAX_COUNT = 2**53


def as_int(value: object) -> int:
    """A token count from untrusted JSON: ints (and integral floats) only, anything else is 0;
    clamped to 0..MAX_COUNT."""
    if type(value) is int and 0 <= value <= MAX_COUNT:  # the common cases first
        return value
    if value is None:
        return 0
    if isinstance(value, bool):
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return min(max(value, 0), MAX_COUNT)
    return 0
