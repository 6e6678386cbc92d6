"""The Anthropic Messages wire format (`/v1/messages`), JSON and SSE.

Usage (docs/providers.md, "Anthropic"): Anthropic counts cache reads and writes outside
`input_tokens`, so the normalised input is input + cache reads + cache writes. A stream's usage
is `message_start.message.usage` updated by every `message_delta.usage`: the delta values are
cumulative, so non-null fields replace, never add. A stream that breaks (`event: error` part-way,
or a cut) keeps the usage seen so far: the input side from `message_start` is already billed.

`/v1/messages/count_tokens` is free: it is recorded with zero usage and a zero cost.
Only those two POSTs are read for usage. Message Batches (`/v1/messages/batches…`) are free
requests: a batch object carries no usage, which is only per line of its results file.
"""

from __future__ import annotations

import json

from meterfox_cli.providers.base import (
    RequestPlan,
    StreamReader,
    WireFormat,
    dig,
    token_count_reading,
)
from meterfox_cli.providers.openai import OpenAIFormat
from meterfox_cli.providers.sse import SseBlock
from meterfox_cli.usage import Reading, Usage, as_int

# The SSE events that can carry usage or the model; every other event is forwarded unread.
_READ_EVENTS = frozenset({"message_start", "message_delta"})
_TYPE_MARKERS = (b'"message_start"', b'"message_delta"')

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class AnthropicFormat(WireFormat):
    name = "anthropic"

    def __init__(self) -> None:
        # Anthropic's OpenAI SDK compatibility layer; whether it honours stream_options is not
        # documented, so the proxy does not ask for stream usage there.
        self._openai = OpenAIFormat(inject_stream_usage=False)

    def for_path(self, path: str) -> WireFormat:
        return self._openai if path.endswith("/chat/completions") else self

    def reads_usage(self, method: str, path: str) -> bool:
        return method == "POST" and path.endswith(("/messages", "/messages/count_tokens"))

    def read_body(self, data: object, plan: RequestPlan, path: str) -> Reading:
        if path.endswith("/count_tokens"):
            return token_count_reading(plan, isinstance(data, dict) and "input_tokens" in data)
        if not isinstance(data, dict) or data.get("type") != "message":
            return Reading(model=plan.model)
        return reading_from(data.get("model"), data.get("usage"), plan.model)

    def stream_reader(self, plan: RequestPlan, path: str) -> StreamReader:
        return AnthropicStreamReader(plan)

    def error_body(self, status: int, message: str, kind: str) -> dict[str, object]:
        error_type = _ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": error_type, "message": message}}


class AnthropicStreamReader(StreamReader):
    """Merges `message_start` usage with each `message_delta` usage (cumulative: replace)."""

    skim_paths = (("type",), ("message", "model"), ("message", "usage"), ("usage",))

    def __init__(self, plan: RequestPlan) -> None:
        self._plan = plan
        self._model: object = None
        self._usage: dict[str, object] | None = None

    def wants(self, raw: bytes) -> bool:
        """Only a block named, or typed, message_start or message_delta (see `_may_matter`)."""
        return b"message_start" in raw or b"message_delta" in raw

    def on_block(self, block: SseBlock) -> bool:
        data = block.data
        if data is None or not _may_matter(block.event, data):
            return True
        event = json.loads(data)
        if not isinstance(event, dict):
            return True
        kind = event.get("type") or block.event
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                self._model = message.get("model")
                usage = message.get("usage")
                self._usage = dict(usage) if isinstance(usage, dict) else {}
        elif kind == "message_delta":
            usage = event.get("usage")
            if isinstance(usage, dict):
                merged = self._usage if self._usage is not None else {}
                merged.update({k: v for k, v in usage.items() if v is not None})
                self._usage = merged
        return True

    def reading(self) -> Reading:
        return reading_from(self._model, self._usage, self._plan.model)


def _may_matter(event: str, data: bytes) -> bool:
    if event:
        return event in _READ_EVENTS
    return any(marker in data for marker in _TYPE_MARKERS)  # a stream without `event:` lines


def reading_from(model: object, usage: object, fallback_model: str | None) -> Reading:
    name = model if isinstance(model, str) and model else fallback_model
    if not isinstance(usage, dict):
        return Reading(model=name)
    context = tuple(
        (key, value)
        for key in ("service_tier", "speed")
        if isinstance(value := usage.get(key), str) and value
    )
    return Reading(model=name, usage=usage_from(usage), price_context=context)


def usage_from(usage: dict[str, object]) -> Usage:
    """Normalise Anthropic usage: cache reads and writes join the input count."""
    uncached = as_int(usage.get("input_tokens"))
    cache_read = as_int(usage.get("cache_read_input_tokens"))
    write_5m = as_int(dig(usage, "cache_creation", "ephemeral_5m_input_tokens"))
    write_1h = as_int(dig(usage, "cache_creation", "ephemeral_1h_input_tokens"))
    cache_write = max(as_int(usage.get("cache_creation_input_tokens")), write_5m + write_1h)
    output = as_int(usage.get("output_tokens"))
    thinking = as_int(dig(usage, "output_tokens_details", "thinking_tokens"))
    units = tuple(
        (name, float(count))
        for name in ("web_search_requests", "web_fetch_requests")
        if (count := as_int(dig(usage, "server_tool_use", name)))
    )
    return Usage(
        input_tokens=uncached + cache_read + cache_write,
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=min(write_1h, cache_write),
        output_tokens=output,
        reasoning_tokens=min(thinking, output),
        units=units,
    )
