"""`meterfox reconcile`'s core, a pure function: what the proxy recorded and what the provider
billed, grouped by UTC day × provider × model (or fewer), each group given a status.

- `match`: tokens and cost agree within the tolerance;
- `bypassed`: billed exceeds proxied — traffic that did not go through the proxy;
- `proxy_only`: proxied but not (all) billed — another organisation's key, or a bucket the
  provider has not published yet (the note says which, by the bucket's age);
- `price_mismatch`: tokens agree, cost does not — our price is wrong (the note names both
  effective rates).

A billed cost we computed from our own prices is not the provider's word: such a group's
`billed_cost` is None and tokens decide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from meterfox_cli.money import from_nanousd, human_usd
from meterfox_cli.store.billed import ACTIVITY, COST_API, BilledBucket, ProxiedSum

DIMENSIONS = ("day", "provider", "model")
STATUSES = ("match", "bypassed", "proxy_only", "price_mismatch")
DEFAULT_TOLERANCE = Decimal("0.02")
# A day younger than this (from its end) may not be published or final yet.
PUBLISH_LAG_S = 48 * 3600
_DAY = 86400
_EPOCH = date(1970, 1, 1).toordinal()

Canonical = Callable[[str, str], str]  # (provider, model) → the one name of that model


@dataclass(frozen=True, slots=True)
class Row:
    day: str | None
    provider: str | None
    model: str | None
    proxied_requests: int
    proxied_input_tokens: int
    proxied_output_tokens: int
    proxied_cost_nanousd: int
    billed_requests: int | None
    billed_input_tokens: int
    billed_output_tokens: int
    billed_cost_nanousd: int | None
    coverage: Decimal | None
    status: str | None  # None on the totals line
    note: str = ""
    stake_nanousd: int = 0  # the money in question: what sorts a terminal's rows


@dataclass
class _Side:
    requests: int | None = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: int | None = None
    computed_cost: int = 0
    last_day: str = ""

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class _Group:
    proxied: _Side | None = None
    billed: _Side | None = None
    days: set[str] = field(default_factory=set)


def reconcile(
    proxied: Iterable[ProxiedSum],
    billed: Iterable[BilledBucket],
    *,
    by: tuple[str, ...] = DIMENSIONS,
    tolerance: Decimal = DEFAULT_TOLERANCE,
    now: float,
    canonical: Canonical = lambda provider, model: model,
) -> list[Row]:
    """One row per group of `by` (any of day, provider, model), in key order."""
    unknown = set(by) - set(DIMENSIONS)
    if unknown or not by:
        raise ValueError(f"reconcile --by takes day, provider, model (not {sorted(unknown)})")
    groups: dict[tuple[str, ...], _Group] = {}
    for p in proxied:
        key = _key(by, p.day, p.provider, canonical(p.provider, p.model))
        group = groups.setdefault(key, _Group())
        side = group.proxied = group.proxied or _Side(cost=0)
        side.requests = (side.requests or 0) + p.requests
        side.input_tokens += p.input_tokens
        side.output_tokens += p.output_tokens
        side.cost = (side.cost or 0) + p.cost_nanousd
        side.last_day = max(side.last_day, p.day)
    for b in billed:
        day = _utc_day(b.bucket_start)
        key = _key(by, day, b.provider, canonical(b.provider, b.model))
        group = groups.setdefault(key, _Group())
        side = group.billed = group.billed or _Side()
        if b.requests is None:
            side.requests = None  # one bucket without a count (Anthropic): the sum is unknown
        elif side.requests is not None:
            side.requests += b.requests
        side.input_tokens += b.input_tokens
        side.output_tokens += b.output_tokens
        if b.cost_source in (COST_API, ACTIVITY) and b.cost_nanousd is not None:
            side.cost = (side.cost or 0) + b.cost_nanousd
        else:
            side.computed_cost += b.cost_nanousd or 0
        side.last_day = max(side.last_day, day)
    return [_row(by, key, group, tolerance, now) for key, group in sorted(groups.items())]


def totals(rows: list[Row]) -> Row:
    """The sums of every row (requests stay None if any billed row has none)."""
    billed_costs = [r.billed_cost_nanousd for r in rows if r.billed_cost_nanousd is not None]
    billed_requests = [r.billed_requests for r in rows]
    proxied_cost = sum(r.proxied_cost_nanousd for r in rows)
    billed_cost = sum(billed_costs) if billed_costs else None
    return Row(
        day=None,
        provider=None,
        model=None,
        proxied_requests=sum(r.proxied_requests for r in rows),
        proxied_input_tokens=sum(r.proxied_input_tokens for r in rows),
        proxied_output_tokens=sum(r.proxied_output_tokens for r in rows),
        proxied_cost_nanousd=proxied_cost,
        billed_requests=None
        if any(n is None for n in billed_requests)
        else sum(n or 0 for n in billed_requests),
        billed_input_tokens=sum(r.billed_input_tokens for r in rows),
        billed_output_tokens=sum(r.billed_output_tokens for r in rows),
        billed_cost_nanousd=billed_cost,
        coverage=_ratio(proxied_cost, billed_cost) if billed_cost else None,
        status=None,
        stake_nanousd=sum(r.stake_nanousd for r in rows),
    )


def by_stake(rows: list[Row]) -> list[Row]:
    """Most money in question first (a terminal's order); ties in key order."""
    return sorted(rows, key=lambda r: -r.stake_nanousd)


def _key(by: tuple[str, ...], day: str, provider: str, model: str) -> tuple[str, ...]:
    values = {"day": day, "provider": provider, "model": model}
    return tuple(values[d] for d in DIMENSIONS if d in by)


def _row(
    by: tuple[str, ...], key: tuple[str, ...], group: _Group, tolerance: Decimal, now: float
) -> Row:
    names = [d for d in DIMENSIONS if d in by]
    values = dict(zip(names, key, strict=True))
    p = group.proxied or _Side(cost=0)
    b = group.billed
    status, note = _status(values, group, tolerance, now)
    billed_money = b.cost if b and b.cost is not None else (b.computed_cost if b else 0)
    coverage = None
    if b is not None and b.cost:
        coverage = _ratio(p.cost or 0, b.cost)
    elif b is not None and b.tokens:
        coverage = _ratio(p.tokens, b.tokens)
    return Row(
        day=values.get("day"),
        provider=values.get("provider"),
        model=values.get("model"),
        proxied_requests=p.requests or 0,
        proxied_input_tokens=p.input_tokens,
        proxied_output_tokens=p.output_tokens,
        proxied_cost_nanousd=p.cost or 0,
        billed_requests=None if b is None else b.requests,
        billed_input_tokens=0 if b is None else b.input_tokens,
        billed_output_tokens=0 if b is None else b.output_tokens,
        billed_cost_nanousd=None if b is None else b.cost,
        coverage=coverage,
        status=status,
        note=note,
        stake_nanousd=abs(billed_money - (p.cost or 0)),
    )


def _status(
    values: dict[str, str], group: _Group, tolerance: Decimal, now: float
) -> tuple[str, str]:
    p, b = group.proxied, group.billed
    if b is None:
        assert p is not None
        return "proxy_only", _unbilled_note(p.last_day, now)
    if p is None:
        return "bypassed", "billed, and nothing of it went through the proxy"
    tokens_agree = _close(p.input_tokens, b.input_tokens, tolerance) and _close(
        p.output_tokens, b.output_tokens, tolerance
    )
    cost_agrees = b.cost is None or _close(p.cost or 0, b.cost, tolerance)
    if tokens_agree and cost_agrees:
        return "match", ""
    if tokens_agree:
        model = values.get("model", "these models")
        return "price_mismatch", (
            f"{model}: our price {_rate(p.cost or 0, p.tokens)} vs billed {_rate(b.cost or 0, b.tokens)}"
        )
    if b.tokens > p.tokens:
        return "bypassed", f"{b.tokens - p.tokens:,} billed tokens did not go through the proxy"
    return "proxy_only", f"{p.tokens - b.tokens:,} proxied tokens not billed; " + _unbilled_note(
        p.last_day, now
    )


def _unbilled_note(day: str, now: float) -> str:
    """Why a proxied bucket may be missing from the bill, by its age."""
    end = (date.fromisoformat(day).toordinal() - _EPOCH + 1) * _DAY
    age_h = int((now - end) // 3600)
    if end > now:
        return f"{day} is not over yet: the provider may not have published it yet"
    if now - end < PUBLISH_LAG_S:
        return f"{day} ended {age_h} h ago: the provider may not have published it yet"
    return f"{day} ended {age_h // 24} days ago and is not billed: another organisation's key?"


def _close(a: int, b: int, tolerance: Decimal) -> bool:
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


def _ratio(a: int, b: int) -> Decimal:
    return (Decimal(a) / Decimal(b)).quantize(Decimal("0.0001"))


def _rate(cost_nanousd: int, tokens: int) -> str:
    """Effective USD per million tokens (input and output together)."""
    if not tokens:
        return "—"
    per_million = from_nanousd(cost_nanousd) * Decimal(1_000_000) / Decimal(tokens)
    return f"{human_usd(per_million)}/Mtok"


def _utc_day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()
