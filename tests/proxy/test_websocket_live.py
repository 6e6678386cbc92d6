"""Gemini Live through the proxy with the real google-genai Live client
(`client.aio.live.connect`): one record per model turn with its usageMetadata, priced; a client
that leaves mid-turn still gets its record.

google-genai always turns the base URL's scheme into `wss://` for Live
(`BaseApiClient._websocket_base_url`), so the proxy is served over TLS here with a throwaway
loopback certificate the client trusts (`http_options.async_client_args["ssl"]`); the proxy
speaks plain ws:// to the fake upstream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import genai_prices
import pytest
from aiohttp.test_utils import TestServer
from google import genai
from google.genai import types

from meterfox_cli.money import to_nanousd
from tests.conftest import Proxy, start_proxy
from tests.fakes.sockets import LIVE_METHOD, FakeSockets
from tests.fakes.tls import loopback_contexts

MODEL = "gemini-live-2.5-flash-preview"
LIVE_USAGES = [
    {
        "promptTokenCount": 120,
        "responseTokenCount": 40,
        "totalTokenCount": 160,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 20},
            {"modality": "AUDIO", "tokenCount": 100},
        ],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 40}],
    },
    {
        "promptTokenCount": 300,
        "responseTokenCount": 50,
        "thoughtsTokenCount": 10,
        "totalTokenCount": 360,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 300}],
        "responseTokensDetails": [{"modality": "TEXT", "tokenCount": 50}],
    },
]


@pytest.fixture
async def live(tmp_path) -> AsyncIterator[tuple[Proxy, genai.Client]]:
    fake = FakeSockets(live_usages=list(LIVE_USAGES))
    upstream = TestServer(fake.app(), host="127.0.0.1")
    await upstream.start_server()
    server_tls, client_tls = loopback_contexts(tmp_path)
    proxy, proxy_server = await start_proxy(fake, upstream, ssl=server_tls)
    client = genai.Client(
        api_key="AIza-caller-own",
        http_options=types.HttpOptions(
            base_url=proxy.base("gemini"), async_client_args={"ssl": client_tls}
        ),
    )
    yield proxy, client
    await proxy_server.close()
    await upstream.close()


async def one_turn(session, text: str) -> list:
    await session.send_client_content(
        turns=types.Content(role="user", parts=[types.Part(text=text)]), turn_complete=True
    )
    messages = []
    async with asyncio.timeout(5):
        async for message in session.receive():  # ends at the turn's turnComplete
            messages.append(message)
    return messages


async def test_a_live_session_with_two_turns_records_two_priced_records(live):
    proxy, client = live
    fake: FakeSockets = proxy.upstream
    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        first = await one_turn(session, "hello")
        second = await one_turn(session, "again")
    assert first[-1].usage_metadata.prompt_token_count == 120  # frames reached the SDK intact
    assert second[-1].server_content.turn_complete
    [handshake] = fake.handshakes
    assert handshake.path_qs.endswith(LIVE_METHOD)  # the key is in a header, not the query
    assert handshake.headers["x-goog-api-key"] == "AIza-caller-own"
    setup = json.loads(fake.received[0])
    assert setup["setup"]["model"] == f"models/{MODEL}"
    rows = await proxy.records(2)
    assert len(rows) == 2
    first_row, second_row = rows
    assert first_row["provider"] == "gemini" and first_row["model"] == MODEL
    assert first_row["endpoint"] == handshake.path_qs and first_row["outcome"] == "ok"
    assert (first_row["input_tokens"], first_row["output_tokens"]) == (120, 40)
    assert json.loads(first_row["units"]) == {"input_audio_tokens": 100, "output_audio_tokens": 40}
    assert (second_row["input_tokens"], second_row["output_tokens"]) == (300, 60)
    assert second_row["reasoning_tokens"] == 10
    for row, priced in (
        (
            first_row,
            genai_prices.Usage(
                input_tokens=120, input_audio_tokens=100, output_tokens=40, output_audio_tokens=40
            ),
        ),
        (
            second_row,
            genai_prices.Usage(input_tokens=300, output_tokens=60, output_reasoning_tokens=10),
        ),
    ):
        cost = genai_prices.calc_price(priced, MODEL, provider_id="google").total_price
        assert row["cost_nanousd"] == to_nanousd(cost) and row["cost_source"] == "computed"


async def test_a_client_that_leaves_mid_turn_still_gets_its_record(live):
    proxy, client = live
    fake: FakeSockets = proxy.upstream
    fake.hold = True
    async with client.aio.live.connect(model=MODEL) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="hi")]), turn_complete=True
        )
        async with asyncio.timeout(5):
            async for message in session.receive():
                if message.server_content and message.server_content.model_turn:
                    break
    async with asyncio.timeout(5):
        await fake.closed.wait()
    row = await proxy.record()
    assert row["outcome"] == "client_closed" and row["usage_known"] == 0 and row["model"] == MODEL
