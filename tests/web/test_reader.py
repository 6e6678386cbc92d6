"""The dashboard's read process (web/reader.py, web/worker.py): reads run in a process of their
own, started on the first read; it stops with the app, a new one replaces one that died, and
it never outlives the daemon, not even a SIGKILLed one."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from functools import partial
from pathlib import Path

import aiohttp
import pytest

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.paths import resolve_paths
from meterfox_cli.store.db import connect
from meterfox_cli.store.feed import Cursor
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.rows import insert_records
from meterfox_cli.store.select import NO_FILTERS, TimeRange
from meterfox_cli.web.live import new_event
from meterfox_cli.web.reader import Reader
from meterfox_cli.web.routes import report_text
from meterfox_cli.web.shapes import report_json
from tests.cli.conftest import launch_serve
from tests.fakes.records import Req, at

LEDGER_REQUESTS = (
    Req(at("2026-11-03 10:00"), provider="openai", model="gpt-4o"),
    Req(at("2026-11-03 11:00"), provider="groq", model="llama", cost_nano=5),
)
REPORT_ARGS = {
    "dims": ("provider",),
    "window": TimeRange(),
    "filters": NO_FILTERS,
    "shape": report_json,
}


def process_id(conn: sqlite3.Connection) -> int:
    return os.getpid()


def count_requests(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]


def refuse(conn: sqlite3.Connection, why: str) -> None:
    raise MeterFoxError(why)


@pytest.fixture
def database() -> Path:
    paths = resolve_paths()
    paths.ensure()
    connect(paths.database).close()  # migrated
    return paths.database


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


async def gone(pid: int, within: float = 5.0) -> bool:
    for _ in range(int(within / 0.05)):
        if not running(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_reads_run_in_a_process_started_on_the_first_read_and_stopped_on_close(database):
    reader = Reader(database)
    assert reader.pid is None  # nothing started until a page asks
    worker = await reader.read(process_id)
    assert worker != os.getpid() and worker == reader.pid
    assert await reader.read(count_requests) == 0
    with pytest.raises(MeterFoxError, match="no such view"):
        await reader.read(partial(refuse, why="no such view"))  # its errors come back as raised
    assert await reader.read(process_id) == worker  # one long-lived process
    await reader.close()
    assert await gone(worker)


async def test_a_worker_that_died_is_replaced_on_the_next_read(database):
    reader = Reader(database)
    try:
        first = await reader.read(process_id)
        os.kill(first, signal.SIGKILL)
        assert await gone(first)
        second = await reader.read(process_id)
        assert second != first and running(second)
    finally:
        await reader.close()


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(") ", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


async def test_the_worker_dies_with_a_sigkilled_daemon():
    async with launch_serve() as served:
        assert children(served.pid) == []  # not started before the dashboard is opened
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{served.url}/_meterfox/api/overview") as response:
                assert response.status == 200
                assert (await response.json())["month"]["requests"] == 0
        [worker] = children(served.pid)
        served.send_signal(signal.SIGKILL)
        assert await gone(worker), "the dashboard's read process outlived its daemon"


async def test_stopping_the_daemon_stops_the_worker():
    async with launch_serve() as served:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{served.url}/_meterfox/api/keys") as response:
                assert response.status == 200
        [worker] = children(served.pid)
        assert await served.stop() == 0
        assert await gone(worker)


def policy(conn: sqlite3.Connection) -> int:
    return os.sched_getscheduler(0)


async def test_the_worker_runs_only_on_cpu_time_nothing_else_wants(database):
    reader = Reader(database)
    try:
        assert os.sched_getscheduler(0) != os.SCHED_IDLE
        assert await reader.read(policy) == os.SCHED_IDLE
    finally:
        await reader.close()


async def test_reads_go_to_the_ledger_the_reader_is_given(database, pg_url):
    """A team's ledger: the worker reads PostgreSQL (told so in its first message, never on its
    command line), while the local file stays empty; Live's and the report's reads work there."""
    ledger = PostgresLedger(pg_url)
    ledger.migrate()
    conn = ledger.connect()
    with ledger.transaction(conn):
        insert_records(conn, [(req.record(), req.price()) for req in LEDGER_REQUESTS])
    conn.close()
    reader = Reader(database, ledger=ledger)
    try:
        assert await reader.read(count_requests) == len(LEDGER_REQUESTS)
        worker = reader.pid
        with open(f"/proc/{worker}/cmdline", "rb") as cmdline:
            assert b"postgresql" not in cmdline.read()
        cursor, event = await reader.read(partial(new_event, cursor=Cursor(0), now=0.0))
        assert event is not None and '"provider": "groq"' in event and cursor.low > 0
        assert (await reader.read(partial(new_event, cursor=cursor, now=1.0)))[1] is None
        text = await reader.read(partial(report_text, **REPORT_ARGS))
        assert '"requests": 2' in text[1]
    finally:
        await reader.close()
    local = connect(database)
    try:
        assert count_requests(local) == 0
    finally:
        local.close()


async def test_key_changes_from_the_page_go_to_the_ledger_every_daemon_reads(database, pg_url):
    """Revoke and create in the dashboard act on the team's proxy keys (PostgreSQL), as
    `meterfox keys` does, never on the local file."""
    from meterfox_cli.keys.proxy_keys import KeySpec, create_key, list_keys, revoke_key

    ledger = PostgresLedger(pg_url)
    ledger.migrate()
    reader = Reader(database, ledger=ledger)
    try:
        await reader.write(lambda conn: create_key(conn, KeySpec("team-app")))
        await reader.write(lambda conn: revoke_key(conn, "team-app"))
    finally:
        await reader.close()
    conn = ledger.connect()
    try:
        assert [(k.key.name, k.status) for k in list_keys(conn)] == [("team-app", "revoked")]
    finally:
        conn.close()
    local = connect(database)
    try:
        assert list_keys(local) == []
    finally:
        local.close()
