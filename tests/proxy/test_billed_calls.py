"""Usage is recorded only for the calls that generate and bill (issue 12, finding 2).

A read of an object that already exists (a stored completion, a response, a list, a batch in
progress) is a free request: recorded, with no usage. A batch is billed once per batch id, at
the batch rate, when a read shows it finished. Real SDK clients, fake upstreams on loopback.
"""

from __future__ import annotations

import json

import genai_prices
import openai
from google import genai
from google.genai import types

from meterfox_cli.money import to_nanousd
from tests.fakes.upstream import Received, Reply
from tests.fixtures import gemini as gemini_fx
from tests.fixtures.openai_style import RESPONSES_BODY, chat

BATCH_ID = "batch_6c0ffee"
BATCH_MODEL = "gpt-4o-mini-2024-07-18"
BATCH_USAGE = {
    "input_tokens": 120_000,
    "input_tokens_details": {"cached_tokens": 20_000},
    "output_tokens": 40_000,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 160_000,
}
CHAT_USAGE = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}


def openai_client(proxy) -> openai.AsyncOpenAI:
    return proxy.track(
        openai.AsyncOpenAI(base_url=proxy.base("openai") + "/v1", api_key="sk-x", max_retries=0)
    )


def batch(status: str) -> dict:
    """An OpenAI batch object (openai/types/batch.py); usage once it has run."""
    finished = status in ("completed", "expired", "cancelled")
    return {
        "id": BATCH_ID,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "model": BATCH_MODEL,
        "input_file_id": "file-in",
        "completion_window": "24h",
        "status": status,
        "output_file_id": "file-out" if finished else None,
        "created_at": 1764000000,
        "request_counts": {"total": 1000, "completed": 1000 if finished else 10, "failed": 0},
        "usage": BATCH_USAGE if finished else None,
    }


def billed(records) -> list:
    return [r for r in records if r["usage_known"] == 1]


async def test_a_batch_is_billed_once_at_the_batch_rate_however_often_it_is_read(proxy):
    statuses = iter(["in_progress", "completed", "completed", "completed"])
    proxy.upstream.reply = lambda received: Reply(json_body=batch(next(statuses)))
    sdk = openai_client(proxy)
    seen = [(await sdk.batches.retrieve(BATCH_ID)).status for _ in range(4)]
    assert seen == ["in_progress", "completed", "completed", "completed"]
    records = await proxy.records(4)
    assert len(records) == 4
    assert all(r["method"] == "GET" and r["endpoint"] == f"/v1/batches/{BATCH_ID}" for r in records)
    [row] = billed(records)
    assert row["id"] == records[1]["id"]  # the first read that saw it completed
    assert (row["input_tokens"], row["cached_tokens"], row["output_tokens"]) == (
        120_000,
        20_000,
        40_000,
    )
    assert row["model"] == BATCH_MODEL and row["dedupe_key"] == f"openai-batch:{BATCH_ID}"
    assert json.loads(row["price_context"]) == {"processing": "batch"}
    usage = genai_prices.Usage(input_tokens=120_000, cache_read_tokens=20_000, output_tokens=40_000)
    at_batch = genai_prices.calc_price(
        usage, BATCH_MODEL, provider_id="openai", price_context={"processing": "batch"}
    ).total_price
    standard = genai_prices.calc_price(usage, BATCH_MODEL, provider_id="openai").total_price
    assert at_batch < standard
    assert row["cost_nanousd"] == to_nanousd(at_batch) and row["cost_source"] == "computed"
    assert sum(r["cost_nanousd"] or 0 for r in records) == to_nanousd(at_batch)


async def test_reading_a_stored_completion_or_response_is_free(proxy):
    def reply(received: Received) -> Reply:
        if "/responses/" in received.path_qs:
            return Reply(json_body=RESPONSES_BODY)
        return Reply(json_body=chat("gpt-4o-2024-08-06", CHAT_USAGE))

    proxy.upstream.reply = reply
    sdk = openai_client(proxy)
    completion = await sdk.chat.completions.retrieve("chatcmpl-1")
    response = await sdk.responses.retrieve("resp_1")
    assert completion.usage.prompt_tokens == 100 and response.usage.input_tokens == 3000
    records = await proxy.records(2)
    assert [(r["method"], r["endpoint"]) for r in records] == [
        ("GET", "/v1/chat/completions/chatcmpl-1"),
        ("GET", "/v1/responses/resp_1"),
    ]
    assert billed(records) == []
    assert all(r["cost_source"] == "no_usage" and r["status"] == 200 for r in records)


async def test_a_large_list_of_completions_is_free(proxy):
    items = [
        chat("gpt-4o-2024-08-06", CHAT_USAGE, metadata={"note": "y" * 400}) for _ in range(200)
    ]
    page = {"object": "list", "data": items, "first_id": "a", "last_id": "b", "has_more": False}
    assert len(json.dumps(page)) > 64 * 1024
    proxy.upstream.reply = Reply(json_body=page)
    listed = await openai_client(proxy).chat.completions.list()
    assert len(listed.data) == 200
    record = await proxy.record()
    assert record["usage_known"] == 0 and record["cost_source"] == "no_usage"


async def test_a_large_gemini_batch_read_is_free(proxy):
    """A finished Gemini batch with its responses inline: each response has its own usage;
    the batch read does not charge the last one's."""
    inline = [{"response": {**gemini_fx.JSON_BODY, "pad": "z" * 500}} for _ in range(150)]
    operation = {
        "name": "batches/abc",
        "metadata": {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{gemini_fx.MODEL}",
            "state": "BATCH_STATE_SUCCEEDED",
            "output": {"inlinedResponses": {"inlinedResponses": inline}},
        },
        "done": True,
    }
    assert len(json.dumps(operation)) > 64 * 1024
    proxy.upstream.reply = Reply(json_body=operation)
    sdk = genai.Client(
        api_key="AIza-x", http_options=types.HttpOptions(base_url=proxy.base("gemini"))
    )
    try:
        job = await sdk.aio.batches.get(name="batches/abc")
    finally:
        await sdk.aio.aclose()
    assert len(job.dest.inlined_responses) == 150
    record = await proxy.record()
    assert record["method"] == "GET" and record["endpoint"].endswith("/batches/abc")
    assert record["usage_known"] == 0 and record["cost_source"] == "no_usage"


async def test_a_generating_call_is_still_billed(proxy):
    proxy.upstream.reply = Reply(json_body=chat("gpt-4o-2024-08-06", CHAT_USAGE))
    await openai_client(proxy).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    record = await proxy.record()
    assert record["usage_known"] == 1 and record["input_tokens"] == 100
