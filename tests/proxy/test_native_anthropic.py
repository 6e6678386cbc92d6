"""Anthropic Messages through the proxy, with the real `anthropic` SDK as the client.

The client sees what the upstream sent; the record has the normalised usage (cache reads and
writes inside input, the 1-hour write split, web searches), streamed and not.
"""

from __future__ import annotations

import json

import aiohttp
import anthropic
import pytest

from tests.fakes.upstream import Reply
from tests.fixtures import anthropic as fx

USAGE_FIELDS = (
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)
MESSAGES = [{"role": "user", "content": "hi"}]


def assert_usage(record, expected: dict, units: dict | None = None) -> None:
    assert {f: record[f] for f in USAGE_FIELDS} == {f: expected.get(f, 0) for f in USAGE_FIELDS}
    assert record["usage_known"] == 1
    assert json.loads(record["units"] or "{}") == (units or {})


class OlderAnthropic(anthropic.AsyncAnthropic):
    """The real SDK, authenticating as anthropic < 2 did: `x-api-key`, not Bearer."""

    @property
    def _api_key_auth(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key or ""}


def client(proxy, cls=anthropic.AsyncAnthropic):
    return proxy.track(
        cls(api_key="sk-ant-caller", base_url=proxy.base("anthropic"), max_retries=0)
    )


@pytest.mark.parametrize(
    ("cls", "header", "value"),
    [
        (anthropic.AsyncAnthropic, "Authorization", "Bearer sk-ant-caller"),
        (OlderAnthropic, "x-api-key", "sk-ant-caller"),
    ],
)
async def test_messages_create_json(proxy, cls, header, value):
    proxy.upstream.reply = Reply(json_body=fx.JSON_BODY)
    message = await client(proxy, cls).messages.create(
        model="claude-opus-4-1", max_tokens=1024, messages=MESSAGES
    )
    assert message.content[0].text == "Hello there!"
    assert message.usage.cache_read_input_tokens == 4000
    sent = proxy.upstream.received[0]
    headers = {name.lower(): v for name, v in sent.headers.items()}
    assert sent.path_qs == "/v1/messages"
    assert headers[header.lower()] == value  # the caller's credential, in the caller's form
    assert "authorization" not in headers or header == "Authorization"
    assert "anthropic-version" in headers
    record = await proxy.record()
    assert record["provider"] == "anthropic" and record["model"] == fx.MODEL
    assert record["endpoint"] == "/v1/messages" and record["streamed"] == 0
    assert record["outcome"] == "ok" and record["status"] == 200
    assert_usage(record, fx.JSON_EXPECTED, {"web_search_requests": 1.0})


@pytest.mark.parametrize("cls", [anthropic.AsyncAnthropic, OlderAnthropic])
async def test_messages_stream(proxy, cls):
    proxy.upstream.reply = Reply(chunks=fx.stream_events(), content_type="text/event-stream")
    async with client(proxy, cls).messages.stream(
        model="claude-opus-4-1", max_tokens=1024, messages=MESSAGES
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "Hello"
    assert final.usage.output_tokens == 42  # the SDK, too, replaces rather than adds
    record = await proxy.record()
    assert record["streamed"] == 1 and record["model"] == fx.MODEL
    assert_usage(record, fx.STREAM_EXPECTED, {"web_search_requests": 2.0})


async def test_raw_stream_bytes_reach_the_client_unchanged(proxy):
    chunks = fx.stream_events()
    proxy.upstream.reply = Reply(chunks=chunks, content_type="text/event-stream")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            proxy.base("anthropic") + "/v1/messages",
            json={"model": "claude-opus-4-1", "max_tokens": 8, "stream": True, "messages": []},
            headers={"x-api-key": "sk-ant-caller", "anthropic-version": "2023-06-01"},
        ) as response,
    ):
        assert await response.read() == b"".join(chunks)
    assert_usage(await proxy.record(), fx.STREAM_EXPECTED, {"web_search_requests": 2.0})


async def test_error_event_midway_raises_in_the_sdk_and_keeps_usage_so_far(proxy):
    proxy.upstream.reply = Reply(
        chunks=fx.stream_with_error_midway(), content_type="text/event-stream"
    )
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client(proxy).messages.stream(
            model="claude-opus-4-1", max_tokens=1024, messages=MESSAGES
        ) as stream:
            [t async for t in stream.text_stream]
    assert caught.value.body == fx.OVERLOADED
    record = await proxy.record()
    expected = {**fx.STREAM_EXPECTED, "output_tokens": 1}
    assert_usage(record, expected)


async def test_upstream_error_reaches_the_sdk_as_its_exception(proxy):
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    proxy.upstream.reply = Reply(status=429, json_body=body)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client(proxy).messages.create(model="m", max_tokens=1, messages=MESSAGES)
    assert caught.value.body == body
    record = await proxy.record()
    assert record["outcome"] == "upstream_error" and record["usage_known"] == 0


async def test_proxy_error_is_in_anthropic_shape(upstream_server):
    """Upstream unreachable: the SDK raises its own typed error from the proxy's 502 body."""
    from tests.conftest import start_proxy

    fake, server = upstream_server
    proxy, proxy_server = await start_proxy(fake, server)
    await server.close()  # nothing listens on the upstream port any more
    try:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await client(proxy).messages.create(model="m", max_tokens=1, messages=MESSAGES)
        assert caught.value.status_code == 502
        assert caught.value.body["type"] == "error"
        assert caught.value.body["error"]["type"] == "api_error"
    finally:
        await proxy.close_clients()
        await proxy_server.close()


async def test_count_tokens_is_recorded_free(proxy):
    proxy.upstream.reply = Reply(json_body=fx.COUNT_TOKENS_BODY)
    counted = await client(proxy).messages.count_tokens(model="claude-opus-4-1", messages=MESSAGES)
    assert counted.input_tokens == 2095
    record = await proxy.record()
    assert record["endpoint"] == "/v1/messages/count_tokens"
    assert_usage(record, {})
    assert record["cost_nanousd"] == 0 and record["reported_cost_usd"] == "0"


async def test_batch_create_is_recorded_without_usage(proxy):
    batch = {
        "id": "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message_batch",
        "processing_status": "in_progress",
        "request_counts": {
            "processing": 1,
            "succeeded": 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
        "ended_at": None,
        "created_at": "2026-11-01T12:00:00Z",
        "expires_at": "2026-11-02T12:00:00Z",
        "cancel_initiated_at": None,
        "results_url": None,
    }
    proxy.upstream.reply = Reply(json_body=batch)
    params = {"model": "claude-opus-4-1", "max_tokens": 8, "messages": MESSAGES}
    created = await client(proxy).messages.batches.create(
        requests=[{"custom_id": "one", "params": params}]
    )
    assert created.id == batch["id"]
    record = await proxy.record()
    assert record["endpoint"] == "/v1/messages/batches" and record["usage_known"] == 0
