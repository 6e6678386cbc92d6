"""`meterfox serve` as a real process: start-up, port in use, clean stop with every record."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp
import pytest

from tests.cli.conftest import launch_serve, run_meterfox
from tests.conftest import read_records
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import CASES


@pytest.mark.usefixtures("serve_workers")
async def test_sigterm_after_concurrent_requests_leaves_every_record(
    upstream_server, meterfox_home
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    async with launch_serve(upstreams={"openai": server}) as served:
        n = 40
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> int:
                async with session.post(
                    f"{served.url}/openai/v1/chat/completions",
                    json={"model": "gpt-4o", "messages": [{"role": "user", "content": str(i)}]},
                ) as response:
                    await response.read()
                    return response.status

            statuses = await asyncio.gather(*(one(i) for i in range(n)))
        assert statuses == [200] * n
        await served.stop(signal.SIGTERM, timeout=15)
    assert served.returncode == 0
    records = read_records(meterfox_home / "meterfox.db")
    assert len(records) == n
    assert {r["input_tokens"] for r in records} == {CASES[0].expected["input_tokens"]}


@pytest.mark.usefixtures("serve_workers")
async def test_second_serve_on_the_same_port_is_a_one_line_error(meterfox_home):
    async with launch_serve() as first:
        port = first.port
        second = await run_meterfox("serve", "--port", str(port), timeout=15)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert lines == [
            f"meterfox: port {port} on 127.0.0.1 is in use (another `meterfox serve`?); stop it or pass --port"
        ]
        await first.stop(signal.SIGINT, timeout=15)
    assert first.returncode == 0


@pytest.mark.usefixtures("serve_workers")
async def test_serve_prints_one_base_url_per_provider(meterfox_home):
    async with launch_serve() as served:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{served.url}/_meterfox/health") as response:
                health = json.loads(await response.text())
        assert health["records_written"] == 0
        await served.stop(signal.SIGTERM, timeout=15)
    text = served.stdout
    port = served.port
    assert f"http://127.0.0.1:{port}/openai/v1" in text
    assert f"http://127.0.0.1:{port}/anthropic" in text
    assert f"http://127.0.0.1:{port}/groq" in text


async def test_serve_runs_on_uvloop_by_default_and_on_asyncio_when_asked(meterfox_home):
    """uvloop is a default dependency (the fast install is the default one); METERFOX_LOOP
    picks the loop, and CI runs the serve tests on both (.ci/run)."""
    for wanted, loop in ((None, "uvloop"), ("asyncio", "asyncio"), ("uvloop", "uvloop")):
        async with launch_serve(env={"METERFOX_LOOP": wanted}) as served:
            assert (await served.health())["event_loop"] == loop


async def test_serve_refuses_an_unknown_loop_in_one_line(meterfox_home):
    finished = await run_meterfox("serve", env={"METERFOX_LOOP": "trio"}, timeout=15)
    assert finished.returncode != 0
    assert finished.stderr.strip().splitlines() == [
        "meterfox: METERFOX_LOOP='trio': choose one of uvloop, asyncio"
    ]
