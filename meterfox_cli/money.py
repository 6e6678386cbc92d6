"""Money, in one place: integer nano-USD as stored and summed, exact Decimal USD as computed,
and the two ways an amount is written — exactly (explain, JSON, exports) or for people.

Every conversion between nano-USD and USD, and every dollar sign MeterFox prints, goes
through here, so a stored sum and the figure a person reads cannot drift apart.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import overload

NANO = Decimal("1e-9")  # one nano-USD, the unit costs are stored and summed in
_ONE = Decimal(1)
_SMALLEST_SHOWN = Decimal("0.000001")
_CENT = Decimal("0.01")


def to_nanousd(usd: Decimal) -> int:
    """USD → whole nano-USD, rounded half to even."""
    return int(usd.scaleb(9).quantize(_ONE, ROUND_HALF_EVEN))


@overload
def from_nanousd(nanousd: int) -> Decimal: ...
@overload
def from_nanousd(nanousd: None) -> None: ...
def from_nanousd(nanousd: int | None) -> Decimal | None:
    """Nano-USD → exact USD (None stays None: an unknown cost)."""
    return None if nanousd is None else Decimal(nanousd).scaleb(-9)


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


def exact_usd(amount: Decimal | None) -> str:
    """Every digit, for arithmetic a person checks (`explain`, `reprice`): `$0.0001408`."""
    return "—" if amount is None else f"${decimal_text(amount)}"


def human_usd(amount: Decimal) -> str:
    """Dollars at a glance (tables, tail, charts, budgets): cents from $1 up; below that up to
    four places (six below a cent), without trailing zeros past the cents (or past four
    places below a cent)."""
    if amount == 0:
        return "$0.00"
    size = abs(amount)
    if size < _SMALLEST_SHOWN:
        return "<$0.000001"
    if size >= 1:
        return f"${amount:,.2f}"
    places, keep = (4, 2) if size >= _CENT else (6, 4)
    whole, _, fraction = f"{amount:.{places}f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(keep, '0')}"


def format_usd(nanousd: int) -> str:
    """A stored nano-USD amount for people (see `human_usd`)."""
    return human_usd(from_nanousd(nanousd))
