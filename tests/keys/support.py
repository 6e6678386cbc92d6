"""Helpers for key tests: rows in the requests table, files MeterFox wrote."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from meterfox_cli.pricing.quote import Price
from meterfox_cli.store.rows import insert_records
from meterfox_cli.usage import Reading, Usage
from tests.fakes.records import usage_record


def add_request(
    conn: sqlite3.Connection, key_name: str, cost_nanousd: int | None, ts: float
) -> None:
    """One recorded request of `key_name` that cost `cost_nanousd`, as the writer stores it."""
    record = usage_record(
        started_at=ts,
        model="gpt-4o-mini",
        key_name=key_name,
        reading=Reading(model="gpt-4o-mini", usage=Usage(input_tokens=1, output_tokens=1)),
    )
    source = "computed" if cost_nanousd is not None else "unpriced"
    insert_records(conn, [(record, Price(cost_nanousd, source))])


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def dirs_under(root: Path) -> list[Path]:
    return [root, *sorted(path for path in root.rglob("*") if path.is_dir())]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)
