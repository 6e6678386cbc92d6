"""What an alert rule says, without I/O: a budget's standing (spend, budget, period), which
thresholds it has crossed, the linear projection to the period's end, and the Alert itself with
its one-line message and the figures a webhook's JSON carries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from meterfox_cli.money import decimal_text, from_nanousd, human_usd

SPIKE_RULE = "spike"
TEST_RULE = "test"


@dataclass(frozen=True, slots=True)
class Standing:
    """One budget at one moment: `rule` names it in the state table (`key:alice`, `monthly`,
    `provider:openai`, `tag:team=search`), `subject` in a sentence."""

    rule: str
    subject: str  # e.g. "proxy key 'alice'", "the monthly budget"
    spend_nanousd: int
    budget_nanousd: int
    period: str  # day, week or month
    period_start: float
    period_end: float
    command: str  # the command that shows more

    @property
    def period_label(self) -> str:
        """The period's first local day, as the state table keys it: `2026-11-01`."""
        return datetime.fromtimestamp(self.period_start).date().isoformat()


def crossed(standing: Standing, thresholds: Sequence[int]) -> list[int]:
    """The thresholds (percents of the budget) the spend has reached, lowest first."""
    return [
        t for t in sorted(thresholds) if standing.spend_nanousd * 100 >= t * standing.budget_nanousd
    ]


def projected_nanousd(spend: int, start: float, end: float, now: float) -> int:
    """The spend at the period's end if it goes on at the rate so far (at least an hour in, so
    the first minutes of a month do not project a fortune)."""
    length = end - start
    if length <= 0:
        return spend
    elapsed = min(max(now - start, 3600.0), length)
    return max(spend, round(spend * length / elapsed))


@dataclass(frozen=True, slots=True)
class Alert:
    """One notification: a budget threshold crossed, a spike, or a test."""

    rule: str
    kind: str  # "budget", "spike" or "test"
    subject: str
    threshold: int  # percent of the budget (a spike: the factor × 100)
    spend_nanousd: int
    budget_nanousd: int  # a spike: factor × the trailing daily average
    period: str
    period_label: str
    period_start: float
    period_end: float
    projected_nanousd: int
    command: str
    at: float
    text: str

    def figures(self) -> dict[str, object]:
        """Every figure, for the generic JSON body: exact USD as strings, times in ISO UTC."""
        return {
            "event": self.kind,
            "rule": self.rule,
            "subject": self.subject,
            "threshold_percent": self.threshold,
            "percent": _percent_text(self.spend_nanousd, self.budget_nanousd),
            "spend_usd": decimal_text(from_nanousd(self.spend_nanousd)),
            "budget_usd": decimal_text(from_nanousd(self.budget_nanousd)),
            "projected_usd": decimal_text(from_nanousd(self.projected_nanousd)),
            "period": self.period,
            "period_start": iso_utc(self.period_start),
            "period_end": iso_utc(self.period_end),
            "at": iso_utc(self.at),
            "command": self.command,
            "text": self.text,
        }


def budget_alert(standing: Standing, threshold: int, now: float) -> Alert:
    """The alert for `standing` having crossed `threshold` percent."""
    projected = projected_nanousd(
        standing.spend_nanousd, standing.period_start, standing.period_end, now
    )
    text = (
        f"MeterFox: {standing.subject} crossed {threshold}% of its "
        f"{_usd(standing.budget_nanousd)}/{standing.period} budget: "
        f"{_usd(standing.spend_nanousd)} spent ({_percent_text(standing.spend_nanousd, standing.budget_nanousd)}%) "
        f"since {_local(standing.period_start)}; at this rate "
        f"{_usd(projected)} by {_local(standing.period_end)}. More: {standing.command}"
    )
    return Alert(
        rule=standing.rule,
        kind="budget",
        subject=standing.subject,
        threshold=threshold,
        spend_nanousd=standing.spend_nanousd,
        budget_nanousd=standing.budget_nanousd,
        period=standing.period,
        period_label=standing.period_label,
        period_start=standing.period_start,
        period_end=standing.period_end,
        projected_nanousd=projected,
        command=standing.command,
        at=now,
        text=text,
    )


@dataclass(frozen=True, slots=True)
class DaySpend:
    """Today's spend beside the trailing days' (the spike rule's inputs)."""

    today_nanousd: int
    trailing_nanousd: int  # the whole days before today, summed
    trailing_days: int
    day_start: float
    day_end: float


def spike_alert(days: DaySpend, factor: Decimal, now: float) -> Alert | None:
    """An alert when today's spend is over `factor` times the trailing daily average (never
    when the trailing days spent nothing: there is no average to be over)."""
    if days.trailing_nanousd <= 0:
        return None
    limit = int(Decimal(days.trailing_nanousd) * factor / days.trailing_days)
    if days.today_nanousd <= limit:
        return None
    average = days.trailing_nanousd // days.trailing_days
    projected = projected_nanousd(days.today_nanousd, days.day_start, days.day_end, now)
    times = Decimal(days.today_nanousd) / Decimal(max(average, 1))
    command = "meterfox report --by day,model --since 7d"
    text = (
        f"MeterFox: today's spend {_usd(days.today_nanousd)} is {times:.1f}x the "
        f"{days.trailing_days}-day daily average of {_usd(average)} (alert over "
        f"{decimal_text(factor)}x); at this rate {_usd(projected)} by {_local(days.day_end)}. "
        f"More: {command}"
    )
    return Alert(
        rule=SPIKE_RULE,
        kind="spike",
        subject="today's spend",
        threshold=int(factor * 100),
        spend_nanousd=days.today_nanousd,
        budget_nanousd=limit,
        period="day",
        period_label=datetime.fromtimestamp(days.day_start).date().isoformat(),
        period_start=days.day_start,
        period_end=days.day_end,
        projected_nanousd=projected,
        command=command,
        at=now,
        text=text,
    )


def trial_alert(now: float) -> Alert:
    """What `meterfox alerts test` sends: plainly a test, with figures of the right shape."""
    return Alert(
        rule=TEST_RULE,
        kind="test",
        subject="a test",
        threshold=0,
        spend_nanousd=0,
        budget_nanousd=0,
        period="day",
        period_label=datetime.fromtimestamp(now).date().isoformat(),
        period_start=now,
        period_end=now,
        projected_nanousd=0,
        command="meterfox alerts",
        at=now,
        text="MeterFox: a test alert from `meterfox alerts test`; alerts reach this channel. "
        "More: meterfox alerts",
    )


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _usd(nanousd: int) -> str:
    return human_usd(from_nanousd(nanousd))


def _percent_text(spend: int, budget: int) -> str:
    if budget <= 0:
        return "0"
    return f"{Decimal(spend * 100) / Decimal(budget):.1f}"


def _local(ts: float) -> str:
    return f"{datetime.fromtimestamp(ts):%Y-%m-%d %H:%M}"
