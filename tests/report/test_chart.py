"""The daily chart: one line per day, stacked by series, readable without colour."""

from __future__ import annotations

from datetime import date

from rich.console import Console

from meterfox_cli.report.chart import render_chart
from meterfox_cli.store.queries import build_report
from meterfox_cli.store.select import TimeRange


def test_the_chart_draws_one_bar_per_day_stacked_by_series(recorded_conn):
    report = build_report(recorded_conn, ("day", "provider"), TimeRange(), latency=False)
    console = Console(record=True, width=100, color_system=None)
    render_chart(report, console, first_day=date(2026, 11, 2), last_day=date(2026, 11, 5))
    lines = console.export_text().splitlines()
    days = [line for line in lines if line.startswith("2026-11-")]
    assert [line[:10] for line in days] == ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]
    assert days[0].endswith("—")  # nothing spent
    assert "█" in days[1] and "$12,345,678.12" in days[1]
    assert "▓" in days[2]  # groq, the second series, in its own glyph without colour
    assert any("█ openai" in line and "▓ groq" in line for line in lines)
