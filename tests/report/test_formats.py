"""JSON and CSV keep the contract's field names and every number exact."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from meterfox_cli.report.formats import to_csv, to_json
from meterfox_cli.store.queries import empty_report
from meterfox_cli.store.select import Filters, TimeRange
from tests.report.support import report_by

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


def test_json_keeps_the_contract_adds_one_field_per_dimension_and_round_trips(recorded_conn):
    report = report_by(recorded_conn, "provider", "model")
    rows = json.loads(to_json(report), parse_float=Decimal)
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
    assert json.loads(to_json(empty_report(("model",), TimeRange(), Filters()))) == []


def test_csv_has_stable_headers_and_exact_costs(recorded_conn):
    report = report_by(recorded_conn, "tag:feature")
    text = to_csv(report)
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames[:2] == ["group", "tag:feature"]
    assert set(CONTRACT) <= set(reader.fieldnames)
    rows = {row["group"]: row for row in reader}
    assert rows["search"]["cost_usd"] == "12345678.123456789"
    assert rows["(untagged)"]["tag:feature"] == ""
    assert "\x1b" not in text
