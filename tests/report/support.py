"""Helpers for report tests."""

from __future__ import annotations

import sqlite3

from meterfox_cli.store.queries import Report, build_report
from meterfox_cli.store.select import TimeRange


def report_by(conn: sqlite3.Connection, *dims: str) -> Report:
    """The report of everything recorded, grouped by `dims`."""
    return build_report(conn, dims, TimeRange())
