"""`tail` lines: one request a line, with the running total."""

from __future__ import annotations

from meterfox_cli.report.tail import RunningTotal, tail_line
from meterfox_cli.store import feed


def test_tail_lines_carry_a_running_total(recorded_conn):
    lines = feed.latest(recorded_conn, 10)
    total = RunningTotal()
    shown = [tail_line(line, total.add(line)) for line in lines]
    assert "gpt-4o" in shown[0] and "3 → 4" in shown[0] and "200" in shown[0]
    assert shown[1].endswith("2 req $12,345,678.12")
    assert "unpriced" in shown[2] and shown[2].endswith("(+1 unpriced)")
