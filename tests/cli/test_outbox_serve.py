"""Nothing lost when the database is away: a real `meterfox serve` on a PostgreSQL ledger whose
server (a real one, of this module's own) is stopped and started under it. Every request that
got a response is in the ledger exactly once afterwards: PostgreSQL stopped mid-load, the
daemon SIGKILLed or SIGTERMed while it is away (store/outbox.py, docs/team.md)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator

import aiohttp
import psycopg
import pytest

from meterfox_cli.paths import resolve_paths
from meterfox_cli.proxy.headers import REQUEST_ID_HEADER
from meterfox_cli.store.outbox import waiting_in
from meterfox_cli.store.postgres import PostgresLedger
from tests.cli.conftest import Served, launch_serve, run_meterfox
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import CASES
from tests.pg import PgServer

URL_ENV = "METERFOX_DATABASE_URL"
LOAD_LIMIT = 20_000  # requests, at most, in any one load (a quiet machine sends ~1,500 while
# PostgreSQL stops)
LOAD_TIMEOUT_S = 90.0
WAIT_S = 30.0


@pytest.fixture
def ledger_url(pg_restartable: PgServer) -> Iterator[str]:
    """A migrated database of its own on the module's server (started, should an earlier
    test have failed with it stopped)."""
    if not (pg_restartable.data_dir / "postmaster.pid").exists():
        pg_restartable.start()
    url = pg_restartable.create_database()
    PostgresLedger(url).migrate()
    yield url
    if not (pg_restartable.data_dir / "postmaster.pid").exists():
        pg_restartable.start()


class Load:
    """Chat requests through a daemon from a few concurrent clients, until `stop` (or its
    limits): the record id of each that got a response is in `answered`."""

    def __init__(self, served: Served, clients: int = 4) -> None:
        self.answered: list[str] = []
        self.sent = 0
        self._base = served.url
        self._stopping = asyncio.Event()
        self._clients = clients
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Load:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        assert self._task is not None
        await self._task

    async def until_answered(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while len(self.answered) < count:
            assert self._task is not None and not self._task.done(), "the load ended early"
            assert time.monotonic() < deadline, f"{len(self.answered)} answered, not {count}"
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        async with aiohttp.ClientSession() as session:

            async def client() -> None:
                while not self._stopping.is_set() and self.sent < LOAD_LIMIT:
                    assert time.monotonic() < deadline, "the load ran past its time"
                    self.sent += 1
                    await self._one(session)

            await asyncio.gather(*(client() for _ in range(self._clients)))

    async def _one(self, session: aiohttp.ClientSession) -> None:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        with contextlib.suppress(aiohttp.ClientError):  # a daemon killed mid-request
            async with session.post(self._base + "/openai/v1/chat/completions", json=body) as r:
                await r.read()
                if r.status == 200:
                    self.answered.append(r.headers[REQUEST_ID_HEADER])


async def health_until(served: Served, wanted, timeout: float = WAIT_S) -> dict:
    """The daemon's health, polled until `wanted(health)`."""
    deadline = time.monotonic() + timeout
    while True:
        health = await served.health()
        if wanted(health):
            return health
        assert time.monotonic() < deadline, f"health never as wanted: {health}"
        await asyncio.sleep(0.05)


def drained(health: dict) -> bool:
    return health["status"] == "ok" and health["records_waiting"] == 0


def in_outbox(health: dict) -> bool:
    """Every answered record has left memory for the outbox (what a SIGKILL cannot take)."""
    return health["records_queued"] == 0


async def start_again_and_drain(pg: PgServer, server, env: dict) -> None:
    """PostgreSQL back, then a new daemon that drains what the last one left, with no
    request: its start does it."""
    await asyncio.to_thread(pg.start)
    async with launch_serve(upstreams={"openai": server}, env=env) as again:
        await health_until(again, drained)
        assert await again.stop() == 0, again.stderr[-2000:]


def assert_each_once(url: str, answered: list[str], sent: int) -> None:
    """Every answered request is in the ledger once (its rollup counts it once); nothing is
    there that was not sent."""
    with psycopg.connect(url) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM requests")]
        (rolled_up,) = conn.execute("SELECT SUM(requests) FROM request_rollup").fetchone()
    assert len(answered) == len(set(answered))
    assert not set(answered) - set(ids), "an answered request is missing from the ledger"
    assert len(ids) <= sent and rolled_up == len(ids)


async def test_postgresql_stopped_mid_load_and_started_again_loses_nothing(
    upstream_server, ledger_url, pg_restartable: PgServer
) -> None:
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    env = {URL_ENV: ledger_url}
    async with launch_serve(upstreams={"openai": server}, env=env) as served:
        async with Load(served) as load:
            await load.until_answered(60)
            await asyncio.to_thread(pg_restartable.stop)
            away = len(load.answered)
            await health_until(served, lambda h: h["status"] == "degraded")
            await load.until_answered(away + 100)  # the proxy keeps answering meanwhile
            health = await served.health()
            assert health["status"] == "degraded" and health["records_waiting"] > 0
            assert health["store_error"]
            await asyncio.to_thread(pg_restartable.start)
            await load.until_answered(len(load.answered) + 60)
        health = await health_until(served, drained)
        assert health["records_written"] == len(load.answered) == load.sent
        assert health["records_dropped"] == 0
        assert await served.stop() == 0, served.stderr[-2000:]
    assert "cannot write records to the ledger" in served.stderr
    assert "draining the outbox after" in served.stderr
    assert_each_once(ledger_url, load.answered, load.sent)


async def test_sigkill_while_postgresql_is_away_then_a_restart_drains_the_outbox(
    upstream_server, ledger_url, pg_restartable: PgServer
) -> None:
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    env = {URL_ENV: ledger_url}
    outbox = resolve_paths().outbox
    async with launch_serve(upstreams={"openai": server}, env=env) as served:
        async with Load(served) as load:
            await load.until_answered(40)
            await asyncio.to_thread(pg_restartable.stop)
            await load.until_answered(len(load.answered) + 80)
        await health_until(served, in_outbox)
        served.send_signal(signal.SIGKILL)
        assert await served.wait() == -signal.SIGKILL
    assert waiting_in(outbox) > 0  # left behind by the killed daemon
    await start_again_and_drain(pg_restartable, server, env)
    assert waiting_in(outbox) == 0
    assert_each_once(ledger_url, load.answered, load.sent)


async def test_sigterm_while_postgresql_is_away_keeps_the_records_for_the_next_start(
    upstream_server, ledger_url, pg_restartable: PgServer
) -> None:
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    env = {URL_ENV: ledger_url}
    outbox = resolve_paths().outbox
    async with launch_serve(upstreams={"openai": server}, env=env) as served:
        await asyncio.to_thread(pg_restartable.stop)
        async with Load(served, clients=2) as load:
            await load.until_answered(30)
        started = time.monotonic()
        assert await served.stop() == 0, served.stderr[-2000:]
        assert time.monotonic() - started < 10  # no wait for the ledger: the records are safe
    assert waiting_in(outbox) == len(load.answered) == load.sent
    doctor = await run_meterfox("doctor", env=env)
    assert f"{load.sent} records wait in {outbox} for the ledger" in doctor.stdout

    await start_again_and_drain(pg_restartable, server, env)
    assert_each_once(ledger_url, load.answered, load.sent)
    doctor = await run_meterfox("doctor", env=env)
    assert f"{outbox}: empty" in doctor.stdout


async def test_serve_starts_while_postgresql_is_away_and_drains_when_it_is_back(
    upstream_server, ledger_url, pg_restartable: PgServer
) -> None:
    """A laptop offline at start: `serve` forwards (the caller's own key), records wait in
    the outbox, health says degraded with the count; a proxy key is refused with a 503 in the
    caller's format until the ledger (where keys live) answers; then each record lands once."""
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    env = {URL_ENV: ledger_url}
    await asyncio.to_thread(pg_restartable.stop)
    async with launch_serve(upstreams={"openai": server}, env=env) as served:
        health = await served.health()  # before any record: the keys alone make it degraded
        assert health["status"] == "degraded", health
        assert "ledger that holds its proxy keys" in health["store_error"]
        async with Load(served, clients=2) as load:
            await load.until_answered(20)
        health = await health_until(served, lambda h: h["records_waiting"] == load.sent)
        assert health["status"] == "degraded" and health["store_error"]
        async with aiohttp.ClientSession() as session:
            keyed = await session.post(
                served.url + "/openai/v1/chat/completions",
                json={"model": "gpt-4o", "messages": []},
                headers={"Authorization": "Bearer mf-" + "x" * 43},
            )
            refusal = await keyed.json()
        assert keyed.status == 503, refusal
        assert "ledger" in refusal["error"]["message"]
        await asyncio.to_thread(pg_restartable.start)
        health = await health_until(served, drained)
        assert health["records_written"] == len(load.answered) == load.sent
        assert await served.stop() == 0, served.stderr[-2000:]
    assert "serving meanwhile" in served.stderr
    assert_each_once(ledger_url, load.answered, load.sent)
    with psycopg.connect(ledger_url) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == load.sent


async def test_a_ledger_found_behind_when_it_comes_back_is_not_written(
    upstream_server, pg_restartable: PgServer
) -> None:
    """Started with the database away, the schema check waits for the first connection: a
    ledger behind this version is then refused in health and the log, and the outbox kept."""
    if not (pg_restartable.data_dir / "postmaster.pid").exists():
        pg_restartable.start()
    url = pg_restartable.create_database()  # never migrated: behind
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    await asyncio.to_thread(pg_restartable.stop)
    try:
        async with launch_serve(upstreams={"openai": server}, env={URL_ENV: url}) as served:
            async with Load(served, clients=1) as load:
                await load.until_answered(5)
            await asyncio.to_thread(pg_restartable.start)
            health = await health_until(
                served, lambda h: "meterfox db migrate" in (h["store_error"] or "")
            )
            assert health["status"] == "degraded" and health["records_waiting"] == load.sent
            assert await served.stop() == 0, served.stderr[-2000:]
        assert "run `meterfox db migrate`" in served.stderr
        assert waiting_in(resolve_paths().outbox) == load.sent
    finally:
        if not (pg_restartable.data_dir / "postmaster.pid").exists():
            pg_restartable.start()
