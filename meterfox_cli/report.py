"""A Report → a rich table, a bar chart, Markdown, JSON or CSV. The Console is injected, so
tests read exactly what a person would see; JSON and CSV never carry colour codes.

JSON and CSV keep every number exact: tokens as integers, `cost_usd` as the exact decimal
(never a rounded float), `cost_nanousd` as an integer. Tables round for people.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TextIO

from meterfox_cli.store.dimensions import TIME_DIMENSIONS, UNKNOWN_GROUP, UNTAGGED_GROUP
from meterfox_cli.store.queries import Report, ReportRow
from meterfox_cli.store.rows import RequestLine

CONTRACT_FIELDS = (
    "group",
    "requests",
    "errors",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_requests",
)
EXTRA_FIELDS = (
    "cost_nanousd",
    "priced_requests",
    "unpriced_input_tokens",
    "unpriced_output_tokens",
    "latency_p50_ms",
    "latency_p95_ms",
    "ttfb_p50_ms",
    "latency_sample_every",
)


def fields_for(report: Report) -> list[str]:
    """Stable field names: the contract, one field per dimension after `group`, the extras."""
    return [CONTRACT_FIELDS[0], *report.dimensions, *CONTRACT_FIELDS[1:], *EXTRA_FIELDS]


def row_values(report: Report, row: ReportRow) -> dict[str, object]:
    values: dict[str, object] = {"group": row.group}
    values.update(zip(report.dimensions, row.dims, strict=True))
    for name in (*CONTRACT_FIELDS[1:], *EXTRA_FIELDS):
        values[name] = getattr(row, name)
    return values


# --- machine formats ----------------------------------------------------------------------


def to_json(report: Report) -> str:
    """A JSON list of rows (no totals row: the totals are the sum of the rows)."""
    if not report.rows:
        return "[]"
    rows = [_json_object(row_values(report, row)) for row in report.rows]
    return "[\n" + ",\n".join(rows) + "\n]"


def _json_object(values: dict[str, object]) -> str:
    items = (f"{json.dumps(name)}: {_json_value(value)}" for name, value in values.items())
    return "  {\n    " + ",\n    ".join(items) + "\n  }"


def _json_value(value: object) -> str:
    if isinstance(value, Decimal):
        return exact_decimal(value)  # a JSON number with every nano-dollar, not a float
    return json.dumps(value)


def exact_decimal(value: Decimal) -> str:
    return format(value.normalize(), "f")


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields_for(report), lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        values = row_values(report, row)
        writer.writerow({name: _csv_value(value) for name, value in values.items()})
    return out.getvalue()


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return exact_decimal(value)
    if isinstance(value, bool):
        return int(value)
    return value


# --- people formats -----------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    title: str
    cell: Callable[[ReportRow], str]
    numeric: bool = True
    keep: int = 9  # when the terminal is too narrow, lower `keep` columns go first


def _columns(report: Report, rows: Sequence[ReportRow]) -> list[Column]:
    everything = [*rows, report.total]
    columns = [
        Column(_dimension_title(dim), _dim_cell(i, dim), numeric=False)
        for i, dim in enumerate(report.dimensions)
    ]
    columns += [
        Column("requests", lambda r: count(r.requests)),
        Column("errors", lambda r: count(r.errors), keep=3),
        Column("input", lambda r: count(r.input_tokens), keep=4),
        Column("cached", lambda r: count(r.cached_tokens), keep=2),
    ]
    if any(r.cache_write_tokens for r in everything):
        columns.append(Column("cache write", lambda r: count(r.cache_write_tokens), keep=1))
    columns.append(Column("output", lambda r: count(r.output_tokens), keep=4))
    if any(r.reasoning_tokens for r in everything):
        columns.append(Column("reasoning", lambda r: count(r.reasoning_tokens), keep=2))
    columns.append(Column("cost", cost_cell))
    if report.total.unpriced_requests:
        columns.append(Column("unpriced", unpriced_cell, keep=5))
    columns += [
        Column("p50", lambda r: duration(r.latency_p50_ms), keep=7),
        Column("p95", lambda r: duration(r.latency_p95_ms), keep=6),
        Column("ttfb p50", lambda r: duration(r.ttfb_p50_ms), keep=3),
    ]
    return columns


def _fit_columns(columns: list[Column], rows: Sequence[ReportRow], width: int) -> list[Column]:
    """Drop the least needed columns until the table fits `width` terminal cells."""

    def needed(column: Column) -> int:
        cells = [column.title, *(column.cell(row) for row in rows)]
        return max(len(cell) for cell in cells) + 3

    kept = list(columns)
    while sum(needed(c) for c in kept) + 1 > width:
        droppable = [c for c in kept if c.keep < 9]
        if not droppable:
            break
        kept.remove(min(droppable, key=lambda c: c.keep))
    return kept


def _dimension_title(dim: str) -> str:
    return "week of" if dim == "week" else dim


def _dim_cell(index: int, dim: str):
    placeholder = UNTAGGED_GROUP if dim.startswith("tag:") else UNKNOWN_GROUP

    def cell(row: ReportRow) -> str:
        if not row.dims:
            return "total" if index == 0 else ""
        value = row.dims[index]
        return placeholder if value is None else value

    return cell


def render_table(report: Report, console, *, title: str | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    rows = list(report.rows)
    spend_bar = len(report.dimensions) == 1 and report.dimensions[0] in TIME_DIMENSIONS
    room = console.width - (16 if spend_bar else 0)
    columns = _fit_columns(_columns(report, rows), [*rows, report.total], room)
    table = Table(
        title=title or f"Spend by {', '.join(report.dimensions)}",
        show_footer=len(rows) > 1,
        caption=caption(report),
        caption_justify="left",
    )
    for column in columns:
        table.add_column(
            column.title,
            justify="right" if column.numeric else "left",
            footer=column.cell(report.total),
            no_wrap=True,
            min_width=None if column.numeric else min(len(column.title), 12),
        )
    if spend_bar:
        table.add_column("spend", no_wrap=True, min_width=8)
    top = max((row.cost_nanousd or 0 for row in rows), default=0)
    for row in rows:
        cells: list[object] = [column.cell(row) for column in columns]
        if spend_bar:
            cells.append(Text(bar(row.cost_nanousd or 0, top, 12), style="green"))
        table.add_row(*cells)
    console.print(table)


def to_markdown(report: Report) -> str:
    rows = list(report.rows)
    columns = _columns(report, rows)
    lines = [
        "| " + " | ".join(column.title for column in columns) + " |",
        "| " + " | ".join("---:" if c.numeric else "---" for c in columns) + " |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_md(column.cell(row)) for column in columns) + " |")
    if len(rows) > 1:
        total = [f"**{_md(column.cell(report.total))}**" for column in columns]
        lines.append("| " + " | ".join(total) + " |")
    note = caption(report)
    return "\n".join(lines) + ("\n\n" + note if note else "") + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def caption(report: Report) -> str:
    """The lines under a table: how much was priced, what the marks mean, any sampling."""
    total = report.total
    notes = []
    share = total.priced_share
    if share is not None:
        notes.append(f"Priced: {percent(share)} of requests.")
    if total.unpriced_requests:
        notes.append(
            f"* cost excludes {total.unpriced_requests:,} unpriced requests "
            f"({count(total.unpriced_input_tokens)} input, "
            f"{count(total.unpriced_output_tokens)} output tokens); "
            "--strict fails on them."
        )
    sampled = sum(1 for row in report.rows if row.latency_sample_every > 1)
    if sampled:
        rest = "" if sampled == len(report.rows) else "; the other groups' from every request"
        notes.append(
            f"Latency percentiles of {sampled} group{'s' if sampled > 1 else ''} from one "
            f"request in {report.sample_every}{rest}."
        )
    return "\n".join(notes)


def cost_cell(row: ReportRow) -> str:
    if row.cost_usd is None:
        return "unpriced" if row.unpriced_requests else "—"
    return money(row.cost_usd) + (" *" if row.unpriced_requests else "")


def unpriced_cell(row: ReportRow) -> str:
    return count(row.unpriced_requests) if row.unpriced_requests else ""


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


def bar(value: int, top: int, width: int) -> str:
    """A horizontal bar of `width` cells for value/top, in eighths of a cell."""
    if top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / top * width * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + ("" if rest == 0 else " ▏▎▍▌▋▊▉"[rest])


def getting_started(base_url: str) -> str:
    """What to say when nothing has been recorded yet."""
    return (
        "No requests recorded yet.\n\n"
        "1. Start the proxy:     meterfox serve\n"
        f"2. Point your SDK at it, e.g. OPENAI_BASE_URL={base_url}/openai/v1\n"
        '   (`meterfox providers` lists every base URL; `eval "$(meterfox env)"` sets them)\n'
        "3. Make a request, then run `meterfox report` again."
    )


# --- the daily chart ----------------------------------------------------------------------

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
    labels = {day: money(Decimal(sum(costs.values())).scaleb(-9)) for day, costs in per_day.items()}
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


# --- tail ---------------------------------------------------------------------------------


@dataclass
class RunningTotal:
    requests: int = 0
    cost_nanousd: int = 0
    unpriced: int = 0

    def add(self, line: RequestLine) -> RunningTotal:
        self.requests += 1
        self.cost_nanousd += line.cost_nanousd or 0
        self.unpriced += line.cost_source == "unpriced"
        return self


TAIL_HEADER = (
    f"{'time':<8}  {'key':<12} {'provider':<11} {'model':<28} {'tokens in → out':>17} "
    f"{'cost':>11} {'latency':>8}  {'status':<7} running total"
)


def tail_line(line: RequestLine, total: RunningTotal) -> str:
    """One request as a fixed-width line, with the running total so far."""
    clock = datetime.fromtimestamp(line.ts).strftime("%H:%M:%S")
    tokens = f"{count(line.input_tokens)} → {count(line.output_tokens)}"
    if line.cost_usd is not None:
        cost = money(line.cost_usd)
    else:
        cost = "unpriced" if line.cost_source == "unpriced" else "—"
    status = str(line.status) + ("" if line.outcome == "ok" else f" {line.outcome}")
    running = f"{total.requests:,} req {money(Decimal(total.cost_nanousd).scaleb(-9))}"
    if total.unpriced:
        running += f" (+{total.unpriced:,} unpriced)"
    return (
        f"{clock:<8}  {_fit(line.key_name, 12)} {_fit(line.provider, 11)} "
        f"{_fit(line.model or '(unknown)', 28)} {tokens:>17} {cost:>11} "
        f"{duration(line.latency_ms):>8}  {status:<7} {running}"
    )


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"


# --- export -------------------------------------------------------------------------------

EXPORT_FIELDS = (
    "id",
    "time",
    "ts",
    "day",
    "provider",
    "model",
    "endpoint",
    "method",
    "status",
    "outcome",
    "streamed",
    "key",
    "ttfb_ms",
    "latency_ms",
    "usage_known",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_nanousd",
    "cost_source",
    "tags",
)


def export_values(line: RequestLine) -> tuple[object, ...]:
    """One request's values, in EXPORT_FIELDS order."""
    return (
        line.id,
        datetime.fromtimestamp(line.ts, UTC).isoformat(timespec="milliseconds"),
        line.ts,
        line.day,
        line.provider,
        line.model,
        line.endpoint,
        line.method,
        line.status,
        line.outcome,
        line.streamed,
        line.key_name,
        line.ttfb_ms,
        line.latency_ms,
        line.usage_known,
        line.input_tokens,
        line.cached_tokens,
        line.cache_write_tokens,
        line.output_tokens,
        line.reasoning_tokens,
        line.cost_usd,
        line.cost_nanousd,
        line.cost_source,
        line.tags,
    )


def write_export(lines: Iterable[RequestLine], out: TextIO, fmt: str) -> int:
    """Write each request as it comes (CSV with a header, or one JSON object per line);
    return how many were written."""
    written = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_FIELDS)
        for line in lines:  # the csv module writes None as an empty field
            values = list(export_values(line))
            values[10], values[14] = int(line.streamed), int(line.usage_known)
            values[20] = None if line.cost_usd is None else exact_decimal(line.cost_usd)
            writer.writerow(values)
            written += 1
        return written
    leading = EXPORT_FIELDS[:20]  # up to cost_usd, which json.dumps cannot write exactly
    for line in lines:
        values = export_values(line)
        head = json.dumps(dict(zip(leading, values[:20], strict=True)))[:-1]
        cost = "null" if line.cost_usd is None else exact_decimal(line.cost_usd)
        out.write(
            f'{head}, "cost_usd": {cost}, "cost_nanousd": {json.dumps(line.cost_nanousd)}, '
            f'"cost_source": {json.dumps(line.cost_source)}, "tags": {line.tags}}}\n'
        )
        written += 1
    return written
