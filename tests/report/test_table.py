"""Tables for people: totals, the unpriced mark, narrow terminals, the spend bar, Markdown, and
the plain table that shows what rich draws."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

import pytest
from rich.console import Console

from meterfox_cli.records import Outcome
from meterfox_cli.report.cells import count
from meterfox_cli.report.table import (
    RICH_MAX_ROWS,
    caption,
    cost_cell,
    plain_table,
    render_table,
    to_markdown,
)
from tests.fakes.records import Req, at, insert
from tests.report.support import report_by


def test_the_table_shows_totals_the_unpriced_mark_and_the_priced_share(recorded_conn):
    console = Console(record=True, width=200, color_system=None)
    render_table(report_by(recorded_conn, "model"), console, title="Spend")
    text = console.export_text()
    assert "gpt-4o" in text and "llama" in text
    assert "$12,345,678.12" in text  # rounded for people
    assert "unpriced" in text
    assert "total" in text and "$12,345,678.12 *" in text  # the total excludes unpriced
    assert "Priced: 66.7% of requests." in text
    assert "1,000 input, 20 output tokens" in text
    assert "1.50 s" in text and "80 ms" in text


def test_a_narrow_terminal_drops_the_least_needed_columns_first(recorded_conn):
    console = Console(record=True, width=70, color_system=None)
    render_table(report_by(recorded_conn, "model"), console)
    lines = console.export_text().splitlines()
    header = lines[2]
    for kept in ("model", "requests", "cost", "p50"):
        assert kept in header
    for dropped in ("cached", "ttfb"):
        assert dropped not in header
    assert max(len(line) for line in lines) <= 70


def test_by_day_tables_carry_a_spend_bar(recorded_conn):
    console = Console(record=True, width=200, color_system=None)
    render_table(report_by(recorded_conn, "day"), console)
    text = console.export_text()
    assert "spend" in text and "█" in text


def test_markdown_has_a_row_per_group_and_a_bold_total(recorded_conn):
    text = to_markdown(report_by(recorded_conn, "provider", "model"))
    lines = text.splitlines()
    assert lines[0].startswith("| provider | model | requests |")
    assert lines[1].startswith("| --- | --- | ---:")
    assert any(line.startswith("| groq | llama |") for line in lines)
    assert any(line.startswith("| **total** |") for line in lines)
    assert "cost excludes 1 unpriced requests" in text


def test_the_caption_says_each_sampling_rate_and_how_many_groups_had_it(recorded_conn):
    report = report_by(recorded_conn, "model")
    assert len(report.rows) >= 3, "the recorded fixture has three models at least"
    assert "Latency percentiles" not in caption(report)  # every request read
    rates = [32, 16] + [32] * (len(report.rows) - 3) + [1]
    rows = tuple(
        replace(row, latency_sample_every=every)
        for row, every in zip(report.rows, rates, strict=True)
    )
    text = caption(replace(report, rows=rows, sample_every=32))
    big = len(report.rows) - 2
    assert (
        f"Latency percentiles of {big} group{'s' if big > 1 else ''} from one request in 32, "
        "1 group from one request in 16; the other groups' from every request."
    ) in text


def test_names_that_look_like_rich_markup_are_shown_as_they_are(recorded_conn):
    """A model, key or tag value comes from requests and responses: "[/x]" made rich raise
    (the whole report failed) and "[bold]…" styled the cell."""
    report = report_by(recorded_conn, "model")
    hostile = ("[/oops]", "[bold]loud[/bold]", "[link=http://x]y[/link]")
    rows = tuple(
        replace(row, dims=(name,)) for row, name in zip(report.rows, hostile, strict=False)
    )
    console = Console(record=True, width=200, color_system=None)
    render_table(replace(report, rows=rows), console)
    text = console.export_text()
    for name in hostile:
        assert name in text


# --- the plain table: what rich shows, without rich ----------------------------------------


def _varied(conn) -> None:
    """Requests over 40 days, four models (one unknown), three feature tags and untagged ones,
    priced, unpriced and failed, with cache writes, reasoning and streamed first bytes."""
    reqs = []
    for i in range(160):
        day = f"2026-10-{1 + i % 31:02d}" if i % 40 < 31 else f"2026-11-{1 + i % 9:02d}"
        reqs.append(
            Req(
                at(f"{day} {8 + i % 12:02d}:{i % 60:02d}"),
                provider=("openai", "anthropic", "groq")[i % 3],
                model=("gpt-4o", "claude-x", None, "a-very-long-fine-tuned-model-name")[i % 4],
                key=("backend", "ci")[i % 2],
                status=500 if i % 11 == 0 else 200,
                outcome=Outcome.UPSTREAM_ERROR if i % 11 == 0 else Outcome.OK,
                cost_nano=None if i % 7 == 0 or i % 11 == 0 else 123_456_789 * (i + 1) ** 3,
                unpriced=i % 14 == 0 and i % 11 != 0,
                input_tokens=1000 * i + 7,
                cache_write_tokens=i * 3 if i % 5 == 0 else 0,
                output_tokens=37 * i,
                reasoning_tokens=11 * i if i % 3 == 0 else 0,
                latency_ms=100.0 + 97 * i,
                ttfb_ms=None if i % 2 else 10.0 + i,
                tags=() if i % 4 == 0 else (("feature", ("chat", "search", "日本語")[i % 3]),),
            )
        )
    insert(conn, *reqs)


def _rich_cells(text: str) -> list[list[str]]:
    """The header, rows and footer of a table drawn by rich, as their cells."""
    return [
        [cell.strip() for cell in line.strip()[1:-1].split(line.strip()[0])]
        for line in text.splitlines()
        if line.strip()[:1] in ("┃", "│")
    ]


def _plain_cells(text: str) -> list[list[str]]:
    """The header, rows and footer of a plain table, cut at the columns its rule marks; a
    numeric cell must end at its column's right edge, any other start at its left one."""
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) <= {"-", " "}]
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", lines[rules[0]])]
    body = [*lines[rules[0] + 1 : rules[1]], lines[rules[1] + 1]] if len(rules) > 1 else []
    table = [lines[rules[0] - 1], *(body or [lines[rules[0] + 1]])]
    by_cell = ["".join(c + "\0" * _wide(c) for c in line).ljust(spans[-1][1]) for line in table]
    cut = [[line[start:end].replace("\0", "") for start, end in spans] for line in by_cell]
    for i, title in enumerate(cell.strip() for cell in cut[0]):
        numeric = title not in ("provider", "model", "key", "day", "tag:feature", "spend")
        for cell in (row[i] for row in cut):
            assert not cell.strip() or cell == (cell.rstrip() if numeric else cell.lstrip())
    return [[cell.strip() for cell in row] for row in cut]


def _wide(c: str) -> bool:
    return unicodedata.east_asian_width(c) in "WF"


@pytest.mark.parametrize("width", [200, 110, 90])
@pytest.mark.parametrize("by", ["model", "day", "provider,model", "tag:feature,model", "day,key"])
def test_the_plain_table_shows_what_rich_draws_cell_for_cell(conn, by, width):
    _varied(conn)
    report = report_by(conn, *by.split(","))
    console = Console(record=True, width=width, color_system=None)
    render_table(report, console, title="Spend")
    drawn = console.export_text()
    plain = plain_table(report, width=width, title="Spend")
    rich_cells = _rich_cells(drawn)
    assert not any("…" in cell for row in rich_cells for cell in row), "rich truncated a cell"
    assert _plain_cells(plain) == rich_cells
    assert len(rich_cells) == len(report.rows) + 2  # header, rows, total
    assert plain.splitlines()[0] == "Spend"
    assert plain.endswith(caption(report) + "\n") and "unpriced requests" in caption(report)


def test_the_plain_table_aligns_wide_characters_by_terminal_cells(conn):
    from rich.cells import cell_len

    _varied(conn)
    plain = plain_table(report_by(conn, "tag:feature"), width=200)
    lines = plain.splitlines()
    total = next(i for i, line in enumerate(lines) if line.startswith("total"))
    table = [line for line in lines[2 : total + 1] if not line.startswith("-")]
    assert any(line.startswith("日本語 ") for line in table)
    assert len({cell_len(line) for line in table}) == 1  # the last (numeric) column lines up


def test_the_plain_table_writes_every_number_of_a_long_report(conn):
    _varied(conn)
    report = report_by(conn, "day", "model")
    assert len(report.rows) > RICH_MAX_ROWS
    rows = _plain_cells(plain_table(report, width=300))
    header, body, footer = rows[0], rows[1:-1], rows[-1]
    assert len(body) == len(report.rows)
    for cells, row in zip(body, report.rows, strict=True):
        shown = dict(zip(header, cells, strict=True))
        assert shown["requests"] == count(row.requests)
        assert shown["cost"] == cost_cell(row)
        assert (shown["day"], shown["model"]) == (row.dims[0], row.dims[1] or "(unknown)")
    assert footer[:3] == ["total", "", count(report.total.requests)]


def test_control_characters_in_names_reach_no_terminal(recorded_conn):
    """A model or tag value is whatever a request carried: an escape sequence, a newline or a
    bidi override would repaint or reorder the terminal (rich let ESC through)."""
    report = report_by(recorded_conn, "model")
    hostile = ("\x1b[2Jwiped", "two\nlines", "\u202egnp.exe")
    rows = tuple(
        replace(row, dims=(name,)) for row, name in zip(report.rows, hostile, strict=False)
    )
    report = replace(report, rows=rows)
    console = Console(record=True, width=200, color_system=None)
    render_table(report, console)
    for text in (console.export_text(), plain_table(report, width=200), to_markdown(report)):
        assert "\x1b" not in text and "\u202e" not in text
        assert "\\u001b[2Jwiped" in text and "two\\u000alines" in text and "\\u202egnp" in text
