"""Tables for people: totals, the unpriced mark, narrow terminals, the spend bar, Markdown."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from meterfox_cli.report.table import caption, render_table, to_markdown
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
