"""Rendering reports: exact machine formats, readable tables, the chart, tail lines, exports."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from meterfox_cli import report as render
from meterfox_cli.store import feed
from meterfox_cli.store.db import connect
from meterfox_cli.store.queries import build_report, empty_report
from meterfox_cli.store.select import Filters, TimeRange
from tests.fakes.records import Req, at, insert

CONTRACT = [
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
]


@pytest.fixture
def conn(tmp_path: Path):
    connection = connect(tmp_path / "meterfox.db")
    insert(
        connection,
        Req(
            at("2026-11-03 10:00"),
            provider="openai",
            model="gpt-4o",
            cost_nano=12_345_678_123_456_789,
            input_tokens=3,
            output_tokens=4,
            latency_ms=1500.0,
            ttfb_ms=300.0,
            tags=(("feature", "search"),),
        ),
        Req(at("2026-11-04 10:00"), provider="groq", model="llama", cost_nano=1, latency_ms=80.0),
        Req(
            at("2026-11-04 11:00"),
            provider="openai",
            model="ft:custom",
            cost_nano=None,
            unpriced=True,
            input_tokens=1000,
            output_tokens=20,
        ),
    )
    yield connection
    connection.close()


def report_by(conn, *dims: str):
    return build_report(conn, dims, TimeRange())


def test_json_keeps_the_contract_adds_one_field_per_dimension_and_round_trips(conn):
    report = report_by(conn, "provider", "model")
    rows = json.loads(render.to_json(report), parse_float=Decimal)
    assert list(rows[0])[: len(CONTRACT) + 2] == ["group", "provider", "model", *CONTRACT[1:]]
    first = rows[0]
    assert first["group"] == "openai / gpt-4o"
    assert (first["provider"], first["model"]) == ("openai", "gpt-4o")
    assert first["cost_usd"] == Decimal("12345678.123456789")  # every nano-dollar, no float
    assert first["cost_nanousd"] == 12_345_678_123_456_789
    assert first["latency_p50_ms"] == 1500.0 and first["ttfb_p50_ms"] == 300.0
    unpriced = next(row for row in rows if row["model"] == "ft:custom")
    assert unpriced["cost_usd"] is None and unpriced["unpriced_requests"] == 1
    assert unpriced["unpriced_input_tokens"] == 1000
    for row, original in zip(rows, report.rows, strict=True):
        assert row["requests"] == original.requests
        assert row["cost_usd"] == original.cost_usd


def test_json_of_nothing_is_an_empty_list():
    assert json.loads(render.to_json(empty_report(("model",), TimeRange(), Filters()))) == []


def test_csv_has_stable_headers_and_exact_costs(conn):
    report = report_by(conn, "tag:feature")
    text = render.to_csv(report)
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames[:2] == ["group", "tag:feature"]
    assert set(CONTRACT) <= set(reader.fieldnames)
    rows = {row["group"]: row for row in reader}
    assert rows["search"]["cost_usd"] == "12345678.123456789"
    assert rows["(untagged)"]["tag:feature"] == ""
    assert "\x1b" not in text


def test_the_table_shows_totals_the_unpriced_mark_and_the_priced_share(conn):
    console = Console(record=True, width=200, color_system=None)
    render.render_table(report_by(conn, "model"), console, title="Spend")
    text = console.export_text()
    assert "gpt-4o" in text and "llama" in text
    assert "$12,345,678.12" in text  # rounded for people
    assert "unpriced" in text
    assert "total" in text and "$12,345,678.12 *" in text  # the total excludes unpriced
    assert "Priced: 66.7% of requests." in text
    assert "1,000 input, 20 output tokens" in text
    assert "1.50 s" in text and "80 ms" in text


def test_a_narrow_terminal_drops_the_least_needed_columns_first(conn):
    console = Console(record=True, width=70, color_system=None)
    render.render_table(report_by(conn, "model"), console)
    lines = console.export_text().splitlines()
    header = lines[2]
    for kept in ("model", "requests", "cost", "p50"):
        assert kept in header
    for dropped in ("cached", "ttfb"):
        assert dropped not in header
    assert max(len(line) for line in lines) <= 70


def test_by_day_tables_carry_a_spend_bar(conn):
    console = Console(record=True, width=200, color_system=None)
    render.render_table(report_by(conn, "day"), console)
    text = console.export_text()
    assert "spend" in text and "█" in text


def test_markdown_has_a_row_per_group_and_a_bold_total(conn):
    text = render.to_markdown(report_by(conn, "provider", "model"))
    lines = text.splitlines()
    assert lines[0].startswith("| provider | model | requests |")
    assert lines[1].startswith("| --- | --- | ---:")
    assert any(line.startswith("| groq | llama |") for line in lines)
    assert any(line.startswith("| **total** |") for line in lines)
    assert "cost excludes 1 unpriced requests" in text


@pytest.mark.parametrize(
    ("usd", "shown"),
    [
        ("0", "$0.00"),
        ("1234.567", "$1,234.57"),
        ("1", "$1.00"),
        ("0.5", "$0.50"),
        ("0.001", "$0.0010"),
        ("0.01234", "$0.0123"),
        ("0.000123456", "$0.000123"),
        ("0.0000001", "<$0.000001"),
    ],
)
def test_money_has_sensible_precision(usd, shown):
    assert render.money(Decimal(usd)) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "0"),
        (9_999, "9,999"),
        (12_345, "12.3k"),
        (999_499, "999k"),
        (4_560_000, "4.56M"),
        (7_890_000_000, "7.89B"),
    ],
)
def test_counts_are_compact_past_ten_thousand(value, shown):
    assert render.count(value) == shown


@pytest.mark.parametrize(
    ("ms", "shown"), [(None, "—"), (80.4, "80 ms"), (1500.0, "1.50 s"), (21_500.0, "21.5 s")]
)
def test_durations(ms, shown):
    assert render.duration(ms) == shown


def test_the_chart_draws_one_bar_per_day_stacked_by_series(conn):
    report = build_report(conn, ("day", "provider"), TimeRange(), latency=False)
    console = Console(record=True, width=100, color_system=None)
    render.render_chart(report, console, first_day=date(2026, 11, 2), last_day=date(2026, 11, 5))
    lines = console.export_text().splitlines()
    days = [line for line in lines if line.startswith("2026-11-")]
    assert [line[:10] for line in days] == ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]
    assert days[0].endswith("—")  # nothing spent
    assert "█" in days[1] and "$12,345,678.12" in days[1]
    assert "▓" in days[2]  # groq, the second series, in its own glyph without colour
    assert any("█ openai" in line and "▓ groq" in line for line in lines)


def test_tail_lines_carry_a_running_total(conn):
    lines = feed.latest(conn, 10)
    total = render.RunningTotal()
    shown = [render.tail_line(line, total.add(line)) for line in lines]
    assert "gpt-4o" in shown[0] and "3 → 4" in shown[0] and "200" in shown[0]
    assert shown[1].endswith("2 req $12,345,678.12")
    assert "unpriced" in shown[2] and shown[2].endswith("(+1 unpriced)")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_exports_write_one_row_per_request_with_exact_costs_and_tags(conn, fmt):
    out = io.StringIO()
    written = render.write_export(feed.export_rows(conn, TimeRange()), out, fmt)
    assert written == 3
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert list(rows[0]) == list(render.EXPORT_FIELDS)
        assert json.loads(rows[0]["tags"]) == {"feature": "search"}
        assert rows[2]["cost_usd"] == ""
    else:
        rows = [json.loads(line, parse_float=Decimal) for line in out.getvalue().splitlines()]
        assert list(rows[0]) == list(render.EXPORT_FIELDS)
        assert rows[0]["tags"] == {"feature": "search"}
        assert rows[2]["cost_usd"] is None and rows[2]["cost_source"] == "unpriced"
        assert rows[0]["streamed"] is True
    assert Decimal(str(rows[0]["cost_usd"])) == Decimal("12345678.123456789")
    assert [row["model"] for row in rows] == ["gpt-4o", "llama", "ft:custom"]
