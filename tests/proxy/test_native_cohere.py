"""Cohere v2 through the proxy, with the real `cohere` SDK as the client."""

from __future__ import annotations

import json

import cohere
import httpx
import pytest
from cohere.core.api_error import ApiError

from tests.fakes.upstream import Reply
from tests.fixtures import cohere as fx

USAGE_FIELDS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
MESSAGES = [{"role": "user", "content": "hi"}]


def assert_usage(record, expected: dict, units: dict | None = None) -> None:
    assert {f: record[f] for f in USAGE_FIELDS} == {f: expected.get(f, 0) for f in USAGE_FIELDS}
    assert record["usage_known"] == 1
    assert json.loads(record["units"] or "{}") == (units or {})


def client(proxy) -> cohere.AsyncClientV2:
    http = proxy.track(httpx.AsyncClient())
    return cohere.AsyncClientV2(
        api_key="co-caller", base_url=proxy.base("cohere"), httpx_client=http, max_retries=0
    )


async def test_chat_json(proxy):
    proxy.upstream.reply = Reply(json_body=fx.CHAT_BODY)
    response = await client(proxy).chat(model=fx.MODEL, messages=MESSAGES)
    assert response.message.content[0].text == "Hello there!"
    sent = proxy.upstream.received[0]
    assert sent.path_qs == "/v2/chat"
    assert {k.lower(): v for k, v in sent.headers.items()}["authorization"] == "Bearer co-caller"
    record = await proxy.record()
    assert record["provider"] == "cohere" and record["model"] == fx.MODEL  # from the request
    assert record["endpoint"] == "/v2/chat" and record["streamed"] == 0
    assert_usage(record, fx.CHAT_EXPECTED)


async def test_chat_stream(proxy):
    proxy.upstream.reply = Reply(chunks=fx.stream_events(), content_type="text/event-stream")
    events = [e async for e in client(proxy).chat_stream(model=fx.MODEL, messages=MESSAGES)]
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert text == "Hello"
    assert events[-1].type == "message-end"
    assert events[-1].delta.usage.billed_units.input_tokens == 7
    record = await proxy.record()
    assert record["streamed"] == 1 and record["model"] == fx.MODEL
    assert_usage(record, fx.STREAM_EXPECTED)


async def test_embed_bills_input_tokens(proxy):
    proxy.upstream.reply = Reply(json_body=fx.EMBED_BODY)
    result = await client(proxy).embed(
        model="embed-v4.0", texts=["hello"], input_type="search_document", embedding_types=["float"]
    )
    assert result.embeddings.float_[0][0] == pytest.approx(0.016296387)
    record = await proxy.record()
    assert record["endpoint"] == "/v2/embed" and record["model"] == "embed-v4.0"
    assert_usage(record, {"input_tokens": 2})


async def test_rerank_bills_search_units(proxy):
    proxy.upstream.reply = Reply(json_body=fx.RERANK_BODY)
    result = await client(proxy).rerank(model="rerank-v3.5", query="q", documents=["d"])
    assert result.results[0].relevance_score == pytest.approx(0.9987)
    record = await proxy.record()
    assert record["endpoint"] == "/v2/rerank" and record["model"] == "rerank-v3.5"
    assert_usage(record, {}, {"search_units": 1.0})


async def test_upstream_error_reaches_the_sdk(proxy):
    proxy.upstream.reply = Reply(status=401, json_body=fx.ERROR_BODY)
    with pytest.raises(ApiError) as caught:
        await client(proxy).chat(model=fx.MODEL, messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.body["message"] == "invalid api token"
    record = await proxy.record()
    assert record["outcome"] == "upstream_error" and record["usage_known"] == 0


async def test_proxy_error_is_in_cohere_shape(upstream_server):
    from tests.conftest import start_proxy

    fake, server = upstream_server
    proxy, proxy_server = await start_proxy(fake, server)
    await server.close()
    try:
        with pytest.raises(ApiError) as caught:
            await client(proxy).chat(model=fx.MODEL, messages=MESSAGES)
        assert caught.value.status_code == 502
        assert caught.value.body["message"].startswith("MeterFox: upstream cohere")
    finally:
        await proxy.close_clients()
        await proxy_server.close()
