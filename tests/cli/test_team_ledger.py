"""Two real `meterfox serve` processes on one PostgreSQL ledger, as two machines of a team: each
has its own home (config, local file, provider keys in its own key store) and the same
`[store] url`. Requests through both land in one report; a key created through one works
through the other; a key revoked is refused by the other within a second; a budget shared by
both holds: its reservations meet in the ledger, so no load passes it (docs/team.md)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from tests.cli.conftest import launch_serve, run_meterfox
from tests.cli.test_serve_budget import ASK, post, worst_case_nanousd
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import chat

MODEL = ASK["model"]
PROVIDER_KEYS = {"laptop-a": "sk-proj-TESTONLY-team-aaaa", "laptop-b": "sk-proj-TESTONLY-team-bbbb"}


def machine(root: Path, name: str, pg_url: str) -> dict[str, str | None]:
    """The environment of one machine: its own home, whose config names the shared ledger."""
    home = root / name
    home.mkdir()
    (home / "config.toml").write_text(f'[store]\nurl = "{pg_url}"\nhost = "{name}"\n')
    return {"METERFOX_HOME": str(home), "METERFOX_DATABASE_URL": None}


async def meterfox(env: dict[str, str | None], *args: str, input: str = "") -> str:
    done = await run_meterfox(*args, env=env, input=input, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def written(session: aiohttp.ClientSession, url: str, count: int) -> None:
    """Wait until the daemon at `url` has written `count` records."""
    deadline = time.monotonic() + 10
    while True:
        async with session.get(url + "/_meterfox/health") as response:
            if (await response.json())["records_written"] >= count:
                return
        assert time.monotonic() < deadline, "records were not written"
        await asyncio.sleep(0.05)


@pytest.fixture
async def team(
    tmp_path: Path, pg_url: str, encrypted_file_store
) -> dict[str, dict[str, str | None]]:
    """Two machines on one migrated ledger, each with its own openai key."""
    machines = {name: machine(tmp_path, name, pg_url) for name in PROVIDER_KEYS}
    await meterfox(machines["laptop-a"], "db", "migrate")
    for name, env in machines.items():
        await meterfox(env, "keys", "set", "openai", input=PROVIDER_KEYS[name])
    return machines


async def test_two_daemons_share_keys_revokes_and_one_report(upstream_server, team) -> None:
    fake, server = upstream_server
    fake.reply = Reply(json_body=chat(MODEL, {"prompt_tokens": 3, "completion_tokens": 1}))
    a, b = team["laptop-a"], team["laptop-b"]
    upstreams = {"openai": server}
    async with (
        launch_serve(upstreams=upstreams, env=a) as served_a,
        launch_serve(upstreams=upstreams, env=b) as served_b,
        aiohttp.ClientSession() as session,
    ):
        # A key created on one machine, while both run, works through the other at once.
        secret = (await meterfox(a, "keys", "create", "app", "--provider", "openai")).strip()
        assert [await post(session, served_b.url, secret) for _ in range(3)] == [200] * 3
        assert [await post(session, served_a.url, secret) for _ in range(2)] == [200] * 2
        # Each machine swaps in its own provider key: provider keys never leave a machine.
        sent = [r.headers["Authorization"] for r in fake.received]
        assert (
            sent
            == [f"Bearer {PROVIDER_KEYS['laptop-b']}"] * 3
            + [f"Bearer {PROVIDER_KEYS['laptop-a']}"] * 2
        )

        await meterfox(b, "keys", "revoke", "app")
        revoked = time.monotonic()
        while await post(session, served_a.url, secret) == 200:
            assert time.monotonic() - revoked < 1.0, "still accepted 1 s after the revoke"
        refused_after = time.monotonic() - revoked
        assert await post(session, served_a.url, secret) == 401
        await written(session, served_a.url, 2)
        await written(session, served_b.url, 3)
    print(f"revoke on laptop-b refused by laptop-a after {refused_after * 1000:.0f} ms")

    listings = [await meterfox(env, "keys", "list", "--format", "json") for env in (a, b)]
    assert listings[0] == listings[1]
    [app] = json.loads(listings[0])
    assert app["status"] == "revoked" and app["last_used"] is not None
    by_host = await meterfox(b, "report", "--since", "all", "--by", "host", "--format", "csv")
    rows = {row["group"]: row["requests"] for row in csv.DictReader(io.StringIO(by_host))}
    assert rows == {"laptop-a": "2", "laptop-b": "3"}


async def test_a_budget_shared_by_two_daemons_holds_whatever_the_load(
    upstream_server, team
) -> None:
    """Each response bills all of max_tokens (the worst case each request reserves). The
    budget fits FITS requests. Three rounds, each on a key of its own: requests one at a time,
    alternating daemons, half a second apart; the same without the pause; then a burst of 40
    at once, 20 through each daemon. Each admission reserves in the ledger, which both daemons
    admit against: FITS reach the upstream every time (before shared reservations, up to twice
    FITS did: docs/team.md)."""
    fake, server = upstream_server
    usage = {"prompt_tokens": 8, "completion_tokens": ASK["max_tokens"]}
    worst = worst_case_nanousd()
    fits = 4
    budget = Decimal(worst * (2 * fits + 1) // 2).scaleb(-9)  # fits 4, not 5
    a, b = team["laptop-a"], team["laptop-b"]
    upstreams = {"openai": server}
    async with (
        launch_serve(upstreams=upstreams, env=a) as served_a,
        launch_serve(upstreams=upstreams, env=b) as served_b,
        aiohttp.ClientSession() as session,
    ):
        urls = [served_a.url, served_b.url]
        # One at a time, alternating: each daemon must see what the other spent.
        fake.reply = Reply(json_body=chat(MODEL, usage), stall_s=0.05)
        steady = (
            await meterfox(a, "keys", "create", "steady", "--budget", f"{budget}/day")
        ).strip()
        statuses = []
        for i in range(3 * fits):
            statuses.append(await post(session, urls[i % 2], steady))
            await asyncio.sleep(0.5)  # the writer's batch and the other daemon's poll
        assert statuses == [200] * fits + [429] * (2 * fits)

        # One at a time, alternating, without a pause: the last request's record may not be
        # written yet (the writer's 25 ms batch), but its reservation is.
        brisk = (await meterfox(b, "keys", "create", "brisk", "--budget", f"{budget}/day")).strip()
        statuses = [await post(session, urls[i % 2], brisk) for i in range(3 * fits)]
        brisk_passed = statuses.count(200)

        # A burst through both at once: the ledger admits FITS, whichever daemon asks.
        fake.received.clear()
        fake.reply = Reply(json_body=chat(MODEL, usage), stall_s=0.3)
        burst = (await meterfox(b, "keys", "create", "burst", "--budget", f"{budget}/day")).strip()
        calls = [post(session, urls[i % 2], burst) for i in range(40)]
        statuses = await asyncio.gather(*calls)
        passed = statuses.count(200)
        for url in urls:
            async with session.get(url + "/_meterfox/health") as response:
                health = await response.json()
            assert health["keys"]["reserved_requests"] == 0
        await asyncio.sleep(0.5)
    print(
        f"budget fits {fits}: alternating without a pause, {brisk_passed} of {3 * fits} passed; "
        f"a burst of 40 through 2 daemons, {passed} reached the upstream"
    )
    assert brisk_passed == fits
    assert passed == fits
    assert len(fake.received) == passed
    assert sorted(set(statuses)) == [200, 429]
    listings = {
        k["name"]: k for k in json.loads(await meterfox(a, "keys", "list", "--format", "json"))
    }
    assert Decimal(listings["steady"]["spend_usd"]) <= budget
    assert Decimal(listings["brisk"]["spend_usd"]) <= budget
    assert Decimal(listings["burst"]["spend_usd"]) <= budget
