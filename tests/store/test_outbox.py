"""The outbox of a PostgreSQL ledger (store/outbox.py), with a real server: records go
write-ahead to the local file and drain into the ledger oldest first, each exactly once; while
the ledger is away they wait there, and the next start drains them."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from meterfox_cli.store.backend import Ledger
from meterfox_cli.store.outbox import Outbox, OutboxFile, waiting_in
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.queries import read_report
from meterfox_cli.store.rows import insert_records, request_row
from meterfox_cli.store.select import TimeRange
from meterfox_cli.store.writer import RecordWriter
from meterfox_cli.usage import Reading
from tests.cli.conftest import free_port
from tests.fakes.records import Req, usage_record


def migrated(url: str) -> PostgresLedger:
    ledger = PostgresLedger(url)
    ledger.migrate()
    return ledger


def away() -> PostgresLedger:
    """A ledger whose server does not answer (nothing listens on its port)."""
    return PostgresLedger(f"postgresql://meterfox@127.0.0.1:{free_port()}/meterfox")


def stored_ids(ledger: Ledger) -> list[str]:
    """The ids in the ledger, in the order it stored them."""
    conn = ledger.open_reader()
    if conn is None:
        return []
    try:
        return [row[0] for row in conn.execute("SELECT id FROM requests ORDER BY rowid")]
    finally:
        conn.close()


def wait_for(done, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def writer_for(ledger: Ledger, outbox: Path, **options: object) -> RecordWriter:
    return RecordWriter(ledger, pricer=lambda record: Req(0).price(), outbox=outbox, **options)


def test_the_file_keeps_rows_and_tags_oldest_first_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    records = [usage_record(tags=(("team", str(i)),)) for i in range(5)]
    rows = [request_row(record, Req(0).price(), "laptop") for record in records]
    outbox = OutboxFile(path)
    try:
        outbox.put([(row, record.tags) for row, record in zip(rows[:3], records, strict=False)])
        outbox.put([(row, record.tags) for row, record in zip(rows[3:], records[3:], strict=True)])
        first = outbox.oldest(2)
        assert first is not None and first.rows == rows[:2]  # every column, as it went in
        assert first.tags == [(records[0].id, "team", "0"), (records[1].id, "team", "1")]
        outbox.remove(first)
        assert outbox.count() == 3 == waiting_in(path)
        rest = outbox.oldest(10)
        assert rest is not None and rest.rows == rows[2:]
        outbox.remove(rest)
        assert outbox.oldest(10) is None
    finally:
        outbox.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert waiting_in(tmp_path / "none.sqlite") == 0


def test_records_pass_through_the_outbox_into_the_ledger_in_order(pg_url, tmp_path) -> None:
    ledger = migrated(pg_url)
    path = tmp_path / "outbox.sqlite"
    records = [usage_record(tags=(("team", "search"),)) for _ in range(30)]
    writer = writer_for(ledger, path, batch_size=7)  # several batches, several drains
    writer.start()
    for record in records:
        writer.submit(record)
    writer.close(timeout=20)
    assert stored_ids(ledger) == [record.id for record in records]  # oldest first
    assert (writer.written, writer.dropped, writer.waiting) == (30, 0, 0)
    assert waiting_in(path) == 0  # each left the outbox once the ledger had it
    conn = ledger.open_reader()
    assert conn is not None
    try:
        (tags,) = conn.execute("SELECT count(*) FROM request_tags").fetchone()
    finally:
        conn.close()
    assert tags == 30


def test_while_the_ledger_is_away_records_wait_and_the_next_start_drains_them(
    pg_url, tmp_path
) -> None:
    path = tmp_path / "outbox.sqlite"
    records = [usage_record() for _ in range(12)]
    writer = writer_for(away(), path, retry_max_s=0.2)
    writer.start()
    for record in records:
        writer.submit(record)
    wait_for(lambda: writer.waiting == 12 and writer.queued == 0)
    assert not writer.healthy and "cannot connect" in (writer.last_error or "")
    assert writer.failing_since is not None and writer.written == 0
    started = time.monotonic()
    writer.close(timeout=10)
    assert time.monotonic() - started < 5  # the records are safe: no wait for the ledger
    assert waiting_in(path) == 12

    ledger = migrated(pg_url)
    again = writer_for(ledger, path)
    again.start()  # a new run, the ledger back: what the last one left drains first
    wait_for(lambda: again.waiting == 0 and again.healthy)
    again.close(timeout=10)
    assert stored_ids(ledger) == [record.id for record in records]
    assert again.written == 12 and again.last_error is None


def test_a_batch_committed_but_not_removed_is_stored_once(pg_url, tmp_path) -> None:
    """A daemon killed between the ledger's commit and the outbox's delete: the next drain
    sends those records again, and the ledger (and its rollup) keeps one of each."""
    ledger = migrated(pg_url)
    path = tmp_path / "outbox.sqlite"
    records = [usage_record() for _ in range(10)]
    price = Req(0).price()
    outbox = OutboxFile(path)
    outbox.put([(request_row(record, price), ()) for record in records])
    outbox.close()
    conn = ledger.open_writer()
    try:
        with ledger.transaction(conn):  # the first half reached the ledger before the kill
            insert_records(conn, [(record, price) for record in records[:5]])
    finally:
        conn.close()

    drain = Outbox(path, ledger)
    drain.start()
    drain.close(time.monotonic() + 20)
    assert waiting_in(path) == 0 and drain.dropped == 0
    assert sorted(stored_ids(ledger)) == sorted(record.id for record in records)
    report = read_report(ledger, ("model",), TimeRange())
    assert report is not None and report.total.requests == 10  # the rollup counted each once


def test_a_record_the_ledger_refuses_for_its_data_is_dropped_not_retried(pg_url, tmp_path) -> None:
    """PostgreSQL text cannot hold NUL (SQLite's can): that record is dropped and counted; the
    others of its batch, and those after it, land."""
    ledger = migrated(pg_url)
    path = tmp_path / "outbox.sqlite"
    good = [usage_record() for _ in range(4)]
    bad = usage_record(reading=Reading(model="gpt\x00evil"))
    writer = writer_for(ledger, path)
    writer.start()
    for record in (*good[:2], bad, *good[2:]):
        writer.submit(record)
    writer.close(timeout=20)
    assert writer.dropped == 1 and waiting_in(path) == 0
    assert sorted(stored_ids(ledger)) == sorted(record.id for record in good)
