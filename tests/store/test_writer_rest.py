"""store/writer_process.py at rest: a ProcessWriter with `rest_after_s` lets its child go once
nothing has come for that long and nothing is unfinished, and starts a new one for the next
record; nothing is lost or counted twice across children, and the figures never go back.
Real child processes, real SQLite files, a real (locked) database and a PostgreSQL ledger
that does not answer."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable

from meterfox_cli.metrics.prometheus import PrometheusMetrics
from meterfox_cli.store.observers import InWriter
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.sqlite import SqliteLedger
from meterfox_cli.store.writer_process import ProcessWriter
from meterfox_cli.usage import Reading, Usage
from tests.cli.conftest import free_port
from tests.conftest import read_records
from tests.fakes.records import SlowToArrive, usage_record
from tests.store.writer_probe import ModulesLoaded

REST_S = 0.3
WAIT_S = 20.0


def wait_for(done: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def chats(n: int) -> list:
    return [
        usage_record(reading=Reading(model="gpt-4o", usage=Usage(7, 0, 0, 0, 8))) for _ in range(n)
    ]


def requests_counted(metrics: PrometheusMetrics) -> float:
    """`meterfox_requests_total` on the page, summed over its label sets."""
    total = 0.0
    for line in metrics.render().decode().splitlines():
        if line.startswith("meterfox_requests_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def migrated(tmp_path) -> object:
    db = tmp_path / "meterfox.db"
    SqliteLedger(db).check()  # as `serve` does before its writer starts
    return db


def test_the_child_rests_and_the_next_record_starts_a_new_one_each_record_once(tmp_path):
    """Three rest and wake cycles: each child exits after the quiet period (its PID gone), the
    next record is committed by a new child, and the figures (Status, the Prometheus page)
    count on across children, never back."""
    db = migrated(tmp_path)
    metrics = PrometheusMetrics()
    loaded: list[list[str]] = []  # an observer with reports but no `resume`
    writer = ProcessWriter(db, rest_after_s=REST_S)
    writer.add_observer(metrics)
    writer.add_observer(InWriter(ModulesLoaded, (), loaded.append))
    writer.start()
    sent: list = []
    pids: list[int] = []
    try:
        for cycle in range(3):
            batch = chats(10 + cycle)
            for record in batch:
                writer.submit(record)
            sent += batch
            wait_for(lambda: writer.pid is not None, "a child")
            pid = writer.pid
            assert pid not in pids
            pids.append(pid)
            total = len(sent)
            wait_for(lambda n=total: writer.written == n, "the records' commit")
            assert requests_counted(metrics) == len(sent)  # monotonic across children
            assert writer.state == "running" and writer.alive
            wait_for(lambda: writer.state == "resting", "the rest")
            wait_for(lambda p=pid: not running(p), "the child's exit")
            assert writer.pid is None and not writer.alive
            assert writer.healthy and writer.last_error is None
            assert (writer.written, writer.queued, writer.dropped) == (len(sent), 0, 0)
            assert writer.max_batch >= 1
            assert requests_counted(metrics) == len(sent)
    finally:
        writer.close()
        writer.close_observers()
    ids = [r["id"] for r in read_records(db)]
    assert sorted(ids) == sorted(r.id for r in sent)  # each exactly once
    assert (writer.written, writer.queued, writer.dropped) == (len(sent), 0, 0)
    assert requests_counted(metrics) == len(sent)
    assert loaded and loaded[-1] == []


def test_prometheus_label_caps_hold_across_children(tmp_path):
    """A new child admits the models the last one counted before any new one: with a cap of
    one model, a second model after a rest still counts as `other`."""
    from meterfox_cli.config import MetricsConfig

    db = migrated(tmp_path)
    metrics = PrometheusMetrics(MetricsConfig(max_models=1))
    writer = ProcessWriter(db, rest_after_s=REST_S)
    writer.add_observer(metrics)
    writer.start()
    try:
        writer.submit(usage_record(reading=Reading(model="gpt-4o")))
        wait_for(lambda: writer.written == 1, "the first commit")
        wait_for(lambda: writer.state == "resting", "the rest")
        writer.submit(usage_record(reading=Reading(model="gpt-4.1")))
        writer.submit(usage_record(reading=Reading(model="gpt-4o")))
        wait_for(lambda: writer.written == 3, "the commit after the rest")
    finally:
        writer.close()
    page = metrics.render().decode()
    assert 'model="gpt-4o",provider="openai",status="200"} 2.0' in page
    assert 'model="other",provider="openai",status="200"} 1.0' in page
    assert 'model="gpt-4.1"' not in page


def test_no_rest_while_records_are_queued_behind_a_locked_database(tmp_path):
    """A database locked for ten quiet periods: the records wait in the child (queued, the
    write failing), so it does not rest; once the lock goes they commit, and then it rests."""
    db = migrated(tmp_path)
    writer = ProcessWriter(db, rest_after_s=REST_S)
    writer.start()
    wait_for(lambda: writer.state == "running", "the child's first report")
    pid = writer.pid
    lock = sqlite3.connect(db, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        records = chats(5)
        for record in records:
            writer.submit(record)
        wait_for(lambda: writer.failing_since is not None, "the write to fail")
        time.sleep(10 * REST_S)
        assert writer.pid == pid and writer.alive and writer.queued == 5
        lock.execute("ROLLBACK")
        wait_for(lambda: writer.written == 5, "the commit once unlocked")
        wait_for(lambda: writer.state == "resting", "the rest after it")
        assert writer.healthy
    finally:
        lock.close()
        writer.close()
    assert sorted(r["id"] for r in read_records(db)) == sorted(r.id for r in records)


def test_no_rest_while_the_postgresql_outbox_holds_records(tmp_path):
    """A PostgreSQL ledger that does not answer: the records are safe in the outbox but not in
    the ledger (`waiting`), so the child stays to drain them; close() leaves them there."""
    ledger = PostgresLedger(f"postgresql://meterfox@127.0.0.1:{free_port()}/meterfox")
    outbox = tmp_path / "outbox.sqlite"
    writer = ProcessWriter(ledger, outbox=outbox, rest_after_s=REST_S)
    writer.start()
    try:
        for record in chats(4):
            writer.submit(record)
        wait_for(lambda: writer.waiting == 4 and writer.queued == 0, "the outbox")
        pid = writer.pid
        time.sleep(10 * REST_S)
        assert writer.pid == pid and writer.alive and writer.state == "running"
        assert writer.waiting == 4
    finally:
        writer.close(timeout=1)
    assert writer.waiting == 4


def test_close_while_resting_commits_what_came_since(tmp_path):
    db = migrated(tmp_path)
    writer = ProcessWriter(db, rest_after_s=REST_S)
    writer.start()
    first = chats(3)
    for record in first:
        writer.submit(record)
    wait_for(lambda: writer.state == "resting", "the rest")
    second = chats(4)
    for record in second:
        writer.submit(record)
    writer.close()  # at once: the feeder may not have woken a child yet
    assert sorted(r["id"] for r in read_records(db)) == sorted(r.id for r in first + second)
    assert (writer.written, writer.queued, writer.dropped) == (7, 0, 0)


def test_close_while_a_new_child_is_starting_loses_nothing(tmp_path):
    """After a rest, a child slow to start (1.5 s to unpickle its pricer): the records wait in
    its pipe, and close() meanwhile still has them all committed."""
    db = migrated(tmp_path)
    writer = ProcessWriter(db, pricer=SlowToArrive(1.0), rest_after_s=REST_S)
    writer.start()
    first = chats(2)
    for record in first:
        writer.submit(record)
    wait_for(lambda: writer.written == 2, "the first commit")
    wait_for(lambda: writer.state == "resting", "the rest")
    second = chats(5)
    for record in second:
        writer.submit(record)
    wait_for(lambda: writer.state == "starting", "a new child")
    assert writer.queued == 5 and writer.written == 2 and writer.healthy
    writer.close()
    assert sorted(r["id"] for r in read_records(db)) == sorted(r.id for r in first + second)
    assert (writer.written, writer.queued, writer.dropped) == (7, 0, 0)


def test_never_keeps_the_child(tmp_path):
    """`rest_after_s=None` ("never"): the child stays however quiet it is."""
    db = migrated(tmp_path)
    writer = ProcessWriter(db, rest_after_s=None)
    writer.start()
    try:
        writer.submit(chats(1)[0])
        wait_for(lambda: writer.written == 1, "the commit")
        pid = writer.pid
        time.sleep(5 * REST_S)
        assert writer.pid == pid and writer.alive and writer.state == "running"
    finally:
        writer.close()
