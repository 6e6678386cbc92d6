"""Admission, in-process: what a budgeted key reserves and gives back, what an unknown key
costs the database, and what a refusal leaves behind (a count in health, never a row).

The real-process races (40 concurrent requests on one budget, `keys create` while `serve`
runs) are in tests/cli/test_serve_budget.py.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from meterfox_cli.keys.authorizer import FORCED_REFRESH_MIN_S, KeyAuthorizer
from meterfox_cli.keys.budget import Budget, Period
from meterfox_cli.keys.provider_keys import ProviderKeys, choose_store, env_passphrase
from meterfox_cli.keys.proxy_keys import KeySpec, create_key, revoke_key, set_budget
from meterfox_cli.paths import resolve_paths
from meterfox_cli.store.db import connect
from tests.conftest import Proxy, read_records, start_proxy
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import chat

OPENAI_KEY = "sk-proj-TESTONLY-admission"
CHAT_PATH = "/openai/v1/chat/completions"
ASK = {"model": "gpt-4o-mini", "max_tokens": 1000, "messages": [{"role": "user", "content": "x"}]}
ONE_CENT = 10_000_000  # nano-USD: ASK's worst case is ~$0.0006, so a cent fits it 16 times


@dataclass
class Admitting:
    proxy: Proxy
    authorizer: KeyAuthorizer
    conn: object
    statements: list[str]  # every SQL statement the key watcher's connection ran

    def mint(self, name: str, **rules) -> str:
        return create_key(self.conn, KeySpec(name, **rules)).secret

    async def post(self, secret: str, body: object = ASK, path: str = CHAT_PATH) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.proxy.url + path,
                data=body if isinstance(body, bytes) else json.dumps(body),
                headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
            ) as response,
        ):
            await response.read()
            return response.status

    async def health(self) -> dict:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.proxy.url + "/_meterfox/health") as response,
        ):
            return await response.json()


@pytest.fixture
async def admitting(upstream_server, plaintext_keyring) -> AsyncIterator[Admitting]:
    fake, server = upstream_server
    fake.reply = Reply(json_body=chat("gpt-4o-mini", {"prompt_tokens": 8, "completion_tokens": 9}))
    paths = resolve_paths()
    paths.ensure()
    conn = connect(paths.database)
    choice = choose_store(paths.data_dir, env_passphrase())
    ProviderKeys(conn, choice).set("openai", OPENAI_KEY)
    statements: list[str] = []
    authorizer = KeyAuthorizer(
        paths.database, choice, on_connect=lambda c: c.set_trace_callback(statements.append)
    )
    proxy, proxy_server = await start_proxy(fake, server, authorizer=authorizer)
    yield Admitting(proxy, authorizer, conn, statements)
    await proxy_server.close()
    conn.close()


# --- finding 10: refusals are counted, not written --------------------------------------------


async def test_refusals_are_counted_in_health_and_write_no_rows(admitting):
    capped = admitting.mint("capped", budget=Budget(1, Period.DAY))  # no request fits 1 nano-USD
    gone = admitting.mint("gone")
    revoke_key(admitting.conn, "gone")
    statuses = []
    for _ in range(60):
        statuses.append(await admitting.post("mf-" + secrets.token_urlsafe(32)))
        statuses.append(await admitting.post(gone))
        statuses.append(await admitting.post(capped))
    assert sorted(set(statuses)) == [401, 429]
    assert admitting.proxy.upstream.received == []
    health = await admitting.health()
    assert health["refused"] == {
        "invalid_proxy_key": 60,
        "proxy_key_revoked": 60,
        "budget_exceeded": 60,
    }
    await asyncio.sleep(0.1)  # two writer batch intervals: a row would be committed by now
    assert admitting.proxy.writer.written == 0 and read_records(admitting.proxy.db_path) == []


# --- finding 1: reservations, settled or given back -------------------------------------------


async def test_an_unpriced_request_on_a_budgeted_key_is_refused_unless_the_key_allows_it(
    admitting,
):
    unknown_model = {**ASK, "model": "a-model-no-price-list-knows"}
    strict = admitting.mint("strict", budget=Budget(ONE_CENT, Period.DAY))
    assert await admitting.post(strict, unknown_model) == 403
    assert await admitting.post(strict, b"not json at all") == 403  # no model, nothing to price
    assert admitting.proxy.upstream.received == []
    assert (await admitting.health())["refused"] == {"unpriced_request": 2}
    lenient = admitting.mint("lenient", budget=Budget(ONE_CENT, Period.DAY), allow_unpriced=True)
    assert await admitting.post(lenient, unknown_model) == 200
    unbudgeted = admitting.mint("free")
    assert await admitting.post(unbudgeted, unknown_model) == 200
    assert len(admitting.proxy.upstream.received) == 2


async def test_a_request_whose_worst_case_passes_the_budget_is_refused_up_front(admitting):
    secret = admitting.mint("small", budget=Budget(ONE_CENT, Period.DAY))
    huge = {**ASK, "max_tokens": 1_000_000}  # $0.60 of output at gpt-4o-mini rates
    assert await admitting.post(secret, huge) == 429
    assert await admitting.post(secret, ASK) == 200


async def test_a_failed_or_abandoned_request_gives_its_reservation_back(admitting):
    """A budget that fits one request: while it is in flight a second is refused; once it
    fails (upstream unreachable) or its client hangs up, the next one is admitted."""
    fake = admitting.proxy.upstream
    secret = admitting.mint("one-at-a-time", budget=Budget(900_000, Period.DAY))  # ~1.5 ASKs
    fake.reply = Reply(json_body=chat("gpt-4o-mini", {}), stall_s=30)
    async with aiohttp.ClientSession() as session:
        first = asyncio.ensure_future(
            session.post(
                admitting.proxy.url + CHAT_PATH,
                json=ASK,
                headers={"Authorization": f"Bearer {secret}"},
            )
        )
        while not fake.received:
            await asyncio.sleep(0.01)
        assert (await admitting.health())["keys"]["reserved_requests"] == 1
        assert await admitting.post(secret) == 429  # the first one's reservation holds
        first.cancel()  # the client hangs up
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(fake.cancelled.wait(), 5)
    deadline = time.monotonic() + 2
    while (await admitting.health())["keys"]["reserved_requests"]:
        assert time.monotonic() < deadline, "the abandoned request kept its reservation"
        await asyncio.sleep(0.01)
    fake.reply = Reply(status=503, json_body={"error": {"message": "overloaded"}})
    assert await admitting.post(secret) == 503  # billed nothing: gives its reservation back
    fake.reply = Reply(json_body=chat("gpt-4o-mini", {"prompt_tokens": 8, "completion_tokens": 9}))
    assert await admitting.post(secret) == 200
    assert (await admitting.health())["keys"]["reserved_requests"] == 0


async def test_a_settled_cost_counts_at_once_and_exactly_once(admitting):
    """Each response's real cost counts from the moment it ends (before its record is
    committed: sequential requests would all pass otherwise), and counts once after the key
    watcher has read the record too."""
    each = 8 * 150 + 1000 * 600  # nano-USD: 8 input, 1000 output tokens of gpt-4o-mini
    secret = admitting.mint("exact", budget=Budget(3_000_000, Period.DAY))
    usage = {"prompt_tokens": 8, "completion_tokens": 1000}
    admitting.proxy.upstream.reply = Reply(json_body=chat("gpt-4o-mini", usage))
    statuses = [await admitting.post(secret) for _ in range(6)]
    assert statuses == [200] * 4 + [429] * 2  # a fifth's worst case would pass $0.003
    await admitting.proxy.records(4)
    await asyncio.sleep(0.6)  # two watcher polls: the records are in its spend now
    assert admitting.authorizer.snapshot.spend["exact"] == 4 * each
    assert (await admitting.health())["keys"]["uncounted_costs"] == 0
    assert await admitting.post(secret) == 429  # not forgotten
    set_budget(admitting.conn, "exact", Budget(5 * each + 10_000, Period.DAY))
    await asyncio.sleep(0.6)
    assert await admitting.post(secret) == 200  # not counted twice: room for exactly one more
    assert await admitting.post(secret) == 429


# --- finding 3: unknown keys --------------------------------------------------------------------


async def test_a_new_key_is_accepted_before_the_next_poll(admitting):
    for i in range(5):
        secret = admitting.mint(f"new{i}")  # straight into the database, no wait
        assert await admitting.post(secret) == 200


async def test_10000_random_proxy_keys_cost_a_bounded_number_of_database_reads(admitting):
    """Concurrent misses share one refresh, and refreshes forced by misses are at least
    FORCED_REFRESH_MIN_S apart: the reads are bounded by time, not by the requests."""
    statuses: list[int] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in range(50):
            secret = "mf-" + secrets.token_urlsafe(32)
            async with session.post(
                admitting.proxy.url + CHAT_PATH,
                json=ASK,
                headers={"Authorization": f"Bearer {secret}"},
            ) as response:
                await response.read()
                statuses.append(response.status)

    before = len(admitting.statements)
    forced_before = (await admitting.health())["keys"]["forced_refreshes"]
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(200)))
    elapsed = time.monotonic() - started
    reads = len(admitting.statements) - before
    forced = (await admitting.health())["keys"]["forced_refreshes"] - forced_before
    assert statuses == [401] * 10_000
    assert admitting.proxy.upstream.received == []
    refreshes = elapsed / FORCED_REFRESH_MIN_S + 2  # forced and periodic, all spaced apart
    assert forced <= refreshes
    assert reads <= 4 * refreshes, f"{reads} statements for 10,000 misses in {elapsed:.1f} s"
    print(f"10,000 random keys: {elapsed:.1f} s, {forced} forced refreshes, {reads} statements")


async def test_a_repeated_unknown_key_is_refused_from_a_cache_cleared_by_any_key_change(
    admitting,
):
    bogus = "mf-" + secrets.token_urlsafe(32)
    assert await admitting.post(bogus) == 401
    forced = (await admitting.health())["keys"]["forced_refreshes"]
    for _ in range(200):
        assert await admitting.post(bogus) == 401
    health = await admitting.health()
    assert health["keys"]["forced_refreshes"] == forced  # answered from the negative cache
    assert health["keys"]["unknown_keys_cached"] == 1
    admitting.mint("any-change")
    deadline = time.monotonic() + 1
    while (await admitting.health())["keys"]["unknown_keys_cached"]:
        assert time.monotonic() < deadline, "a key change did not clear the negative cache"
        await asyncio.sleep(0.02)
