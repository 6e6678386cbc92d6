"""Audio, speech, images, moderation and OCR through the proxy with the real SDKs (issue 13):
each is recorded with its model and the usage it bills, priced as genai-prices prices it."""

from __future__ import annotations

import json
from decimal import Decimal

import genai_prices
import openai
import pytest

from meterfox_cli.money import to_nanousd
from tests.fakes.upstream import Reply, sse

AUDIO = b"RIFF" + bytes(range(256)) * 4096  # 1 MiB: far past what the form scan may hold


def sdk(proxy) -> openai.AsyncOpenAI:
    return proxy.track(
        openai.AsyncOpenAI(base_url=proxy.base("openai") + "/v1", api_key="sk-x", max_retries=0)
    )


def cost(model: str, provider: str = "openai", **usage) -> int:
    price = genai_prices.calc_price(genai_prices.Usage(**usage), model, provider_id=provider)
    return to_nanousd(price.total_price)


def units(row) -> dict:
    return json.loads(row["units"]) if row["units"] else {}


async def test_a_token_billed_transcription_from_a_streamed_upload(proxy):
    usage = {
        "type": "tokens",
        "input_tokens": 120,
        "input_token_details": {"text_tokens": 20, "audio_tokens": 100},
        "output_tokens": 30,
        "total_tokens": 150,
    }
    proxy.upstream.reply = Reply(json_body={"text": "hello", "usage": usage})
    result = await sdk(proxy).audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("talk.wav", AUDIO)
    )
    assert result.text == "hello"
    [received] = proxy.upstream.received
    assert AUDIO in received.body  # every byte of the upload reached the upstream
    row = await proxy.record()
    assert row["model"] == "gpt-4o-transcribe"  # read from the form, the upload unbuffered
    assert (row["input_tokens"], row["output_tokens"]) == (120, 30)
    assert units(row) == {"input_audio_tokens": 100}
    expected = cost("gpt-4o-transcribe", input_tokens=120, input_audio_tokens=100, output_tokens=30)
    assert row["cost_nanousd"] == expected and row["cost_source"] == "computed"


async def test_whisper_seconds_from_the_duration_usage(proxy):
    usage = {"type": "duration", "seconds": 61.5}
    proxy.upstream.reply = Reply(json_body={"text": "hello", "usage": usage})
    await sdk(proxy).audio.transcriptions.create(model="whisper-1", file=("talk.wav", AUDIO))
    row = await proxy.record()
    assert row["model"] == "whisper-1" and row["input_tokens"] == 0
    assert units(row) == {"audio_seconds": 61.5}
    assert row["cost_nanousd"] == cost("whisper-1", audio_seconds=61.5) > 0


async def test_groq_whisper_seconds_from_verbose_json_with_its_minimum(proxy):
    import groq

    body = {"task": "transcribe", "language": "en", "duration": 4.2, "text": "hi", "segments": []}
    proxy.upstream.reply = Reply(json_body=body)
    client = proxy.track(
        groq.AsyncGroq(api_key="gsk-x", base_url=proxy.base("groq"), max_retries=0)
    )
    await client.audio.transcriptions.create(
        model="whisper-large-v3", file=("talk.wav", AUDIO), response_format="verbose_json"
    )
    row = await proxy.record()
    assert row["model"] == "whisper-large-v3" and units(row) == {"audio_seconds": 4.2}
    # Groq bills at least 10 s a request: genai-prices applies it.
    assert row["cost_nanousd"] == cost("whisper-large-v3", "groq", audio_seconds=10)


async def test_tts_1_bills_the_request_characters(proxy):
    proxy.upstream.reply = Reply(chunks=[b"ID3\x04" + bytes(5000)], content_type="audio/mpeg")
    text = "Hello from the fox, spoken aloud."
    response = await sdk(proxy).audio.speech.create(model="tts-1", voice="alloy", input=text)
    assert response.content.startswith(b"ID3")
    row = await proxy.record()
    assert row["model"] == "tts-1" and units(row) == {"input_characters": len(text)}
    assert row["cost_nanousd"] == cost("tts-1", input_characters=len(text)) > 0


async def test_gpt_4o_mini_tts_bills_the_tokens_of_its_sse_answer(proxy):
    events = [
        {"type": "speech.audio.delta", "audio": "SUQzBAAAAAAA" * 100},
        {
            "type": "speech.audio.done",
            "usage": {"input_tokens": 14, "output_tokens": 1100, "total_tokens": 1114},
        },
    ]
    proxy.upstream.reply = Reply(chunks=sse(*events, done=False), content_type="text/event-stream")
    response = await sdk(proxy).audio.speech.create(
        model="gpt-4o-mini-tts", voice="alloy", input="Hi there", stream_format="sse"
    )
    assert b"speech.audio.done" in response.content
    row = await proxy.record()
    assert row["model"] == "gpt-4o-mini-tts"
    assert (row["input_tokens"], row["output_tokens"]) == (14, 1100)
    assert row["cost_nanousd"] == cost("gpt-4o-mini-tts", input_tokens=14, output_tokens=1100)


IMAGE_USAGE = {
    "input_tokens": 100,
    "input_tokens_details": {"text_tokens": 40, "image_tokens": 60},
    "output_tokens": 1000,
    "output_tokens_details": {"text_tokens": 100, "image_tokens": 900},
    "total_tokens": 1100,
}
IMAGE_COST = dict(
    input_tokens=100, input_image_tokens=60, output_tokens=1000, output_image_tokens=900
)


@pytest.mark.parametrize("call", ["generate", "edit"])
async def test_images_generated_or_edited_are_priced_from_usage(proxy, call):
    body = {"created": 1764000000, "data": [{"b64_json": "iVBORw0KGgo="}], "usage": IMAGE_USAGE}
    proxy.upstream.reply = Reply(json_body=body)
    images = sdk(proxy).images
    if call == "generate":
        await images.generate(model="gpt-image-1.5", prompt="a fox in snow")
    else:  # multipart: the model comes from the form, the image streams through
        await images.edit(model="gpt-image-1.5", image=("fox.png", AUDIO), prompt="add a hat")
    row = await proxy.record()
    assert row["model"] == "gpt-image-1.5"
    assert (row["input_tokens"], row["output_tokens"]) == (100, 1000)
    assert units(row) == {"input_image_tokens": 60, "output_image_tokens": 900}
    assert row["cost_nanousd"] == cost("gpt-image-1.5", **IMAGE_COST)


async def test_moderation_is_recorded_free(proxy):
    body = {
        "id": "modr-1",
        "model": "omni-moderation-2024-09-26",
        "results": [{"flagged": False, "categories": {}, "category_scores": {}}],
    }
    proxy.upstream.reply = Reply(json_body=body)
    await sdk(proxy).moderations.create(model="omni-moderation-latest", input="hello")
    row = await proxy.record()
    assert row["model"] == "omni-moderation-2024-09-26" and row["usage_known"] == 1
    assert row["cost_nanousd"] == 0 and row["cost_source"] == "provider"


async def test_mistral_ocr_pages_are_recorded_and_priced(proxy):
    from mistralai.client import Mistral

    body = {
        "pages": [
            {"index": i, "markdown": "# page", "images": [], "dimensions": None} for i in range(3)
        ],
        "model": "mistral-ocr-2505-completion",
        "usage_info": {"pages_processed": 3, "doc_size_bytes": 52_000},
    }
    proxy.upstream.reply = Reply(json_body=body)
    client = proxy.track(Mistral(api_key="mistral-key", server_url=proxy.base("mistral")))
    result = await client.ocr.process_async(
        model="mistral-ocr-latest",
        document={"type": "document_url", "document_url": "https://example.com/a.pdf"},
    )
    assert result.usage_info.pages_processed == 3
    row = await proxy.record()
    assert row["model"] == "mistral-ocr-2505-completion"
    assert units(row) == {"input_document_pages": 3}
    expected = cost("mistral-ocr-2505-completion", "mistral", input_document_pages=3)
    assert row["cost_nanousd"] == expected > 0


async def test_a_gemini_cache_creation_records_its_tokens_and_storage(proxy):
    from google import genai
    from google.genai import types

    cache = {
        "name": "cachedContents/abc123",
        "model": "models/gemini-2.5-flash",
        "displayName": "docs",
        "createTime": "2026-11-29T01:00:00.123456789Z",
        "updateTime": "2026-11-29T01:00:00.123456789Z",
        "expireTime": "2026-11-29T03:00:00.123456789Z",
        "usageMetadata": {"totalTokenCount": 40_000},
    }
    proxy.upstream.reply = Reply(json_body=cache)
    client = genai.Client(api_key="AIza-x", http_options={"base_url": proxy.base("gemini")})
    created = await client.aio.caches.create(
        model="gemini-2.5-flash",
        config=types.CreateCachedContentConfig(
            contents=[types.Content(role="user", parts=[types.Part(text="a long manual")])],
            ttl="7200s",
        ),
    )
    assert created.usage_metadata.total_token_count == 40_000
    row = await proxy.record()
    assert row["endpoint"].endswith("/cachedContents") and row["model"] == "gemini-2.5-flash"
    assert row["input_tokens"] == 40_000 and row["output_tokens"] == 0
    assert units(row) == {"cache_storage_token_hours": 80_000}  # 40,000 tokens kept 2 h
    # Creation at the input rate (genai-prices) plus storage at $1.00 per 1M tokens per hour
    # (ai.google.dev/gemini-api/docs/pricing, 2.5 Flash), which genai-prices does not carry.
    storage = to_nanousd(Decimal(80_000) * Decimal("1.00") / 1_000_000)
    creation = cost("gemini-2.5-flash", "google", input_tokens=40_000)
    assert row["cost_nanousd"] == creation + storage and row["cost_source"] == "computed"


async def test_a_streamed_transcription_reads_the_done_event_usage(proxy):
    usage = {
        "type": "tokens",
        "input_tokens": 90,
        "input_token_details": {"text_tokens": 10, "audio_tokens": 80},
        "output_tokens": 12,
        "total_tokens": 102,
    }
    events = [
        {"type": "transcript.text.delta", "delta": "hel"},
        {"type": "transcript.text.done", "text": "hello", "usage": usage},
    ]
    proxy.upstream.reply = Reply(chunks=sse(*events, done=False), content_type="text/event-stream")
    stream = await sdk(proxy).audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("talk.wav", AUDIO), stream=True
    )
    assert [event.type async for event in stream][-1] == "transcript.text.done"
    row = await proxy.record()
    assert row["model"] == "gpt-4o-transcribe" and row["streamed"] == 1
    assert (row["input_tokens"], row["output_tokens"]) == (90, 12)
    assert units(row) == {"input_audio_tokens": 80}
    expected = cost("gpt-4o-transcribe", input_tokens=90, input_audio_tokens=80, output_tokens=12)
    assert row["cost_nanousd"] == expected
