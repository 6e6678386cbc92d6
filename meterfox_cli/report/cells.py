"""Numbers for people, as tables, tails and charts show them: counts, durations, shares and
dollars, rounded to what a person reads at a glance (machine formats keep exact values)."""

from __future__ import annotations

from decimal import Decimal


def money(cost: Decimal) -> str:
    """Dollars for people: cents from $1 up; below that up to four places (six below a
    cent), without trailing zeros past the cents (or past four places below a cent)."""
    if cost == 0:
        return "$0.00"
    size = abs(cost)
    if size < Decimal("0.000001"):
        return "<$0.000001"
    if size >= 1:
        return f"${cost:,.2f}"
    places, keep = (4, 2) if size >= Decimal("0.01") else (6, 4)
    whole, _, fraction = f"{cost:.{places}f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(keep, '0')}"


def count(value: int) -> str:
    """Exact below 10,000, then 12.3k / 4.56M / 7.89B."""
    if abs(value) < 10_000:
        return f"{value:,}"
    for limit, suffix in ((1e6, "k"), (1e9, "M"), (1e12, "B")):
        if abs(value) < limit:
            scaled = value / (limit / 1000)
            return f"{scaled:.3g}{suffix}" if scaled < 100 else f"{scaled:.0f}{suffix}"
    return f"{value / 1e12:.0f}T"


def duration(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s" if ms < 10_000 else f"{ms / 1000:.1f} s"


def percent(share: float) -> str:
    value = share * 100
    if value not in (0, 100) and (value > 99.9 or value < 0.1):
        return f"{value:.2f}%"
    return f"{value:.1f}%".replace(".0%", "%")
