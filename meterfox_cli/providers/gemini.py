"""The Gemini API wire format (generativelanguage: `/v1beta/…` and `/v1/…`).

`models/{model}:generateContent`, `:streamGenerateContent` (SSE with `?alt=sse`, else one JSON
array that arrives piece by piece), `:embedContent`, `:batchEmbedContents`, `:countTokens`.
The model is in the URL path; the response's `modelVersion` wins when present.

Usage is the last `usageMetadata` of a response (stream values are running totals: never
added). Gemini counts cached tokens inside `promptTokenCount` and thoughts outside
`candidatesTokenCount`, so: input = prompt + tool-use prompt; cached = cachedContentTokenCount;
output = candidates + thoughts; reasoning = thoughts. `:countTokens` is free: zero usage,
zero cost. Paths under `/openai/` are Gemini's OpenAI-compatible layer, read by OpenAIFormat.
Only those five methods, POSTed, are read for usage, and a cache's creation (`POST
cachedContents`: its tokens as input, its storage as token-hours, see `cache_reading`): every
other call (a batch read, a list, a file, a cache's TTL update) is a free request. A batch's usage is per response inside it; it is not read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime

from meterfox_cli.providers.base import (
    BodyTap,
    JsonTap,
    RequestPlan,
    SocketTap,
    StreamReader,
    WireFormat,
    dig,
    token_count_reading,
)
from meterfox_cli.providers.json_array import JsonArrayTap
from meterfox_cli.providers.openai import OpenAIFormat
from meterfox_cli.providers.sse import SseBlock
from meterfox_cli.usage import Reading, Usage, as_int

# `/v1beta/models/gemini-2.5-flash:generateContent`, `/v1/tunedModels/x:streamGenerateContent`
_MODEL_METHOD = re.compile(r"/((?:tuned)?[mM]odels)/([^/:]+):(\w+)$")
_USAGE = b'"usageMetadata"'
_CACHE_CREATE = re.compile(r"/cachedContents$")
_FRACTION = re.compile(r"(\.\d{6})\d+")
_BILLED_METHODS = frozenset(
    {
        "generateContent",
        "streamGenerateContent",
        "embedContent",
        "batchEmbedContents",
        "countTokens",
    }
)

_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# Per-modality token lists → provider-specific units (priced apart for audio and images).
_MODALITY_UNITS = (
    ("promptTokensDetails", "AUDIO", "input_audio_tokens"),
    ("promptTokensDetails", "IMAGE", "input_image_tokens"),
    ("candidatesTokensDetails", "AUDIO", "output_audio_tokens"),
    ("candidatesTokensDetails", "IMAGE", "output_image_tokens"),
)


class GeminiFormat(WireFormat):
    name = "gemini"
    skim_keys = ("usageMetadata", "modelVersion")

    def __init__(self) -> None:
        # Gemini's OpenAI-compatible layer leaves thinking out of completion_tokens; the OpenAI
        # adapter counts the `total − prompt − completion` gap as billed reasoning output.
        # Whether the layer accepts `stream_options` is not documented: never add it.
        self._openai = OpenAIFormat(inject_stream_usage=False)

    def for_path(self, path: str) -> WireFormat:
        return self._openai if "/openai/" in path else self

    def plan(self, path: str, query: Mapping[str, str], body: bytes | None) -> RequestPlan:
        """Model and method come from the path; the body (which may hold inline media) is not
        parsed at all."""
        found = _MODEL_METHOD.search(path)
        model = found.group(2) if found else None
        if found and found.group(1) == "tunedModels":
            model = f"tunedModels/{model}"
        stream = bool(found) and found.group(3) == "streamGenerateContent"
        return RequestPlan(model=model, stream=stream, body=body)

    def reads_usage(self, method: str, path: str) -> bool:
        if method == "POST" and _CACHE_CREATE.search(path):
            return True
        found = _MODEL_METHOD.search(path)
        return method == "POST" and found is not None and found.group(3) in _BILLED_METHODS

    def read_body(self, data: object, plan: RequestPlan, path: str) -> Reading:
        if _CACHE_CREATE.search(path):
            return cache_reading(data, plan.model) if isinstance(data, dict) else Reading()
        if path.endswith(":countTokens"):
            return token_count_reading(plan, isinstance(data, dict) and "totalTokens" in data)
        if isinstance(data, list):  # a JSON-array stream, or a tap's last usage element
            data = next((d for d in reversed(data) if isinstance(d, dict) and _has(d)), None)
        if not isinstance(data, dict):
            return Reading(model=plan.model)
        return reading_from(data, plan.model)

    def stream_reader(self, plan: RequestPlan, path: str) -> StreamReader:
        return GeminiStreamReader(plan)

    def json_tap(self, plan: RequestPlan, path: str) -> BodyTap:
        if plan.stream:
            return JsonArrayTap(self, plan, path, wanted=_holds_usage)
        return JsonTap(self, plan, path)

    def socket_tap(self, path: str, query: Mapping[str, str]) -> SocketTap | None:
        # Imported here: gemini_live builds on this module's usage_from.
        from meterfox_cli.providers.gemini_live import LIVE_METHOD, LiveTap

        return LiveTap() if path.endswith(LIVE_METHOD) else None

    def error_body(self, status: int, message: str, kind: str) -> dict[str, object]:
        return {
            "error": {
                "code": status,
                "message": message,
                "status": _STATUSES.get(status, "UNKNOWN"),
            }
        }


class GeminiStreamReader(StreamReader):
    """Keeps the raw data of the last SSE event holding `usageMetadata`; parses it once."""

    skim_paths = (("usageMetadata",), ("modelVersion",))

    def __init__(self, plan: RequestPlan) -> None:
        self._plan = plan
        self._last: bytes | None = None

    def wants(self, raw: bytes) -> bool:
        return _USAGE in raw

    def on_block(self, block: SseBlock) -> bool:
        if block.data is not None and _USAGE in block.data:
            self._last = block.data
        return True

    def reading(self) -> Reading:
        if self._last is None:
            return Reading(model=self._plan.model)
        data = json.loads(self._last)
        if not isinstance(data, dict):
            return Reading(model=self._plan.model)
        return reading_from(data, self._plan.model)


def cache_reading(cache: dict[str, object], fallback_model: str | None) -> Reading:
    """A created cache (`cachedContents`): its tokens as input, billed once at the standard
    input rate; the storage it holds for its TTL as the `cache_storage_token_hours` unit
    (tokens × hours, createTime to expireTime), which genai-prices has no price for."""
    model = cache.get("model")
    model = model.removeprefix("models/") if isinstance(model, str) and model else fallback_model
    tokens = as_int(dig(cache, "usageMetadata", "totalTokenCount"))
    if not tokens:
        return Reading(model=model)
    hours = _hours_between(cache.get("createTime"), cache.get("expireTime"))
    units = (("cache_storage_token_hours", tokens * hours),) if hours else ()
    return Reading(model=model, usage=Usage(input_tokens=tokens, units=units))


def _hours_between(start: object, end: object) -> float:
    try:
        first, last = (datetime.fromisoformat(_FRACTION.sub(r"\1", t)) for t in (start, end))
    except (TypeError, ValueError):
        return 0.0
    return max((last - first).total_seconds(), 0.0) / 3600


def _holds_usage(element: bytes) -> bool:
    return _USAGE in element


def _has(data: dict[str, object]) -> bool:
    return isinstance(data.get("usageMetadata"), dict)


def reading_from(data: dict[str, object], fallback_model: str | None) -> Reading:
    version = data.get("modelVersion")
    model = version if isinstance(version, str) and version else fallback_model
    metadata = data.get("usageMetadata")
    if not isinstance(metadata, dict):
        return Reading(model=model)
    tier = metadata.get("serviceTier")
    context = (("service_tier", tier),) if isinstance(tier, str) and tier else ()
    return Reading(model=model, usage=usage_from(metadata), price_context=context)


def usage_from(metadata: dict[str, object]) -> Usage:
    """Normalise `usageMetadata`: thoughts join the output, tool-use prompt joins the input."""
    input_tokens = as_int(metadata.get("promptTokenCount")) + as_int(
        metadata.get("toolUsePromptTokenCount")
    )
    thoughts = as_int(metadata.get("thoughtsTokenCount"))
    output = as_int(metadata.get("candidatesTokenCount")) + thoughts
    units = tuple(
        (unit, float(count))
        for field, modality, unit in _MODALITY_UNITS
        if (count := _modality_count(metadata.get(field), modality))
    )
    return Usage(
        input_tokens=input_tokens,
        cached_tokens=min(as_int(metadata.get("cachedContentTokenCount")), input_tokens),
        output_tokens=output,
        reasoning_tokens=thoughts,
        units=units,
    )


def _modality_count(details: object, modality: str) -> int:
    if not isinstance(details, list):
        return 0
    return sum(
        as_int(dig(item, "tokenCount")) for item in details if dig(item, "modality") == modality
    )
