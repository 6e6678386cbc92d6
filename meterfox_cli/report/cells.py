"""Numbers for people, as tables, tails and charts show them: counts, durations, shares and
shares, rounded to what a person reads at a glance (dollars: `meterfox_cli.money`)."""

from __future__ import annotations


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


def elapsed(seconds: float) -> str:
    """A span people read at a glance: `40 s`, `12 min`, `5 h`, `3 days`."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    for size, unit in ((3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"


def percent(share: float) -> str:
    value = share * 100
    if value not in (0, 100) and (value > 99.9 or value < 0.1):
        return f"{value:.2f}%"
    return f"{value:.1f}%".replace(".0%", "%")
