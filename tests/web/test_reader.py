"""The dashboard's read process (web/reader.py, web/worker.py): reads run in a process of their
own, which the daemon starts and warms in the background once it listens (the Reader alone:
on the first read); it stops with the app, a new one replaces one that died, and it never
outlives the daemon, not even a SIGKILLed one."""

from __future__ import annotations

import asyncio
import contextlib
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
from meterfox_cli.web.guard import access_for
from meterfox_cli.web.live import new_event
from meterfox_cli.web.mount import DASHBOARD_LOAD, dashboard_mount
from meterfox_cli.web.overview import overview, providers_json, tags_json
from meterfox_cli.web.reader import Reader, WorkerGone
from meterfox_cli.web.shapes import keys_json, report_json, report_text
from meterfox_cli.web.worker import json_text
from tests.cli.conftest import launch_serve
from tests.conftest import start_proxy
from tests.fakes.records import Req, at
from tests.web.worker_probe import count_forever, count_to, web_server_loaded

LEDGER_REQUESTS = (
    Req(at("2026-11-03 10:00"), provider="openai", model="gpt-4o"),
    Req(at("2026-11-03 11:00"), provider="groq", model="llama", cost_nano=5),
)
WARM_READS = (
    partial(json_text, overview),
    partial(json_text, providers_json),
    partial(json_text, tags_json),
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


async def test_a_streamed_read_yields_as_the_worker_does_and_ends_with_it(database):
    """The keeper's way (web/keeper.py): a query that yields, each item sent as it comes, on a
    thread of its own beside the ordinary reads; it ends when it ends, or when its worker dies."""
    reader = Reader(database)
    try:
        assert [n async for n in reader.stream(partial(count_to, last=3))] == [1, 2, 3]
        seen = []
        with pytest.raises(WorkerGone):
            async for n in reader.stream(count_forever):
                seen.append(n)
                if n == 2:
                    assert await reader.read(count_requests) == 0  # reads go on meanwhile
                    os.kill(reader.pid, signal.SIGKILL)
        assert seen[:2] == [1, 2]
    finally:
        await reader.close()


def children(pid: int) -> list[int]:
    """`pid`'s dashboard read processes (not its record writer's, store/writer_process.py)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(") ", 1)[1].split()[1]) == pid and b"writer_process" not in command:
                found.append(int(entry.name))
    return found


async def test_the_worker_dies_with_a_sigkilled_daemon():
    async with launch_serve() as served:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{served.url}/_meterfox/api/overview") as response:
                assert response.status == 200
                assert (await response.json())["month"]["requests"] == 0
        [worker] = children(served.pid)
        served.send_signal(signal.SIGKILL)
        assert await gone(worker), "the dashboard's read process outlived its daemon"


def open_files(pid: int) -> set[Path]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            found.add(Path(os.readlink(fd)))
    return found


async def eventually(check, within: float = 15.0):
    for _ in range(int(within / 0.05)):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.05)
    return check()


async def test_serve_starts_and_warms_the_worker_before_any_page_asks(database):
    """The first page load must not wait for a new Python process: the daemon starts its read
    worker on its own, and the worker has read the ledger (its connection open) by the time
    a page comes, with no dashboard request made."""
    async with launch_serve() as served:
        workers = await eventually(lambda: children(served.pid))
        assert len(workers) == 1, "serve did not start its dashboard worker on its own"
        [worker] = workers
        # SCHED_IDLE: on a machine busy with other work the warm-up waits for an idle core
        assert await eventually(lambda: database in open_files(worker), 60.0), "not warmed"
        assert os.sched_getscheduler(worker) == os.SCHED_IDLE  # still out of the proxy's way


async def test_no_worker_starts_while_the_dashboard_is_off(upstream_server, database):
    """Beyond loopback without a login the dashboard is off: nothing to warm, no process."""
    fake, server = upstream_server
    started = []
    try:
        for access in (access_for(False, None), access_for(True, None)):
            _, proxy_server = await start_proxy(
                fake, server, mounts=(dashboard_mount(database, access),)
            )
            started.append(proxy_server)
        off, on = (proxy_server.app[DASHBOARD_LOAD] for proxy_server in started)
        # the same app with the dashboard on: loaded and its worker started, unasked
        assert await eventually(lambda: on.dashboard is not None and on.dashboard.reader.pid)
        assert off.dashboard is None  # off: not even loaded
    finally:
        for proxy_server in started:
            await proxy_server.close()


async def test_stopping_the_daemon_stops_the_worker():
    async with launch_serve() as served:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{served.url}/_meterfox/api/keys") as response:
                assert response.status == 200
        [worker] = children(served.pid)
        assert await served.stop() == 0
        assert await gone(worker)


async def test_the_pages_reads_do_not_load_the_web_server_into_the_worker(database):
    """Unpickling a read imports the module its function lives in: the Overview's, Keys' and
    Explore's reads live beside their queries, so the worker never imports aiohttp (0.4 s of
    CPU, on a cold page load's path)."""
    reader = Reader(database)
    try:
        for read in (
            *WARM_READS,
            partial(json_text, keys_json),
            partial(report_text, **REPORT_ARGS),
        ):
            await reader.read(read)
        assert await reader.read(web_server_loaded) == []
    finally:
        await reader.close()


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
