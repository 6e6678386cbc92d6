"""A Report as a table for people: drawn by rich for a short table in a terminal, written as
plain aligned text for a long one or for a pipe (the same columns, cells and caption, without
rich's measuring pass), or Markdown; columns dropped to fit the width, a spend bar by day, and
the caption that says what was priced and sampled."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from meterfox_cli.money import human_usd
from meterfox_cli.report.cells import count, duration, percent
from meterfox_cli.store.dimensions import TIME_DIMENSIONS, UNKNOWN_GROUP, UNTAGGED_GROUP
from meterfox_cli.store.queries import Report, ReportRow

# rich lays out every cell of a table before drawing it (~0.7 ms a row: 1,365 rows took ~1 s);
# a terminal gets rich's table up to this many rows, the plain one past it.
RICH_MAX_ROWS = 100
SPEND_BAR_WIDTH = 12


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
    needed = {
        id(column): max(len(cell) for cell in (column.title, *map(column.cell, rows))) + 3
        for column in columns
    }
    kept = list(columns)
    while sum(needed[id(c)] for c in kept) + 1 > width:
        droppable = [c for c in kept if c.keep < 9]
        if not droppable:
            break
        kept.remove(min(droppable, key=lambda c: c.keep))
    return kept


def _layout(report: Report, width: int) -> tuple[list[Column], bool]:
    """The columns a table of `report` shows in `width` cells, and whether it has a spend
    bar (a report by one time dimension) — the same for the rich and the plain table."""
    rows = list(report.rows)
    spend_bar = len(report.dimensions) == 1 and report.dimensions[0] in TIME_DIMENSIONS
    room = width - (SPEND_BAR_WIDTH + 4 if spend_bar else 0)
    return _fit_columns(_columns(report, rows), [*rows, report.total], room), spend_bar


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
    """The table drawn by rich on `console` (fitted to its width)."""
    from rich.table import Table
    from rich.text import Text

    rows = list(report.rows)
    columns, spend_bar = _layout(report, console.width)
    table = Table(
        title=title or _title(report),
        show_footer=len(rows) > 1,
        caption=caption(report),
        caption_justify="left",
    )
    for column in columns:
        table.add_column(
            column.title,
            justify="right" if column.numeric else "left",
            footer=shown(column.cell(report.total)),
            no_wrap=True,
            min_width=None if column.numeric else min(len(column.title), 12),
        )
    if spend_bar:
        table.add_column("spend", no_wrap=True, min_width=8)
    top = max((row.cost_nanousd or 0 for row in rows), default=0)
    for row in rows:
        # Text, not str: a model, key or tag value is data, never rich markup ("[/x]" would
        # raise, "[red]" would style); it also skips markup parsing for every cell.
        cells: list[object] = [Text(shown(column.cell(row))) for column in columns]
        if spend_bar:
            cells.append(Text(bar(row.cost_nanousd or 0, top, SPEND_BAR_WIDTH), style="green"))
        table.add_row(*cells)
    console.print(table)


def plain_table(report: Report, *, width: int, title: str | None = None) -> str:
    """The table as plain text: the columns rich would show in `width` cells, each as wide as
    its widest cell, numbers right-aligned, two spaces between columns; the title above, a
    rule under the header and above the total, the caption under it. Nothing is measured twice
    and nothing is truncated, so it costs a few microseconds a cell however long the table."""
    rows = list(report.rows)
    columns, spend_bar = _layout(report, width)
    top = max((row.cost_nanousd or 0 for row in rows), default=0)
    lines = [[shown(column.cell(row)) for column in columns] for row in rows]
    if spend_bar:
        for line, row in zip(lines, rows, strict=True):
            line.append(bar(row.cost_nanousd or 0, top, SPEND_BAR_WIDTH))
    header = [column.title for column in columns] + (["spend"] if spend_bar else [])
    footer = [shown(column.cell(report.total)) for column in columns] + [""] * spend_bar
    numeric = [column.numeric for column in columns] + [False] * spend_bar
    table = [header, *lines, *([footer] if len(rows) > 1 else [])]
    widths = [max(_cells(line[i]) for line in table) for i in range(len(header))]
    rule = ["-" * w for w in widths]

    def text(cells: list[str]) -> str:
        padded = (
            _pad(cell, w, right) for cell, w, right in zip(cells, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    out = [title or _title(report), "", text(header), text(rule), *map(text, lines)]
    if len(rows) > 1:
        out += [text(rule), text(footer)]
    note = caption(report)
    return "\n".join(out + ([note] if note else [])) + "\n"


def _title(report: Report) -> str:
    return f"Spend by {', '.join(report.dimensions)}"


def _pad(cell: str, width: int, right: bool) -> str:
    room = " " * (width - _cells(cell))
    return room + cell if right else cell + room


def _cells(text: str) -> int:
    """How many terminal cells `text` takes: two for a wide (East Asian) character, none for a
    combining one."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def shown(text: str) -> str:
    """A cell as it may reach a terminal: a control or invisible format character (an escape
    sequence, a newline, a bidi override in a model or tag name) written as its code."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


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
    return shown(text).replace("|", "\\|").replace("*", "\\*")


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
    notes.extend(_sample_note(report.rows))
    return "\n".join(notes)


def _sample_note(rows: Sequence[ReportRow]) -> list[str]:
    """How the groups' latency percentiles were taken: how many from one request in n, per n
    (thin groups are read more densely than the rest), and whether the others read all."""
    by_rate = Counter(row.latency_sample_every for row in rows if row.latency_sample_every > 1)
    if not by_rate:
        return []
    parts = [
        f"{n:,} group{'s' if n > 1 else ''} from one request in {every}"
        for every, n in sorted(by_rate.items(), reverse=True)
    ]
    sampled = sum(by_rate.values())
    rest = "" if sampled == len(rows) else "; the other groups' from every request"
    return [f"Latency percentiles of {', '.join(parts)}{rest}."]


def cost_cell(row: ReportRow) -> str:
    if row.cost_usd is None:
        return "unpriced" if row.unpriced_requests else "—"
    return human_usd(row.cost_usd) + (" *" if row.unpriced_requests else "")


def unpriced_cell(row: ReportRow) -> str:
    return count(row.unpriced_requests) if row.unpriced_requests else ""


def bar(value: int, top: int, width: int) -> str:
    """A horizontal bar of `width` cells for value/top, in eighths of a cell."""
    if top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / top * width * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + ("" if rest == 0 else " ▏▎▍▌▋▊▉"[rest])
