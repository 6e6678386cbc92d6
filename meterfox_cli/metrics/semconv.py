"""The OpenTelemetry GenAI semantic conventions' names, and how a record maps onto them:
the provider's well-known name, the operation's, and a span's attributes. Pure: no SDK import,
so it is tested (and documented in docs/observability.md) without the `[otel]` extra.

Never a prompt or a response: only what the record holds (counts, names, times, status).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from meterfox_cli.money import from_nanousd
from meterfox_cli.pricing.quote import Price
from meterfox_cli.records import Outcome, UsageRecord

TOKEN_USAGE = "gen_ai.client.token.usage"
OPERATION_DURATION = "gen_ai.client.operation.duration"
# The conventions' ExplicitBucketBoundaries for the two histograms.
TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)

# MeterFox's own attributes (not in the conventions), documented in docs/observability.md.
COST_USD = "meterfox.cost.usd"
COST_SOURCE = "meterfox.cost.source"
TAG_PREFIX = "meterfox.tag."

# Registry slug → the conventions' well-known gen_ai.provider.name; any other slug is its own.
PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "groq": "groq",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
}

# The endpoint (the path after the slug) → a well-known gen_ai.operation.name; first match wins.
_OPERATIONS = (
    (re.compile(r"chat/completions$"), "chat"),
    (re.compile(r"/messages$"), "chat"),  # Anthropic
    (re.compile(r"/responses$"), "chat"),  # OpenAI Responses
    (re.compile(r"/chat$"), "chat"),  # Cohere v2
    (re.compile(r"/completions$"), "text_completion"),
    (re.compile(r"embeddings$|:(batchE|e)mbedContents?$|/embed$"), "embeddings"),
    (re.compile(r":(streamG|g)enerateContent$"), "generate_content"),
)
OTHER_OPERATION = "other"  # audio, images, moderation, predictions…: no well-known name


def provider_name(slug: str) -> str:
    return PROVIDER_NAMES.get(slug, slug)


def operation_name(endpoint: str) -> str:
    for pattern, name in _OPERATIONS:
        if pattern.search(endpoint):
            return name
    return OTHER_OPERATION


def is_error(record: UsageRecord) -> bool:
    """The same rule as `meterfox report`'s errors column."""
    return record.status >= 400 or record.outcome is not Outcome.OK


def error_type(record: UsageRecord) -> str | None:
    """`error.type`: the HTTP status when the upstream refused, else the outcome's name."""
    if record.status >= 400:
        return str(record.status)
    return None if record.outcome is Outcome.OK else str(record.outcome)


def common_attributes(record: UsageRecord) -> dict[str, str]:
    """The attributes a span and both histograms share (low cardinality)."""
    attrs = {
        "gen_ai.operation.name": operation_name(record.endpoint),
        "gen_ai.provider.name": provider_name(record.provider),
    }
    if record.model:
        attrs["gen_ai.request.model"] = record.model
    if record.reading.model:
        attrs["gen_ai.response.model"] = record.reading.model
    error = error_type(record)
    if error is not None:
        attrs["error.type"] = error
    return attrs


def span_name(record: UsageRecord) -> str:
    operation = operation_name(record.endpoint)
    return f"{operation} {record.model}" if record.model else operation


def span_attributes(
    record: UsageRecord, price: Price, tags: Collection[str] = ()
) -> dict[str, str | int | float | bool]:
    """Everything one request's span carries: the conventions' names for what they define,
    `meterfox.*` for the rest; only the tags named in `tags`."""
    attrs: dict[str, str | int | float | bool] = {
        **common_attributes(record),
        "http.response.status_code": record.status,
        "meterfox.request.id": record.id,
        "meterfox.key.name": record.key_name,
        "meterfox.endpoint": record.endpoint,
        "meterfox.outcome": str(record.outcome),
        "meterfox.streamed": record.streamed,
        COST_SOURCE: price.source,
    }
    usage = record.reading.usage
    if usage is not None:
        attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
        attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
        attrs["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
        attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
        attrs["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    if price.cost_nanousd is not None:
        attrs[COST_USD] = float(from_nanousd(price.cost_nanousd))
    if record.ttfb_ms is not None:
        attrs["meterfox.time_to_first_byte_s"] = record.ttfb_ms / 1000
    for name, value in record.tags:
        if name in tags:
            attrs[TAG_PREFIX + name] = value
    return attrs
