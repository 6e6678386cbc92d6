"""Daily spend as bars in the terminal, one line per day, stacked by a second dimension."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from meterfox_cli.money import format_usd
from meterfox_cli.report.table import caption
from meterfox_cli.store.dimensions import UNKNOWN_GROUP
from meterfox_cli.store.queries import Report, ReportRow

PALETTE = ("cyan", "magenta", "yellow", "green", "blue", "red", "bright_cyan", "bright_magenta")
GLYPHS = "█▓▒░#=+%@"


def render_chart(report: Report, console, *, first_day: date, last_day: date) -> None:
    """Daily spend bars, one line per day from first_day to last_day, stacked by the
    report's second dimension (the largest series first, the rest as 'other')."""
    from rich.text import Text

    series = _series_order(report)
    plain = console.color_system is None
    style = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    glyph = {name: GLYPHS[i % len(GLYPHS)] for i, name in enumerate(series)}
    per_day: dict[str, dict[str, int]] = {}
    for row in report.rows:
        name = _series_name(row, series)
        day = per_day.setdefault(row.dims[0] or "", {})
        day[name] = day.get(name, 0) + (row.cost_nanousd or 0)
    top = max((sum(d.values()) for d in per_day.values()), default=0)
    labels = {day: format_usd(sum(costs.values())) for day, costs in per_day.items()}
    room = console.width - 16 - len(series) - max(map(len, labels.values()), default=1)
    width = max(room, 10)  # each series may round up by a cell
    title = f"Daily spend by {report.dimensions[1]}, {first_day} → {last_day}"
    console.print(Text(title, style="bold"))
    day = first_day
    while day <= last_day:
        costs = per_day.get(day.isoformat(), {})
        line = Text(f"{day.isoformat()} {day.strftime('%a')} ")
        for name in series:
            cost = costs.get(name, 0)
            cells = max(round(cost / top * width), 1 if cost else 0)
            line.append((glyph[name] if plain else "█") * cells, style=style[name])
        line.append(f" {labels[day.isoformat()]}" if sum(costs.values()) else " —")
        console.print(line, no_wrap=True, overflow="crop")
        day += timedelta(days=1)
    legend = Text("")
    for name in series:
        legend.append(("■ " if not plain else glyph[name] + " "), style=style[name])
        legend.append(f"{name}   ")
    console.print(legend)
    note = caption(report)
    if note:
        console.print(Text(note, style="dim"))


def _series_order(report: Report, limit: int = 7) -> list[str]:
    totals: dict[str, int] = {}
    for row in report.rows:
        name = _value(row.dims[1])
        totals[name] = totals.get(name, 0) + (row.cost_nanousd or 0)
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    return ranked if len(ranked) <= limit else [*ranked[: limit - 1], "other"]


def _series_name(row: ReportRow, series: list[str]) -> str:
    name = _value(row.dims[1])
    return name if name in series else "other"


def _value(value: str | None) -> str:
    return UNKNOWN_GROUP if value is None else value


def day_range(days: int, today: date | None = None) -> tuple[date, date]:
    last = today or datetime.now().date()
    return last - timedelta(days=days - 1), last
