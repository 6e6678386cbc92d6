"""Large responses through the proxy (issue 12, findings 6 and 7).

- A non-streamed body is held for its usage only when it is JSON, and never past the limit: a
  30 MiB text-to-speech answer is relayed without being kept.
- A Responses stream whose events are larger than the SSE parser holds (a base64 image in
  `response.output_item.done` and again in `response.completed`) still yields its usage.
Real openai SDK clients; fake upstreams on loopback.
"""

from __future__ import annotations

import base64
import json
import tracemalloc

import openai

from meterfox_cli.providers.base import MAX_JSON_BODY_BYTES, JsonTap, RequestPlan
from meterfox_cli.providers.openai import OpenAIFormat
from meterfox_cli.providers.sse import MAX_BLOCK_BYTES
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import RESPONSES_BODY

MIB = 1024 * 1024


def openai_client(proxy) -> openai.AsyncOpenAI:
    return proxy.track(
        openai.AsyncOpenAI(base_url=proxy.base("openai") + "/v1", api_key="sk-x", max_retries=0)
    )


async def test_a_large_audio_response_is_relayed_without_being_held(proxy):
    size = 30 * MIB
    chunks = [bytes([i]) * MIB for i in range(size // MIB)]  # allocated before the measure
    proxy.upstream.reply = Reply(chunks=chunks, content_type="audio/mpeg")
    received = 0
    tracemalloc.start()
    try:
        async with openai_client(proxy).audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input="hello"
        ) as response:
            async for piece in response.iter_bytes():
                received += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size
    # Everything in flight at once (upstream, proxy and client buffers) stays far below the body.
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB while relaying {size / MIB:.0f} MiB"
    record = await proxy.record()
    assert record["status"] == 200 and record["usage_known"] == 0


def test_a_json_body_past_the_limit_is_dropped_not_held():
    tap = JsonTap(OpenAIFormat(), RequestPlan(model="m", stream=False, body=b"{}"), "/v1/x")
    tracemalloc.start()
    try:
        tap.feed(b'{"data": "')
        for _ in range(MAX_JSON_BODY_BYTES // MIB + 2):
            tap.feed(b"a" * MIB)  # a fresh object each time, as the relay's reads are
        tap.feed(b'", "usage": {"prompt_tokens": 1, "total_tokens": 1}}')
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Held up to the limit while it may still be read; let go the moment it passes it.
    assert held < 4 * MIB, f"{held / MIB:.1f} MiB still held"
    assert tap.held == 0
    assert tap.reading().usage is None  # past the limit: forwarded, not read


def responses_stream_events(image_bytes: int) -> list[tuple[str, dict]]:
    image = base64.b64encode(b"\x89PNG" * (image_bytes // 4)).decode()
    item = {"type": "image_generation_call", "id": "ig_1", "status": "completed", "result": image}
    created = {**RESPONSES_BODY, "status": "in_progress", "output": [], "usage": None}
    done = {**RESPONSES_BODY, "output": [item], "tools": [{"type": "image_generation"}]}
    return [
        (
            "response.created",
            {"type": "response.created", "sequence_number": 0, "response": created},
        ),
        (
            "response.output_item.done",
            {
                "type": "response.output_item.done",
                "sequence_number": 1,
                "output_index": 0,
                "item": item,
            },
        ),
        (
            "response.completed",
            {"type": "response.completed", "sequence_number": 2, "response": done},
        ),
    ]


def sse_pieces(events: list[tuple[str, dict]], piece: int = 256 * 1024) -> list[bytes]:
    raw = b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)
    return [raw[at : at + piece] for at in range(0, len(raw), piece)]


async def test_a_responses_stream_with_events_over_the_sse_limit_keeps_its_usage(proxy):
    events = responses_stream_events(image_bytes=7 * MIB)  # base64: ~9.3 MiB per event
    completed = json.dumps(events[-1][1]).encode()
    assert len(completed) > MAX_BLOCK_BYTES
    proxy.upstream.reply = Reply(chunks=sse_pieces(events), content_type="text/event-stream")
    stream = await openai_client(proxy).responses.create(
        model="gpt-5", input="draw a fox", tools=[{"type": "image_generation"}], stream=True
    )
    seen = [event async for event in stream]
    assert [e.type for e in seen] == [name for name, _ in events]
    assert seen[-1].response.output[0].result == events[-1][1]["response"]["output"][0]["result"]
    record = await proxy.record()
    assert record["streamed"] == 1 and record["usage_known"] == 1
    assert record["model"] == RESPONSES_BODY["model"]
    assert (record["input_tokens"], record["cached_tokens"], record["output_tokens"]) == (
        3000,
        2048,
        900,
    )
