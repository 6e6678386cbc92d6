"""The Overview kept ready (web/keeper.py): a real `meterfox serve` answers a cold page's three
Overview reads from what its worker keeps, with that worker stopped (no round trip, no worker
CPU), and what it serves is the fresh computation to the nano-dollar; a committed record is in
it within the 5 s bound, an answer the worker cannot confirm is not served past it, and a key
created or revoked in the page shows at once. Then the keeper's own rules over a real SQLite
ledger, and the daemon side's with its clock in hand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator

import aiohttp
import pytest

from bench.seed_db import seed
from meterfox_cli.keys.budget import parse_budget
from meterfox_cli.keys.proxy_keys import KeySpec, create_key
from meterfox_cli.paths import resolve_paths
from meterfox_cli.store.db import connect
from meterfox_cli.store.postgres import PostgresLedger
from meterfox_cli.store.rows import insert_records
from meterfox_cli.web.guard import TOKEN_HEADER
from meterfox_cli.web.keeper import (
    OVERVIEW_FRESH_S,
    Kept,
    KeptAnswers,
    Part,
    json_bytes,
    keep,
    ledger_mark,
)
from meterfox_cli.web.overview import overview, providers_json, tags_json
from tests.cli.conftest import (
    launch_serve,
    run_meterfox,
    serve_workers,  # noqa: F401  (the fixture, --workers 1 and 2)
)
from tests.fakes.records import Req, insert, record_to
from tests.web.test_reader import children, eventually

PARTS = {"overview": "api/overview?by=provider", "providers": "api/overview/providers"}
PARTS["tags"] = "api/overview/tags"
WAIT_S = 2.0  # a kept answer comes at once; a read from a stopped worker never does


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process frozen (SIGSTOP) for the block: it runs nothing, it answers nothing."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def get(session: aiohttp.ClientSession, url: str, timeout: float = 60.0) -> dict:
    async with asyncio.timeout(timeout):
        async with session.get(url) as response:
            assert response.status == 200, await response.text()
            return await response.json()


async def read_worker(served) -> int:
    workers = await eventually(lambda: children(served.pid), 30.0)
    assert len(workers) == 1, workers
    return workers[0]


async def kept_answers(served, session: aiohttp.ClientSession, worker: int) -> dict[str, dict]:
    """The three answers, asked for while the read worker is stopped: they can only come from
    what the daemon keeps (tried until they do: the keeper's first answer takes a moment, more
    on a machine busy with other work, as the worker is SCHED_IDLE)."""
    for _ in range(60):
        with stopped(worker):
            try:
                return {
                    part: await get(session, f"{served.url}/_meterfox/{path}", WAIT_S)
                    for part, path in PARTS.items()
                }
            except TimeoutError:
                pass
        await asyncio.sleep(0.5)
    raise AssertionError("the daemon never answered the Overview without its worker")


async def shown_in_time(
    session: aiohttp.ClientSession, url: str, shown: Callable[[dict], bool], since: float
) -> float:
    """Ask `url` until `shown(answer)`: every answer asked for OVERVIEW_FRESH_S or more after
    `since` (a time.monotonic) must show it. How long after `since` it first did."""
    while True:
        asked = time.monotonic()
        if shown(await get(session, url)):
            return asked - since
        assert asked - since < OVERVIEW_FRESH_S, f"not shown {asked - since:.2f} s after"
        await asyncio.sleep(0.1)


def created_database():
    """This test's paths, with an empty migrated database."""
    paths = resolve_paths()
    paths.ensure()
    connect(paths.database).close()
    return paths


async def test_a_cold_overview_needs_no_worker_and_is_the_fresh_computation():
    paths = resolve_paths()
    paths.ensure()
    seed(paths.database, 3000, 45, 7, time.time())
    conn = connect(paths.database)
    try:
        create_key(conn, KeySpec("web", budget=parse_budget("5/day")))
        async with launch_serve() as served:
            async with aiohttp.ClientSession() as session:
                answers = await kept_answers(served, session, await read_worker(served))
            now = answers["overview"]["now"]
            fresh = {
                "overview": overview(conn, now=now),
                "providers": providers_json(conn),
                "tags": tags_json(conn),
            }
    finally:
        conn.close()
    assert answers == json.loads(json.dumps(fresh))  # every figure, to the nano-dollar
    assert answers["overview"]["spend"]["month"]["nanousd"] > 0
    assert [k["name"] for k in answers["overview"]["keys"]] == ["web"]
    assert answers["providers"]["providers"] and answers["tags"]["tags"]


@pytest.mark.usefixtures("serve_workers")
async def test_a_committed_record_is_in_the_overview_within_five_seconds():
    """With --workers 2 each worker keeps its own answer; a page lands on either."""
    paths = created_database()
    async with launch_serve() as served, aiohttp.ClientSession() as session:
        url = f"{served.url}/_meterfox/api/overview"
        assert (await get(session, url))["month"]["requests"] == 0
        await asyncio.sleep(1.0)  # the keepers' first answers are in by now, or soon
        for n in (1, 2):
            record_to(paths.database, Req(time.time(), cost_nano=7))
            since = time.monotonic()
            await shown_in_time(session, url, lambda a, n=n: a["month"]["requests"] == n, since)
            providers = f"{served.url}/_meterfox/api/overview/providers"
            count = lambda a, n=n: sum(p["requests"] for p in a["providers"]) == n  # noqa: E731
            await shown_in_time(session, providers, count, since)


async def test_an_answer_the_worker_cannot_confirm_is_not_served_past_five_seconds():
    created_database()
    async with launch_serve() as served, aiohttp.ClientSession() as session:
        worker = await read_worker(served)
        await kept_answers(served, session, worker)
        url = f"{served.url}/_meterfox/api/overview"
        with stopped(worker):
            await asyncio.sleep(OVERVIEW_FRESH_S + 0.5)
            with pytest.raises(TimeoutError):  # the page waits for a fresh read instead
                await get(session, url, 1.5)
            tags = await get(session, f"{served.url}/_meterfox/api/overview/tags", WAIT_S)
            assert tags == {"tags": []}  # kept for a minute, as top tags always were
        assert (await get(session, url))["month"]["requests"] == 0  # the worker is back


async def test_a_key_created_or_revoked_in_the_page_is_in_the_overview_at_once():
    created_database()
    async with launch_serve() as served, aiohttp.ClientSession() as session:
        base = f"{served.url}/_meterfox/api/"
        await kept_answers(served, session, await read_worker(served))
        token = (await get(session, base + "session"))["csrf_token"]
        headers = {TOKEN_HEADER: token, "Origin": served.url}

        async def budgets() -> list[tuple[str, str]]:
            return [
                (k["name"], k["status"]) for k in (await get(session, base + "overview"))["keys"]
            ]

        assert await budgets() == []
        body = {"name": "web", "budget": "5/day"}
        async with session.post(base + "keys", json=body, headers=headers) as response:
            assert response.status == 201
        assert await budgets() == [("web", "active")]
        async with session.post(base + "keys/web/revoke", headers=headers, json={}) as response:
            assert response.status == 200
        assert await budgets() == [("web", "revoked")]
        # Made elsewhere (the CLI, another daemon): within the keeper's next look at the ledger
        done = await run_meterfox("keys", "create", "cli", "--budget", "1/day")
        assert done.returncode == 0, done.stderr
        since = time.monotonic()
        url = base + "overview"
        names = lambda a: "cli" in {k["name"] for k in a["keys"]}  # noqa: E731
        await shown_in_time(session, url, names, since)


# --- the keeper's rules, over a real SQLite ledger ---------------------------------------------


def test_the_keeper_reads_a_part_again_when_what_it_shows_moved(conn):
    """A record re-reads what is due (refresh_s passed) and leaves the rest unconfirmed; a key
    change re-reads the part holding keys at once, whatever its refresh_s; nothing changed,
    nothing is read, and what was read is confirmed current."""
    parts = (
        Part("overview", overview, 3600.0, OVERVIEW_FRESH_S, holds_keys=True),
        Part("providers", providers_json, 0.0, OVERVIEW_FRESH_S),
    )
    looks = keep(conn, parts, poll_s=0.0)
    first = next(looks)
    assert set(first.bodies) == set(first.current_at) == {"overview", "providers"}
    quiet = next(looks)
    assert quiet.bodies == {} and set(quiet.current_at) == {"overview", "providers"}
    assert min(quiet.current_at.values()) > max(first.current_at.values())
    insert(conn, Req(time.time(), provider="groq", cost_nano=11))
    recorded = next(looks)
    assert set(recorded.bodies) == set(recorded.current_at) == {"providers"}
    assert [p["name"] for p in json.loads(recorded.bodies["providers"])["providers"]] == ["groq"]
    create_key(conn, KeySpec("web", budget=parse_budget("5/day")))
    keyed = next(looks)
    assert set(keyed.bodies) == {"overview"} and set(keyed.current_at) == {"overview", "providers"}
    shown = json.loads(keyed.bodies["overview"])
    assert [k["name"] for k in shown["keys"]] == ["web"]
    assert shown["spend"]["month"]["nanousd"] == 11  # and the record it had not read yet


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_daemon_serves_a_part_only_while_it_is_known_current():
    clock = Clock()
    kept = KeptAnswers(clock=clock)
    assert kept.body("overview") is None  # before the first answer: read on demand
    kept.take(Kept({"overview": 1000.0, "tags": 1000.0}, {"overview": b"{1}", "tags": b"{t}"}))
    clock.now = 1000.0 + OVERVIEW_FRESH_S
    assert kept.body("overview") == b"{1}"
    kept.take(Kept({"tags": 1004.0}, {}))  # the ledger moved: the headline is not confirmed
    clock.now += 0.01
    assert kept.body("overview") is None and kept.body("tags") == b"{t}"
    kept.take(Kept({"overview": 1006.0}, {"overview": b"{2}"}))
    assert kept.body("overview") == b"{2}"
    clock.now = 1007.0
    kept.forget_keys()  # the page changed a key: nothing read before now is served
    kept.take(Kept({"overview": 1006.5, "tags": 1006.5}, {"overview": b"{old}"}))
    assert kept.body("overview") is None and kept.body("tags") == b"{t}"
    kept.take(Kept({"overview": 1007.2}, {}))  # a confirmation of a body it does not hold
    assert kept.body("overview") is None
    kept.take(Kept({"overview": 1007.3}, {"overview": b"{3}"}))
    assert kept.body("overview") == b"{3}"


def test_a_kept_body_is_the_same_json_with_no_angle_bracket_to_end_the_pages_block():
    value = {"tags": [{"tag": "feature", "rows": [{"name": "</script><!-- <b>"}]}]}
    body = json_bytes(value)
    assert b"<" not in body and json.loads(body) == value


def test_the_keeper_reads_a_team_ledger_the_same_way(pg_url):
    """On PostgreSQL (where a lower request id may commit after a higher one) the mark moves
    with every commit too, and the answers are the fresh reads."""
    ledger = PostgresLedger(pg_url)
    ledger.migrate()
    writer, conn = ledger.connect(), ledger.read_connection()
    try:
        looks = keep(conn, poll_s=0.0)
        first = next(looks)
        assert json.loads(first.bodies["overview"])["month"]["requests"] == 0
        request = Req(time.time(), cost_nano=13)
        with ledger.transaction(writer):
            insert_records(writer, [(request.record(), request.price())])
        mark = ledger_mark(conn)
        assert mark.newest > 0 and mark.recent == 1
        answered = next(kept for kept in looks if "overview" in kept.bodies)  # after its 2 s
        shown = json.loads(answered.bodies["overview"])
        assert shown == json.loads(json.dumps(overview(conn, now=shown["now"])))
        assert shown["spend"]["month"]["nanousd"] == 13
    finally:
        writer.close()
        conn.close()
