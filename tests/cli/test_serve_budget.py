"""A real `meterfox serve` under the two races a running daemon has with its key table.

A budget must hold when many requests on one key are in flight at once (each reserves its
worst case at admission, in the ledger, so it holds across `--workers` too), and a key made by
`meterfox keys create` must work on the very next request, not a poll later. Both run `serve` and `meterfox keys` as real processes against a
fake upstream on loopback.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import aiohttp
import pytest

from meterfox_cli.money import from_nanousd
from meterfox_cli.pricing.book import price_reading
from meterfox_cli.usage import Reading, Usage
from tests.cli.conftest import launch_serve
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


def real_cost_nanousd(usage: dict[str, int]) -> int:
    """What the fake upstream's reply bills, as the record prices it."""
    billed = Usage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"])
    price = price_reading("openai", MODEL, time.time(), Reading(model=MODEL, usage=billed))
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


@pytest.mark.usefixtures("serve_workers")
async def test_a_budget_that_fits_two_requests_lets_two_of_40_concurrent_ones_through(
    upstream_server, encrypted_file_store
):
    """With one worker or two (whose reservations meet in the ledger: each worker alone would
    let 2 through, 4 in all)."""
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
    # serve has stopped (SIGTERM): every worker's writer has drained.
    assert len(fake.received) <= 2, f"{len(fake.received)} requests reached the upstream"
    assert sorted(statuses) == [200] * 2 + [429] * 38
    [listing] = json.loads(await meterfox("keys", "list", "--format", "json"))
    assert Decimal(listing["spend_usd"]) == 2 * from_nanousd(real_cost_nanousd(usage))
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


async def test_a_budget_set_while_two_workers_run_holds_across_them(
    upstream_server, encrypted_file_store
):
    """`serve --workers 2` starts with a budgeted key, and a budget made after it started
    holds across both workers: 20 requests at once on a key that fits 2, through either
    worker, and 2 reach the upstream; another key's requests pass."""
    fake, server = upstream_server
    usage = {"prompt_tokens": 8, "completion_tokens": MAX_TOKENS}
    fake.reply = Reply(json_body=chat(MODEL, usage), stall_s=0.3)
    budget = Decimal(worst_case_nanousd() * 5 // 2).scaleb(-9)  # fits 2, not 3
    await meterfox("keys", "set", "openai", input=OPENAI_KEY)
    await meterfox("keys", "create", "early", "--budget", "5/day")
    free = (await meterfox("keys", "create", "free")).strip()
    async with launch_serve("--workers", "2", upstreams={"openai": server}) as served:
        capped = (await meterfox("keys", "create", "capped", "--budget", f"{budget}/day")).strip()
        async with aiohttp.ClientSession() as session:
            assert await post(session, served.url, free) == 200
            await asyncio.sleep(0.5)  # both workers' watchers have read the new key
            statuses = await asyncio.gather(*(post(session, served.url, capped) for _ in range(20)))
    assert sorted(statuses) == [200] * 2 + [429] * 18
    assert len(fake.received) == 1 + 2
