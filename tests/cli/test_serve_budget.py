"""A real `meterfox serve` under the two races a running daemon has with its key table.

A budget must hold when many requests on one key are in flight at once (each reserves its
worst case at admission), and a key made by `meterfox keys create` must work on the very next
request, not a poll later. Both run `serve` and `meterfox keys` as real processes against a
fake upstream on loopback.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import aiohttp
import pytest

from meterfox_cli.pricing.book import price_reading
from meterfox_cli.usage import Reading, Usage
from tests.cli.conftest import launch_serve, run_meterfox
from tests.cli.test_serve_keys import meterfox
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import chat

OPENAI_KEY = "sk-proj-TESTONLY-budget-3333"
MODEL = "gpt-4o-mini"
MAX_TOKENS = 1000
ASK = {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": "hi"}]}


def worst_case_nanousd() -> int:
    """What one ASK can cost at list price: every byte of its body an input token, and
    `max_tokens` of output (the proxy's own estimate is no larger than this)."""
    usage = Usage(input_tokens=len(json.dumps(ASK)), output_tokens=MAX_TOKENS)
    price = price_reading("openai", MODEL, time.time(), Reading(model=MODEL, usage=usage))
    assert price.cost_nanousd
    return price.cost_nanousd


async def post(session: aiohttp.ClientSession, url: str, secret: str) -> int:
    async with session.post(
        url + "/openai/v1/chat/completions",
        json=ASK,
        headers={"Authorization": f"Bearer {secret}"},
    ) as response:
        await response.read()
        return response.status


async def test_a_budget_that_fits_two_requests_lets_two_of_40_concurrent_ones_through(
    upstream_server, encrypted_file_store
):
    fake, server = upstream_server
    # Each response bills all of max_tokens; the upstream holds it 0.3 s, so all 40 are in
    # flight together (on main, all 40 reached the upstream and the budget was spent 20 times).
    usage = {"prompt_tokens": 8, "completion_tokens": MAX_TOKENS}
    fake.reply = Reply(json_body=chat(MODEL, usage), stall_s=0.3)
    budget = Decimal(worst_case_nanousd() * 5 // 2).scaleb(-9)  # fits 2, not 3
    await meterfox("keys", "set", "openai", input=OPENAI_KEY)
    secret = (await meterfox("keys", "create", "capped", "--budget", f"{budget}/day")).strip()
    async with launch_serve(upstreams={"openai": server}) as served:
        url = served.url
        async with aiohttp.ClientSession() as session:
            statuses = await asyncio.gather(*(post(session, url, secret) for _ in range(40)))
            deadline = time.monotonic() + 10
            while True:
                async with session.get(url + "/_meterfox/health") as response:
                    health = await response.json()
                if health["records_written"] >= statuses.count(200):
                    break
                assert time.monotonic() < deadline, "records were not written"
                await asyncio.sleep(0.05)
    assert len(fake.received) <= 2, f"{len(fake.received)} requests reached the upstream"
    assert sorted(statuses) == [200] * 2 + [429] * 38
    [listing] = json.loads(await meterfox("keys", "list", "--format", "json"))
    assert Decimal(listing["spend_usd"]) <= budget


@pytest.mark.usefixtures("serve_workers")
async def test_a_key_created_while_serve_runs_works_on_the_next_request_20_times(
    upstream_server, encrypted_file_store
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=chat(MODEL, {"prompt_tokens": 3, "completion_tokens": 1}))
    await meterfox("keys", "set", "openai", input=OPENAI_KEY)
    statuses = []
    async with launch_serve(upstreams={"openai": server}) as served:
        url = served.url
        async with aiohttp.ClientSession() as session:
            for i in range(20):
                secret = (await meterfox("keys", "create", f"app{i}")).strip()
                statuses.append(await post(session, url, secret))
    assert statuses == [200] * 20, f"refused: {[s for s in statuses if s != 200]}"
    assert len(fake.received) == 20


async def test_serve_with_workers_refuses_to_start_while_a_key_has_a_budget(
    encrypted_file_store,
):
    """Each worker reserves a request's worst case in its own memory: N workers could together
    pass a budget by their requests in flight. Until reservations are shared, `--workers`
    refuses budgeted keys in one line, as a PostgreSQL ledger does."""
    await meterfox("keys", "set", "openai", input=OPENAI_KEY)
    await meterfox("keys", "create", "capped", "--budget", "5/day")
    await meterfox("keys", "create", "free")
    served = await run_meterfox("serve", "--port", "0", "--workers", "2", timeout=30)
    assert served.returncode == 2
    (line,) = served.stderr.strip().splitlines()
    assert line == (
        "meterfox: with --workers, each worker would reserve spend alone, so those of capped "
        "would not hold: remove them (`meterfox keys budget capped none`) or run one worker"
    )


async def test_a_budget_set_while_workers_run_refuses_that_keys_requests(
    upstream_server, encrypted_file_store
):
    """A budget made after `serve --workers 2` started could not hold either: its key's
    requests are refused (503, saying why), the other keys' pass."""
    fake, server = upstream_server
    fake.reply = Reply(json_body=chat(MODEL, {"prompt_tokens": 3, "completion_tokens": 1}))
    await meterfox("keys", "set", "openai", input=OPENAI_KEY)
    free = (await meterfox("keys", "create", "free")).strip()
    async with launch_serve("--workers", "2", upstreams={"openai": server}) as served:
        capped = (await meterfox("keys", "create", "capped", "--budget", "5/day")).strip()
        async with aiohttp.ClientSession() as session:
            assert await post(session, served.url, free) == 200
            for _ in range(4):  # whichever worker answers
                async with session.post(
                    served.url + "/openai/v1/chat/completions",
                    json=ASK,
                    headers={"Authorization": f"Bearer {capped}"},
                ) as response:
                    assert response.status == 503, await response.text()
                    error = (await response.json())["error"]
                    assert error["code"] == "budget_needs_one_worker"
                    assert "without --workers" in error["message"]
    assert len(fake.received) == 1
