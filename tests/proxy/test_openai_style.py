"""OpenAI-style providers through the proxy, with the real SDKs as clients.

For each provider quirk: the client sees exactly what the upstream sent, and the record holds
the exact normalised usage, streamed and not.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.fakes.upstream import Received, Reply, sse
from tests.fixtures.openai_style import (
    CASES,
    EMBEDDINGS_BODY,
    RESPONSES_BODY,
    Case,
    chat_stream_chunks,
)

USAGE_FIELDS = (
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def assert_usage(record, expected: dict) -> None:
    got = {name: record[name] for name in USAGE_FIELDS}
    want = {name: expected.get(name, 0) for name in USAGE_FIELDS}
    assert got == want
    assert record["usage_known"] == 1


def client(proxy, slug: str, suffix: str = "/v1") -> openai.AsyncOpenAI:
    return proxy.track(
        openai.AsyncOpenAI(base_url=proxy.base(slug) + suffix, api_key="sk-caller", max_retries=0)
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_json_chat_usage_for_each_provider(proxy, case: Case):
    proxy.upstream.reply = Reply(json_body=case.body)
    completion = await client(proxy, case.provider).chat.completions.create(
        model="whatever", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "Hello there!"
    record = await proxy.record()
    assert record["provider"] == case.provider
    assert record["model"] == case.body["model"]
    assert record["endpoint"] == "/v1/chat/completions"
    assert record["outcome"] == "ok" and record["status"] == 200 and record["streamed"] == 0
    assert_usage(record, case.expected)
    reported = record["reported_cost_usd"]
    assert (reported and __import__("decimal").Decimal(reported)) == (case.reported_cost or None)


def openai_like_stream(model: str, usage: dict):
    """Replies like OpenAI: the usage chunk only when the request asks for it."""

    def reply(received: Received) -> Reply:
        asked = (received.json().get("stream_options") or {}).get("include_usage") is True
        chunks = chat_stream_chunks(model, ["Hel", "lo"], usage if asked else None)
        return Reply(chunks=sse(*chunks), content_type="text/event-stream")

    return reply


STREAM_USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 2,
    "total_tokens": 22,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}


async def test_stream_without_include_usage_gets_usage_recorded_and_chunk_stripped(proxy):
    proxy.upstream.reply = openai_like_stream("gpt-4o-mini-2024-07-18", STREAM_USAGE)
    stream = await client(proxy, "openai").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    # The client sees exactly the stream it would have seen without the proxy: no usage chunk.
    assert all(chunk.choices for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello"
    sent = proxy.upstream.received[0].json()
    assert sent["stream_options"] == {"include_usage": True}
    record = await proxy.record()
    assert record["streamed"] == 1 and record["model"] == "gpt-4o-mini-2024-07-18"
    assert_usage(record, dict(input_tokens=20, output_tokens=2))
    assert record["ttfb_ms"] is not None and record["ttfb_ms"] <= record["latency_ms"]


async def test_stream_with_include_usage_keeps_the_usage_chunk(proxy):
    proxy.upstream.reply = openai_like_stream("gpt-4o-mini-2024-07-18", STREAM_USAGE)
    stream = await client(proxy, "openai").chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 20
    assert_usage(await proxy.record(), dict(input_tokens=20, output_tokens=2))


async def test_injected_body_keeps_every_other_byte_of_the_request(proxy):
    proxy.upstream.reply = openai_like_stream("m", STREAM_USAGE)
    body = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "\\u00e9"}]}'
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            proxy.base("openai") + "/v1/chat/completions",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": "Bearer sk-x"},
        ) as response,
    ):
        text = await response.text()
    sent = proxy.upstream.received[0].body
    assert sent == b'{"stream_options":{"include_usage":true},' + body[1:]
    assert '"choices": []' not in text and "data: [DONE]" in text


@pytest.mark.parametrize("slug", ["xai", "deepseek", "together", "fireworks", "cerebras"])
async def test_stream_usage_for_providers_that_need_include_usage(proxy, slug):
    proxy.upstream.reply = openai_like_stream("some-model", STREAM_USAGE)
    stream = await client(proxy, slug).chat.completions.create(
        model="some-model", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert [c.choices[0].delta.content async for c in stream][1:3] == ["Hel", "lo"]
    assert proxy.upstream.received[0].json()["stream_options"] == {"include_usage": True}
    assert_usage(await proxy.record(), dict(input_tokens=20, output_tokens=2))


async def test_xai_usage_before_final_empty_chunk_is_kept(proxy):
    """xAI can send usage on the second-to-last chunk: keep the last non-null usage."""
    usage = {
        **STREAM_USAGE,
        "completion_tokens": 2,
        "total_tokens": 40,
        "completion_tokens_details": {"reasoning_tokens": 18},
    }
    chunks = chat_stream_chunks("grok-3-mini", ["Hel", "lo"], usage, usage_on_last_content=True)
    chunks.append({**chunks[-1], "choices": [], "usage": None})
    proxy.upstream.reply = Reply(chunks=sse(*chunks), content_type="text/event-stream")
    stream = await client(proxy, "xai").chat.completions.create(
        model="grok-3-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    [c async for c in stream]
    assert_usage(await proxy.record(), dict(input_tokens=20, output_tokens=20, reasoning_tokens=18))


async def test_mistral_stream_usage_by_default_with_mistral_sdk(proxy):
    from mistralai.client import Mistral

    usage = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    chunks = chat_stream_chunks(
        "mistral-small-latest", ["Hel", "lo"], usage, usage_on_last_content=True
    )
    proxy.upstream.reply = Reply(chunks=sse(*chunks), content_type="text/event-stream")
    client_ = proxy.track(Mistral(api_key="mistral-key", server_url=proxy.base("mistral")))
    stream = await client_.chat.stream_async(
        model="mistral-small-latest", messages=[{"role": "user", "content": "hi"}]
    )
    text = "".join([(e.data.choices[0].delta.content or "") async for e in stream])
    assert text == "Hello"
    assert "stream_options" not in proxy.upstream.received[0].json()
    assert_usage(await proxy.record(), dict(input_tokens=11, output_tokens=2))


async def test_mistral_json_with_mistral_sdk(proxy):
    from mistralai.client import Mistral

    case = next(c for c in CASES if c.provider == "mistral")
    proxy.upstream.reply = Reply(json_body=case.body)
    client_ = proxy.track(Mistral(api_key="mistral-key", server_url=proxy.base("mistral")))
    response = await client_.chat.complete_async(
        model="mistral-large-latest", messages=[{"role": "user", "content": "hi"}]
    )
    assert response.choices[0].message.content == "Hello there!"
    assert proxy.upstream.received[0].path_qs == "/v1/chat/completions"
    assert_usage(await proxy.record(), case.expected)


async def test_groq_stream_x_groq_usage_with_groq_sdk(proxy, monkeypatch):
    import groq

    usage = {
        "prompt_tokens": 30,
        "completion_tokens": 2,
        "total_tokens": 32,
        "queue_time": 0.01,
        "total_time": 0.02,
    }
    chunks = chat_stream_chunks("llama-3.1-8b-instant", ["Hel", "lo"], None)
    chunks[-1]["x_groq"] = {"id": "req_1", "usage": usage}
    proxy.upstream.reply = Reply(chunks=sse(*chunks), content_type="text/event-stream")
    client_ = proxy.track(
        groq.AsyncGroq(api_key="gsk-caller", base_url=proxy.base("groq"), max_retries=0)
    )
    stream = await client_.chat.completions.create(
        model="llama-3.1-8b-instant", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks_seen = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks_seen if c.choices) == "Hello"
    # The groq SDK sends /openai/v1/...: the base URL's /openai path is not added twice.
    assert proxy.upstream.received[0].path_qs == "/openai/v1/chat/completions"
    assert_usage(await proxy.record(), dict(input_tokens=30, output_tokens=2))


async def test_groq_both_usages_counted_once(proxy):
    usage = {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32}
    chunks = chat_stream_chunks("llama-3.1-8b-instant", ["Hel", "lo"], usage)
    chunks[-2]["x_groq"] = {"id": "req_1", "usage": usage}
    proxy.upstream.reply = Reply(chunks=sse(*chunks), content_type="text/event-stream")
    stream = await client(proxy, "groq").chat.completions.create(
        model="llama-3.1-8b-instant", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    [c async for c in stream]
    assert_usage(await proxy.record(), dict(input_tokens=30, output_tokens=2))


async def test_openrouter_comments_pass_through_and_cost_is_read(proxy):
    usage = {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14, "cost": 0.000042}
    chunks = sse(*chat_stream_chunks("openai/gpt-4o", ["Hel", "lo"], usage))
    chunks.insert(0, b": OPENROUTER PROCESSING\n\n")
    proxy.upstream.reply = Reply(chunks=chunks, content_type="text/event-stream")
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            proxy.base("openrouter") + "/v1/chat/completions",
            json={
                "model": "openai/gpt-4o",
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ) as response,
    ):
        raw = await response.read()
    assert raw == b"".join(chunks)
    record = await proxy.record()
    assert record["reported_cost_usd"] == "0.000042"
    assert_usage(record, dict(input_tokens=12, output_tokens=2))


async def test_responses_api_json_and_stream(proxy):
    proxy.upstream.reply = Reply(json_body=RESPONSES_BODY)
    c = client(proxy, "openai")
    response = await c.responses.create(model="gpt-5", input="hi")
    assert response.output_text == "Hi!"
    expected = dict(input_tokens=3000, cached_tokens=2048, output_tokens=900, reasoning_tokens=768)
    assert_usage(await proxy.record(), expected)

    created = {
        "type": "response.created",
        "sequence_number": 0,
        "response": {**RESPONSES_BODY, "status": "in_progress", "output": [], "usage": None},
    }
    delta = {
        "type": "response.output_text.delta",
        "sequence_number": 1,
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "Hi!",
        "logprobs": [],
    }
    done = {"type": "response.completed", "sequence_number": 2, "response": RESPONSES_BODY}
    events = [created, delta, done]
    proxy.upstream.reply = Reply(
        chunks=sse(*events, event_names=[e["type"] for e in events], done=False),
        content_type="text/event-stream",
    )
    stream = await c.responses.create(model="gpt-5", input="hi", stream=True)
    seen = [event.type async for event in stream]
    assert seen == ["response.created", "response.output_text.delta", "response.completed"]
    assert "stream_options" not in proxy.upstream.received[1].json()
    records = await proxy.records(2)
    assert records[1]["streamed"] == 1 and records[1]["endpoint"] == "/v1/responses"
    assert_usage(records[1], expected)


async def test_embeddings(proxy):
    proxy.upstream.reply = Reply(json_body=EMBEDDINGS_BODY)
    result = await client(proxy, "openai").embeddings.create(
        model="text-embedding-3-small", input="hello"
    )
    assert len(result.data[0].embedding) == 3
    record = await proxy.record()
    assert record["endpoint"] == "/v1/embeddings"
    assert_usage(record, dict(input_tokens=8))


async def test_custom_provider_from_config(upstream_server):
    from meterfox_cli.config import ProviderConfig
    from tests.conftest import start_proxy

    fake, server = upstream_server
    vllm = ProviderConfig("vllm", str(server.make_url("/vllm")), "openai")
    proxy, proxy_server = await start_proxy(fake, server, extra_providers=(vllm,))
    try:
        case = CASES[0]
        fake.reply = Reply(json_body=case.body)
        await client(proxy, "vllm").chat.completions.create(model="m", messages=[])
        assert fake.received[0].path_qs == "/vllm/v1/chat/completions"
        record = await proxy.record()
        assert record["provider"] == "vllm"
        assert_usage(record, case.expected)
    finally:
        await proxy_server.close()


def test_recorded_fixture_bodies_are_valid_json():
    for case in CASES:
        assert json.loads(json.dumps(case.body))["usage"]
