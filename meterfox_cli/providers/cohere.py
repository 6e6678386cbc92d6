"""The Cohere v2 wire format: `/v2/chat` (JSON and SSE), `/v2/embed`, `/v2/rerank`.

`billed_units` are what Cohere charges, so they are the usage; `tokens` (raw counts with the
prompt template) are not. Chat has them at `usage.billed_units`, embed and rerank at
`meta.billed_units` (rerank bills `search_units`). Responses carry no model: the request's is
kept. A chat stream has its usage only in the `message-end` event, at `delta.usage`.
`usage.cached_tokens` ("prompt tokens that hit the inference cache") has no documented price
effect, so it is kept as a unit, not as cached input. Paths under `/compatibility/` are
Cohere's OpenAI-compatible layer, read by OpenAIFormat.
"""

from __future__ import annotations

import json

from meterfox_cli.providers.base import (
    RequestPlan,
    StreamReader,
    WireFormat,
    dig,
)
from meterfox_cli.providers.openai import OpenAIFormat
from meterfox_cli.providers.sse import SseBlock
from meterfox_cli.usage import Reading, Usage, as_int

_MESSAGE_END = b'"message-end"'

# billed_units fields other than input/output tokens → units.
_BILLED_UNITS = ("search_units", "classifications", "images", "image_tokens", "pages")


class CohereFormat(WireFormat):
    name = "cohere"
    skim_keys = ("usage", "meta")  # chat; embed and rerank (embedding batches echo their texts)

    def __init__(self) -> None:
        self._openai = OpenAIFormat(inject_stream_usage=False)

    def for_path(self, path: str) -> WireFormat:
        return self._openai if path.startswith("/compatibility/") else self

    def read_body(self, data: object, plan: RequestPlan, path: str) -> Reading:
        if not isinstance(data, dict):
            return Reading(model=plan.model)
        holder = data.get("usage") if isinstance(data.get("usage"), dict) else data.get("meta")
        return reading_from(holder, plan.model)

    def stream_reader(self, plan: RequestPlan, path: str) -> StreamReader:
        return CohereStreamReader(plan)

    def error_body(self, status: int, message: str, kind: str) -> dict[str, object]:
        return {"message": message}


class CohereStreamReader(StreamReader):
    """Reads `message-end` (the one event with usage); every other event goes by unparsed."""

    skim_paths = (("type",), ("delta", "usage"))

    def __init__(self, plan: RequestPlan) -> None:
        self._plan = plan
        self._usage: object = None

    def wants(self, raw: bytes) -> bool:
        """Only a block named, or typed, message-end."""
        return b"message-end" in raw

    def on_block(self, block: SseBlock) -> bool:
        data = block.data
        if data is None:
            return True
        if block.event != "message-end" and not (not block.event and _MESSAGE_END in data):
            return True
        event = json.loads(data)
        usage = dig(event, "delta", "usage")
        if isinstance(usage, dict):
            self._usage = usage
        return True

    def reading(self) -> Reading:
        return reading_from(self._usage, self._plan.model)


def reading_from(holder: object, model: str | None) -> Reading:
    """A Reading from the object that holds `billed_units` (chat `usage`, or embed/rerank
    `meta`)."""
    billed = dig(holder, "billed_units")
    if not isinstance(billed, dict):
        return Reading(model=model)
    return Reading(model=model, usage=usage_from(billed, dig(holder, "cached_tokens")))


def usage_from(billed: dict[str, object], cached: object = None) -> Usage:
    units = [(name, float(as_int(billed.get(name)))) for name in _BILLED_UNITS]
    units.append(("inference_cache_tokens", float(as_int(cached))))
    return Usage(
        input_tokens=as_int(billed.get("input_tokens")),
        output_tokens=as_int(billed.get("output_tokens")),
        units=tuple((name, count) for name, count in units if count),
    )
