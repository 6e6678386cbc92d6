"""Storage faults: the database locked by another process, a full disk, a database that cannot
be opened at first, a record the database cannot take. Requests are still forwarded, records
wait in the bounded queue and are written when the database takes them again, the daemon logs
it, /_meterfox/health says `degraded` with the queued count, and the writer thread never dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from meterfox_cli.records import UsageRecord
from meterfox_cli.store.writer import RecordWriter
from meterfox_cli.usage import Reading, Usage
from tests.conftest import read_records, start_proxy
from tests.fakes.records import usage_record as make_record
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import CASES

CHAT = CASES[0].body
FAST_BUSY_S = 0.2  # the writer gives up one attempt on a locked database after this long


def writer_for(db_path: Path, **options) -> RecordWriter:
    options.setdefault("busy_timeout_s", FAST_BUSY_S)
    options.setdefault("retry_max_s", 0.2)
    return RecordWriter(db_path, **options)


async def chat(proxy, n: int = 1) -> list[int]:
    statuses = []
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            async with session.post(
                proxy.base("openai") + "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": str(i)}]},
            ) as response:
                await response.read()
                statuses.append(response.status)
    return statuses


async def health(proxy) -> dict:
    async with (
        aiohttp.ClientSession() as session,
        session.get(proxy.url + "/_meterfox/health") as response,
    ):
        return await response.json()


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def degraded_with(proxy, queued: int) -> dict:
    async def check():
        h = await health(proxy)
        return h if h["status"] == "degraded" and h["records_queued"] == queued else None

    return await wait_for(check, what=f"health degraded with {queued} queued")


async def healthy_with(proxy, written: int) -> dict:
    async def check():
        h = await health(proxy)
        ok = h["status"] == "ok" and h["records_written"] == written
        return h if ok and h["records_queued"] == 0 else None

    return await wait_for(check, what=f"health ok with {written} written")


@contextlib.asynccontextmanager
async def proxy_with(upstream_server, writer: RecordWriter):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CHAT)
    proxy, proxy_server = await start_proxy(fake, server, writer=writer)
    try:
        yield proxy
    finally:
        await proxy_server.close()


def usage_record(usage: Usage | None = None, cost=None) -> UsageRecord:
    return make_record(reading=Reading(model="gpt-4o", usage=usage, reported_cost_usd=cost))


# --- the database locked by another process ---------------------------------------------------

LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes our stdin
conn.execute("ROLLBACK")
"""


@contextlib.contextmanager
def locked_by_another_process(db_path: Path):
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        if holder.poll() is None:
            holder.stdin.close()
            holder.wait(10)


async def test_locked_database_queues_records_and_writes_them_when_the_lock_goes(
    upstream_server, meterfox_home, caplog
):
    caplog.set_level(logging.INFO, logger="meterfox.writer")
    writer = writer_for(meterfox_home / "meterfox.db")
    async with proxy_with(upstream_server, writer) as proxy:
        with locked_by_another_process(proxy.db_path) as holder:
            assert await chat(proxy, 5) == [200] * 5  # forwarding never waits on the disk
            answered = time.monotonic()
            stuck = await degraded_with(proxy, queued=5)
            assert stuck["records_written"] == 0 and "locked" in stuck["store_error"]
            assert "cannot write records" in caplog.text and "locked" in caplog.text
            held_ms = (time.monotonic() - answered) * 1000
            holder.stdin.close()
            holder.wait(10)
        recovered = await healthy_with(proxy, written=5)
        assert recovered["store_error"] is None
        # The writer measures how long records waited: here, at least as long as the lock.
        assert recovered["max_commit_lag_ms"] >= held_ms and recovered["max_batch"] >= 1
        assert "writing records again" in caplog.text
        assert len(read_records(proxy.db_path)) == 5


async def test_records_beyond_the_bounded_queue_are_dropped_and_counted(
    upstream_server, meterfox_home, caplog
):
    """Kept while the database refuses: the queue (3) plus the batch in hand (at most 2)."""
    writer = writer_for(meterfox_home / "meterfox.db", max_queue=3, batch_size=2)
    async with proxy_with(upstream_server, writer) as proxy:
        with locked_by_another_process(proxy.db_path) as holder:
            assert await chat(proxy, 10) == [200] * 10  # still forwarded when records cannot be

            async def settled():
                h = await health(proxy)
                waiting = h["records_queued"] + h["records_dropped"]
                return h if h["status"] == "degraded" and waiting == 10 else None

            stuck = await wait_for(settled, what="10 records queued or dropped")
            assert stuck["records_queued"] <= 5 and stuck["records_dropped"] >= 5
            assert "record queue full" in caplog.text
            holder.stdin.close()
            holder.wait(10)
        done = await healthy_with(proxy, written=10 - stuck["records_dropped"])
        assert done["records_dropped"] == stuck["records_dropped"]


# --- a full disk ------------------------------------------------------------------------------


async def test_full_database_queues_records_until_there_is_room(
    upstream_server, meterfox_home, caplog
):
    """`PRAGMA max_page_count` on the writer's own connection: SQLite answers SQLITE_FULL
    exactly as on a full disk. Raising the cap is the disk getting space back."""
    connections: list[sqlite3.Connection] = []

    def cap(conn: sqlite3.Connection) -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        connections.append(conn)

    writer = writer_for(meterfox_home / "meterfox.db", on_connect=cap)
    async with proxy_with(upstream_server, writer) as proxy:
        assert await chat(proxy, 40) == [200] * 40  # more than the free pages can hold
        stuck = await degraded_with(proxy, queued=40 - writer.written)
        assert "full" in caplog.text
        assert stuck["records_written"] + stuck["records_queued"] == 40
        connections[-1].execute("PRAGMA max_page_count = 1073741823")
        await healthy_with(proxy, written=40)
    assert len(read_records(meterfox_home / "meterfox.db")) == 40


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 1 MiB tmpfs (needs root and mount(2)); skipped where the sandbox forbids it."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of the filesystem with one file."""
    filler = directory / f"filler-{uuid.uuid4().hex}"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


async def test_full_disk_queues_records_until_space_is_freed(
    upstream_server, tiny_disk, caplog, monkeypatch
):
    monkeypatch.setenv("METERFOX_HOME", str(tiny_disk))
    writer = writer_for(tiny_disk / "meterfox.db")
    async with proxy_with(upstream_server, writer) as proxy:
        assert await chat(proxy, 1) == [200]
        await healthy_with(proxy, written=1)
        filler = fill(tiny_disk)
        assert shutil.disk_usage(tiny_disk).free < 4096
        assert await chat(proxy, 200) == [200] * 200  # forwarded with a full disk

        async def degraded():
            h = await health(proxy)
            return h if h["status"] == "degraded" and h["records_queued"] > 0 else None

        stuck = await wait_for(degraded, what="health degraded")
        assert stuck["records_written"] + stuck["records_queued"] == 201
        assert "full" in stuck["store_error"]
        assert "cannot write records" in caplog.text
        filler.unlink()
        await healthy_with(proxy, written=201)
    assert len(read_records(tiny_disk / "meterfox.db")) == 201


# --- a database that cannot be opened at first --------------------------------------------------


async def test_unopenable_database_at_start_is_retried_while_requests_are_forwarded(
    upstream_server, meterfox_home, caplog
):
    db_path = meterfox_home / "meterfox.db"
    db_path.mkdir(parents=True)  # a directory where the database file should be
    writer = writer_for(db_path)
    async with proxy_with(upstream_server, writer) as proxy:
        assert await chat(proxy, 3) == [200] * 3
        await degraded_with(proxy, queued=3)
        assert "cannot open" in caplog.text
        db_path.rmdir()
        await healthy_with(proxy, written=3)
    assert len(read_records(db_path)) == 3


# --- records the database cannot take, and shutdown while it refuses ---------------------------


def test_a_record_sqlite_cannot_store_does_not_stop_the_writer(tmp_path):
    """Token counts and costs beyond SQLite's 64-bit integers are clamped, not fatal."""
    writer = writer_for(tmp_path / "db.sqlite")
    writer.start()
    huge = usage_record(Usage(input_tokens=2**70, output_tokens=10**30), cost=10**300)
    normal = usage_record(Usage(input_tokens=3, output_tokens=4))
    writer.submit(huge)
    writer.submit(normal)
    writer.close()
    rows = {r["id"]: r for r in read_records(tmp_path / "db.sqlite")}
    assert set(rows) == {huge.id, normal.id}
    assert rows[normal.id]["input_tokens"] == 3
    assert rows[huge.id]["input_tokens"] == 2**63 - 1


def test_close_gives_up_on_a_locked_database_within_its_deadline(tmp_path, caplog):
    db_path = tmp_path / "db.sqlite"
    writer = writer_for(db_path, max_queue=5)
    writer.start()
    with locked_by_another_process(db_path):
        for _ in range(20):  # fill the queue too: close must not block on it
            writer.submit(usage_record())
        started = time.monotonic()
        writer.close(timeout=1.0)
        assert time.monotonic() - started < 4
    assert not writer.alive
    assert "not written" in caplog.text or "gave up" in caplog.text
