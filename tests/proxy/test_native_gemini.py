"""The Gemini API through the proxy, with the real `google-genai` SDK (and raw HTTP for the
JSON-array stream the SDK never asks for)."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import openai
import pytest
from google import genai
from google.genai import errors, types

from tests.conftest import read_tags
from tests.fakes.upstream import Reply
from tests.fixtures import gemini as fx

USAGE_FIELDS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
SECRET = "AIzaSyD-caller-secret-key-0123456789"


def assert_usage(record, expected: dict, units: dict | None = None) -> None:
    assert {f: record[f] for f in USAGE_FIELDS} == {f: expected.get(f, 0) for f in USAGE_FIELDS}
    assert record["usage_known"] == 1
    assert json.loads(record["units"] or "{}") == (units or {})


class Closing:
    """Lets the proxy fixture close the SDK's async client."""

    def __init__(self, sdk: genai.Client) -> None:
        self.sdk = sdk

    async def close(self) -> None:
        await self.sdk.aio.aclose()


def client(proxy, **options) -> genai.Client:
    sdk = genai.Client(
        api_key=SECRET, http_options=types.HttpOptions(base_url=proxy.base("gemini"), **options)
    )
    proxy.track(Closing(sdk))
    return sdk


def headers_of(received) -> dict[str, str]:
    return {name.lower(): value for name, value in received.headers.items()}


async def test_generate_content_json(proxy):
    proxy.upstream.reply = Reply(json_body=fx.JSON_BODY)
    response = await client(proxy).aio.models.generate_content(model=fx.MODEL, contents="hi")
    assert response.text == "Hello there!"
    assert response.usage_metadata.thoughts_token_count == 300
    sent = proxy.upstream.received[0]
    # google-genai 3.x: the v1 API (not v1beta), key in x-goog-api-key, none in the URL.
    assert sent.path_qs == f"/v1/models/{fx.MODEL}:generateContent"
    assert headers_of(sent)["x-goog-api-key"] == SECRET
    record = await proxy.record()
    assert record["provider"] == "gemini" and record["model"] == fx.MODEL_VERSION
    assert record["endpoint"] == f"/v1/models/{fx.MODEL}:generateContent"
    assert record["streamed"] == 0 and record["outcome"] == "ok"
    assert_usage(record, fx.EXPECTED, fx.EXPECTED_UNITS)


async def test_generate_content_stream_sse(proxy):
    proxy.upstream.reply = Reply(chunks=fx.sse_chunks(), content_type="text/event-stream")
    stream = await client(proxy).aio.models.generate_content_stream(model=fx.MODEL, contents="hi")
    text = "".join([chunk.text async for chunk in stream])
    assert text == "Hello!"
    assert (
        proxy.upstream.received[0].path_qs == f"/v1/models/{fx.MODEL}:streamGenerateContent?alt=sse"
    )
    record = await proxy.record()
    assert record["streamed"] == 1 and record["model"] == fx.MODEL_VERSION
    assert record["endpoint"] == f"/v1/models/{fx.MODEL}:streamGenerateContent"
    assert_usage(record, fx.EXPECTED, fx.EXPECTED_UNITS)


async def test_v1beta_when_the_sdk_asks_for_it(proxy):
    proxy.upstream.reply = Reply(json_body=fx.JSON_BODY)
    sdk = client(proxy, api_version="v1beta")
    await sdk.aio.models.generate_content(model=fx.MODEL, contents="hi")
    assert proxy.upstream.received[0].path_qs == f"/v1beta/models/{fx.MODEL}:generateContent"
    assert_usage(await proxy.record(), fx.EXPECTED, fx.EXPECTED_UNITS)


async def test_json_array_stream_with_key_in_query_arrives_piece_by_piece(proxy, caplog):
    """Without alt=sse: bytes reach the client as they come, untouched; the key in `?key=`
    reaches the upstream but no record or log line."""
    caplog.set_level(logging.DEBUG)
    chunks = fx.json_array_chunks()
    proxy.upstream.reply = Reply(chunks=chunks, content_type="application/json", delay_s=0.15)
    url = f"{proxy.base('gemini')}/v1beta/models/{fx.MODEL}:streamGenerateContent?key={SECRET}"
    loop = asyncio.get_running_loop()
    arrivals: list[tuple[float, bytes]] = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"contents": []}, headers={"X-MeterFox-Tag-Feature": "t"}) as r,
    ):
        async for piece in r.content.iter_any():
            arrivals.append((loop.time(), piece))
    assert b"".join(p for _, p in arrivals) == b"".join(chunks)
    assert len(arrivals) >= 3  # streamed, not buffered until the end
    assert arrivals[-1][0] - arrivals[0][0] >= 0.3
    assert proxy.upstream.received[0].path_qs.endswith(f"?key={SECRET}")
    record = await proxy.record()
    assert record["streamed"] == 1 and record["model"] == fx.MODEL_VERSION
    assert_usage(record, fx.EXPECTED, fx.EXPECTED_UNITS)
    stored = json.dumps([dict(r) for r in await proxy.records(1)])
    stored += json.dumps(read_tags(proxy.db_path, record["id"]))
    assert SECRET not in stored and "key=" not in stored
    # aiohttp's access log prints request lines, query included: test servers keep it on, so
    # it is left out here; `meterfox serve` turns it off (AppRunner(access_log=None)).
    logged = [r.getMessage() for r in caplog.records if r.name != "aiohttp.access"]
    assert not [line for line in logged if SECRET in line]


async def test_upstream_error_reaches_the_sdk_as_its_exception(proxy):
    proxy.upstream.reply = Reply(status=400, json_body=fx.ERROR_BODY)
    with pytest.raises(errors.ClientError) as caught:
        await client(proxy).aio.models.generate_content(model=fx.MODEL, contents="hi")
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    record = await proxy.record()
    assert record["outcome"] == "upstream_error" and record["usage_known"] == 0
    assert record["model"] == fx.MODEL


async def test_proxy_error_is_in_google_shape(upstream_server):
    from tests.conftest import start_proxy

    fake, server = upstream_server
    proxy, proxy_server = await start_proxy(fake, server)
    await server.close()
    try:
        sdk = client(proxy, retry_options=types.HttpRetryOptions(attempts=1))
        with pytest.raises(errors.ServerError) as caught:
            await sdk.aio.models.generate_content(model=fx.MODEL, contents="hi")
        assert caught.value.code == 502 and caught.value.status == "UNAVAILABLE"
        assert "MeterFox" in caught.value.message
    finally:
        await proxy.close_clients()
        await proxy_server.close()


async def test_count_tokens_is_recorded_free(proxy):
    proxy.upstream.reply = Reply(json_body=fx.COUNT_TOKENS_BODY)
    counted = await client(proxy).aio.models.count_tokens(model=fx.MODEL, contents="hi")
    assert counted.total_tokens == 31
    record = await proxy.record()
    assert record["endpoint"] == f"/v1/models/{fx.MODEL}:countTokens"
    assert_usage(record, {})
    assert record["cost_nanousd"] == 0


async def test_embed_content_uses_batch_embed_contents(proxy):
    proxy.upstream.reply = Reply(json_body=fx.BATCH_EMBED_BODY)
    result = await client(proxy).aio.models.embed_content(
        model="gemini-embedding-001", contents="hello"
    )
    assert result.embeddings[0].values == [0.013, -0.008, 0.021]
    record = await proxy.record()
    assert record["endpoint"] == "/v1/models/gemini-embedding-001:batchEmbedContents"
    assert record["model"] == "gemini-embedding-001"
    assert record["usage_known"] == 0  # the Gemini API reports no usage for embeddings


async def test_openai_compatible_endpoint_counts_hidden_thinking(proxy):
    proxy.upstream.reply = Reply(json_body=fx.OPENAI_COMPAT_BODY)
    sdk = proxy.track(
        openai.AsyncOpenAI(
            api_key=SECRET, base_url=proxy.base("gemini") + "/v1beta/openai/", max_retries=0
        )
    )
    completion = await sdk.chat.completions.create(model=fx.MODEL, messages=[])
    assert completion.choices[0].message.content == "Hello there!"
    sent = proxy.upstream.received[0]
    assert sent.path_qs == "/v1beta/openai/chat/completions"
    assert headers_of(sent)["authorization"] == f"Bearer {SECRET}"
    record = await proxy.record()
    assert record["provider"] == "gemini" and record["model"] == fx.MODEL
    assert_usage(record, fx.OPENAI_COMPAT_EXPECTED)


async def test_openai_compatible_endpoint_errors_in_openai_shape(upstream_server):
    from tests.conftest import start_proxy

    fake, server = upstream_server
    proxy, proxy_server = await start_proxy(fake, server)
    await server.close()
    try:
        sdk = proxy.track(
            openai.AsyncOpenAI(
                api_key="k", base_url=proxy.base("gemini") + "/v1beta/openai/", max_retries=0
            )
        )
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model=fx.MODEL, messages=[])
        assert caught.value.status_code == 502
        assert caught.value.body["type"] == "api_error"  # OpenAI's shape, not Google's
    finally:
        await proxy.close_clients()
        await proxy_server.close()


async def test_google_alias_routes_to_gemini(proxy):
    proxy.upstream.reply = Reply(json_body=fx.JSON_BODY)
    sdk = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=proxy.base("google")))
    proxy.track(Closing(sdk))
    await sdk.aio.models.generate_content(model=fx.MODEL, contents="hi")
    record = await proxy.record()
    assert record["provider"] == "gemini"
    assert_usage(record, fx.EXPECTED, fx.EXPECTED_UNITS)
