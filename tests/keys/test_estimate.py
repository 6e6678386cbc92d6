"""The worst case a budgeted key reserves per request: read from each wire format's body."""

from __future__ import annotations

import json
import time

import pytest

from meterfox_cli.keys.estimate import DEFAULT_OUTPUT_TOKENS, FREE, estimate
from meterfox_cli.pricing.book import DEFAULT_BOOK, price_reading
from meterfox_cli.providers.registry import build_registry
from meterfox_cli.usage import Reading, Usage

REGISTRY = build_registry()


def plan_for(slug: str, path: str, body: bytes):
    return REGISTRY.get(slug).wire.for_path(path).plan(path, {}, body)


@pytest.mark.parametrize(
    ("slug", "path", "fields", "output"),
    [
        ("openai", "/v1/chat/completions", {"max_tokens": 700}, 700),
        ("openai", "/v1/chat/completions", {"max_completion_tokens": 900}, 900),
        ("openai", "/v1/chat/completions", {"max_completion_tokens": 900, "n": 3}, 2700),
        ("openai", "/v1/responses", {"max_output_tokens": 1200}, 1200),
        ("openai", "/v1/chat/completions", {}, DEFAULT_OUTPUT_TOKENS),
        ("openai", "/v1/chat/completions", {"max_tokens": "lots"}, DEFAULT_OUTPUT_TOKENS),
        ("anthropic", "/v1/messages", {"max_tokens": 64}, 64),
        (
            "gemini",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            {"generationConfig": {"maxOutputTokens": 333}},
            333,
        ),
    ],
)
def test_the_output_limit_is_read_from_each_format(slug, path, fields, output):
    model = {"gemini": "gemini-2.5-flash", "anthropic": "claude-sonnet-4-6"}.get(slug, "gpt-4o")
    body = json.dumps({"model": model, "messages": [], **fields}).encode()
    at = time.time()
    found = estimate(slug, plan_for(slug, path, body), body, DEFAULT_BOOK, at)
    assert (found.input_tokens, found.output_tokens) == (-(-len(body) // 4), output)
    usage = Usage(input_tokens=found.input_tokens, output_tokens=output)
    expected = price_reading(slug, model, at, Reading(model=model, usage=usage))
    assert found.nanousd == expected.cost_nanousd and found.nanousd


def test_what_cannot_be_priced_and_what_costs_nothing():
    path = "/v1/chat/completions"
    unknown = b'{"model": "no-such-model-anywhere", "max_tokens": 5}'
    assert (
        estimate("openai", plan_for("openai", path, unknown), unknown, DEFAULT_BOOK, 0).nanousd
        is None
    )
    garbage = b"not json"
    assert (
        estimate("openai", plan_for("openai", path, garbage), garbage, DEFAULT_BOOK, 0).nanousd
        is None
    )
    streamed = plan_for("openai", "/v1/audio/transcriptions", b"")
    assert estimate("openai", streamed, None, DEFAULT_BOOK, 0).nanousd is None  # an upload
    assert estimate("openai", plan_for("openai", "/v1/models", b""), b"", DEFAULT_BOOK, 0) == FREE
