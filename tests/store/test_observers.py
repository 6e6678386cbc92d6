"""The writer's observer port: every observer sees each committed record once, as stored (a
deduplicated record without its usage), after its commit; one that raises neither stops the
writer nor hides the batch from the others."""

from __future__ import annotations

import sqlite3
import threading

from meterfox_cli.pricing.quote import Price
from meterfox_cli.store.writer import RecordWriter
from meterfox_cli.usage import Reading, Usage
from tests.conftest import read_records
from tests.fakes.records import usage_record


class Seen:
    def __init__(self, db_path=None) -> None:
        self.rows: list = []
        self.threads: set[str] = set()
        self.stored_when_seen: list[tuple[int, int]] = []
        self.closed = False
        self._db_path = db_path

    def observe(self, rows) -> None:
        self.threads.add(threading.current_thread().name)
        self.rows.extend(rows)
        if self._db_path is not None:
            conn = sqlite3.connect(self._db_path)
            try:
                stored = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
                self.stored_when_seen.append((stored, len(self.rows)))
            finally:
                conn.close()

    def close(self) -> None:
        self.closed = True


class Broken:
    def observe(self, rows) -> None:
        raise RuntimeError("observer bug")

    def close(self) -> None:
        raise RuntimeError("close bug")


def test_each_observer_sees_every_committed_record_once_as_stored_after_the_commit(tmp_path):
    db_path = tmp_path / "db.sqlite"
    usage = Usage(input_tokens=10, output_tokens=2)
    polled = [
        usage_record(reading=Reading(model="m", usage=usage, dedupe_key="replicate:p1"))
        for _ in range(2)
    ]
    plain = [usage_record() for _ in range(5)]
    first, second = Seen(db_path), Seen()
    writer = RecordWriter(db_path, pricer=lambda record: Price(7, "computed"))
    for observer in (first, Broken(), second):
        writer.add_observer(observer)
    writer.start()
    for record in [*polled, *plain]:
        writer.submit(record)
    writer.close()
    writer.close_observers()
    stored = read_records(db_path)
    assert len(stored) == 7
    for seen in (first, second):
        assert sorted(r.id for r, _ in seen.rows) == sorted(row["id"] for row in stored)
        assert seen.threads == {"meterfox-writer"}
        assert seen.closed
    # The second poll of the same prediction lost its usage in the store, and so for observers.
    usages = [r.reading.usage for r, _ in first.rows if r.reading.dedupe_key]
    assert sorted(u is None for u in usages) == [False, True]
    # Observed only once committed: the database already held every row an observer saw.
    assert first.stored_when_seen
    assert all(stored >= seen for stored, seen in first.stored_when_seen)
