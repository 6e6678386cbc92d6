"""OpenAI Realtime through a real `meterfox serve` process (issue 13): the openai SDK's
`client.realtime.connect()` to a fake Realtime server; two responses are two priced records;
a client that leaves mid-response, and a session still open at SIGTERM, leave their records."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator

import openai
import pytest
from aiohttp.test_utils import TestServer

from tests.cli.conftest import launch_serve
from tests.conftest import read_records
from tests.fakes.sockets import FakeSockets
from tests.proxy.test_websocket import USAGES, expected_cost, until


@pytest.fixture
async def realtime() -> AsyncIterator[tuple[FakeSockets, TestServer]]:
    fake = FakeSockets(realtime_usages=list(USAGES))
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, server
    await server.close()


def client(served) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=served.base("openai") + "/v1", api_key="sk-caller", max_retries=0
    )


@pytest.mark.usefixtures("serve_workers")
async def test_two_responses_then_a_client_that_leaves_mid_response(realtime, meterfox_home):
    fake, server = realtime
    async with launch_serve(upstreams={"openai": server}) as served:
        sdk = client(served)
        async with sdk.realtime.connect(model="gpt-realtime") as connection:
            await until(connection, "session.created")
            for _ in USAGES:
                await connection.response.create()
                await until(connection, "response.done")
        fake.hold, fake.closed = True, asyncio.Event()
        async with sdk.realtime.connect(model="gpt-realtime") as connection:
            await until(connection, "session.created")
            await connection.response.create()
            await until(connection, "response.output_text.delta")
        async with asyncio.timeout(5):
            await fake.closed.wait()
        await sdk.close()
        await served.stop(signal.SIGTERM, timeout=15)
    assert served.returncode == 0
    rows = read_records(meterfox_home / "meterfox.db")
    assert [(r["outcome"], r["usage_known"]) for r in rows] == [
        ("ok", 1),
        ("ok", 1),
        ("client_closed", 0),
    ]
    for row, usage in zip(rows, USAGES, strict=False):
        assert row["input_tokens"] == usage["input_tokens"]
        assert row["cost_nanousd"] == expected_cost(usage)
        assert (
            json.loads(row["units"])["output_audio_tokens"]
            == (usage["output_token_details"]["audio_tokens"])
        )


@pytest.mark.usefixtures("serve_workers")
async def test_a_session_open_at_sigterm_is_closed_and_recorded(realtime, meterfox_home):
    fake, server = realtime
    fake.hold = True
    async with launch_serve(upstreams={"openai": server}) as served:
        sdk = client(served)
        async with sdk.realtime.connect(model="gpt-realtime") as connection:
            await until(connection, "session.created")
            await connection.response.create()
            await until(connection, "response.output_text.delta")
            await served.stop(signal.SIGTERM, timeout=15)
        await sdk.close()
    assert served.returncode == 0
    [row] = read_records(meterfox_home / "meterfox.db")
    assert row["outcome"] == "client_closed" and row["endpoint"] == "/v1/realtime"
