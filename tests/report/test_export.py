"""Exports: one CSV row or JSON line per request, exact costs, tags as a JSON object."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest

from meterfox_cli.report.export import EXPORT_FIELDS, write_export
from meterfox_cli.store import feed
from meterfox_cli.store.select import TimeRange


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_exports_write_one_row_per_request_with_exact_costs_and_tags(recorded_conn, fmt):
    out = io.StringIO()
    written = write_export(feed.export_rows(recorded_conn, TimeRange()), out, fmt)
    assert written == 3
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert list(rows[0]) == list(EXPORT_FIELDS)
        assert json.loads(rows[0]["tags"]) == {"feature": "search"}
        assert rows[2]["cost_usd"] == ""
    else:
        rows = [json.loads(line, parse_float=Decimal) for line in out.getvalue().splitlines()]
        assert list(rows[0]) == list(EXPORT_FIELDS)
        assert rows[0]["tags"] == {"feature": "search"}
        assert rows[2]["cost_usd"] is None and rows[2]["cost_source"] == "unpriced"
        assert rows[0]["streamed"] is True
    assert Decimal(str(rows[0]["cost_usd"])) == Decimal("12345678.123456789")
    assert [row["model"] for row in rows] == ["gpt-4o", "llama", "ft:custom"]
