"""Large JSON responses are skimmed for their usage, never parsed whole on the event loop:
the skim must read exactly what a full parse reads, for every format that skims."""

from __future__ import annotations

import json

import pytest

from meterfox_cli.providers.base import SKIM_JSON_BYTES, RequestPlan, WireFormat
from meterfox_cli.providers.cohere import CohereFormat
from meterfox_cli.providers.gemini import GeminiFormat
from tests.fixtures import cohere, gemini

PAD = "x" * (SKIM_JSON_BYTES + 1000)


def readings(wire: WireFormat, path: str, body: dict) -> tuple[object, object]:
    raw = json.dumps(body).encode()
    assert len(raw) > SKIM_JSON_BYTES and wire.skim(raw) is not None
    plan = RequestPlan(model="requested", stream=False, body=b"{}")
    whole = wire.read_body(json.loads(raw), plan, path)
    tap = wire.body_tap(plan, path, "application/json")
    tap.feed(raw)
    return whole, tap.reading()


def gemini_large_inline_image() -> dict:
    body = json.loads(json.dumps(gemini.JSON_BODY))
    body["candidates"][0]["content"]["parts"].append(
        {"inlineData": {"mimeType": "image/png", "data": PAD}}
    )
    return body


@pytest.mark.parametrize(
    ("wire", "path", "body"),
    [
        (
            GeminiFormat(),
            "/v1beta/models/gemini-2.5-flash:generateContent",
            gemini_large_inline_image(),
        ),
        (
            GeminiFormat(),
            "/v1/models/m:batchEmbedContents",
            {**gemini.BATCH_EMBED_BODY, "pad": PAD},
        ),
        (CohereFormat(), "/v2/chat", {**cohere.CHAT_BODY, "pad": PAD}),
        (CohereFormat(), "/v2/embed", {**cohere.EMBED_BODY, "texts": [PAD]}),
    ],
    ids=["gemini image", "gemini embed batch (no usage)", "cohere chat", "cohere embed"],
)
def test_skim_reads_what_a_full_parse_reads(wire, path, body):
    whole, skimmed = readings(wire, path, body)
    assert skimmed == whole


def test_gemini_skim_keeps_the_usage_and_model_version():
    _, skimmed = readings(
        GeminiFormat(), "/v1beta/models/m:generateContent", gemini_large_inline_image()
    )
    assert skimmed.usage is not None and skimmed.model == gemini.MODEL_VERSION
