"""A record's OpenTelemetry GenAI names: the conventions' well-known provider and operation
names, the usage attributes from the normalised shape, error.type, and tags only when named."""

from __future__ import annotations

import pytest

from meterfox_cli.metrics import semconv
from meterfox_cli.pricing.quote import NO_USAGE, Price
from meterfox_cli.records import Outcome
from meterfox_cli.usage import Reading, Usage
from tests.fakes.records import usage_record


@pytest.mark.parametrize(
    ("slug", "name"),
    [
        ("openai", "openai"),
        ("anthropic", "anthropic"),
        ("gemini", "gcp.gemini"),
        ("mistral", "mistral_ai"),
        ("xai", "x_ai"),
        ("groq", "groq"),
        ("together", "together"),  # no well-known value: the slug itself
    ],
)
def test_provider_names_are_the_conventions_well_known_values(slug, name):
    assert semconv.provider_name(slug) == name


@pytest.mark.parametrize(
    ("endpoint", "operation"),
    [
        ("/v1/chat/completions", "chat"),
        ("/v1/messages", "chat"),
        ("/v1/responses", "chat"),
        ("/v2/chat", "chat"),
        ("/v1/completions", "text_completion"),
        ("/v1/embeddings", "embeddings"),
        ("/v1beta/models/gemini-2.5-flash:generateContent", "generate_content"),
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", "generate_content"),
        ("/v1beta/models/text-embedding-004:embedContent", "embeddings"),
        ("/v1/audio/transcriptions", "other"),
    ],
)
def test_operation_names_follow_the_endpoint(endpoint, operation):
    assert semconv.operation_name(endpoint) == operation


def test_a_span_carries_the_usage_the_cost_and_only_the_named_tags():
    usage = Usage(
        input_tokens=5525,
        cached_tokens=4000,
        cache_write_tokens=1500,
        output_tokens=503,
        reasoning_tokens=380,
    )
    record = usage_record(
        provider="anthropic",
        model="claude-opus-4-1",
        endpoint="/v1/messages",
        reading=Reading(model="claude-opus-4-1", usage=usage),
        tags=(("feature", "search"), ("user", "u-1")),
    )
    attrs = semconv.span_attributes(record, Price(123_456_789, "computed"), tags={"feature"})
    assert {k: v for k, v in attrs.items() if k.startswith("gen_ai.")} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-opus-4-1",
        "gen_ai.response.model": "claude-opus-4-1",
        "gen_ai.usage.input_tokens": 5525,
        "gen_ai.usage.cache_read.input_tokens": 4000,
        "gen_ai.usage.cache_creation.input_tokens": 1500,
        "gen_ai.usage.output_tokens": 503,
        "gen_ai.usage.reasoning.output_tokens": 380,
    }
    assert attrs[semconv.COST_USD] == 0.123456789
    assert attrs["meterfox.tag.feature"] == "search"
    assert "meterfox.tag.user" not in attrs
    assert semconv.span_name(record) == "chat claude-opus-4-1"


def test_a_failure_names_its_error_type_and_has_no_usage():
    refused = usage_record(status=429, outcome=Outcome.UPSTREAM_ERROR, reading=Reading())
    cut = usage_record(status=200, outcome=Outcome.CLIENT_CLOSED, reading=Reading())
    assert semconv.span_attributes(refused, NO_USAGE)["error.type"] == "429"
    assert semconv.common_attributes(cut)["error.type"] == "client_closed"
    assert not any(k.startswith("gen_ai.usage.") for k in semconv.span_attributes(cut, NO_USAGE))
    assert semconv.COST_USD not in semconv.span_attributes(cut, NO_USAGE)
