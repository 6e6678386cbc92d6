"""The OpenAI wire format, spoken by OpenAI and every OpenAI-compatible provider.

Covers chat completions, legacy completions, embeddings, images and the Responses API, JSON and
SSE; audio, moderation and OCR are read in openai_media.py, Realtime sockets in
openai_realtime.py.
Usage is read tolerantly across the providers' variants:
- cached input: DeepSeek's `prompt_cache_hit_tokens` first,
  else `prompt_tokens_details.cached_tokens`;
- reasoning left out of `completion_tokens` (xAI; Gemini's compat layer): when `total_tokens`
  exceeds prompt + completion, the gap is billed output, counted as reasoning if not reported;
- Groq's streamed `x_groq.usage` when no top-level usage arrives;
- the provider's own cost: OpenRouter `usage.cost`, Perplexity `usage.cost.total_cost`,
  xAI `usage.cost_in_usd_ticks` (1 USD = 1e10 ticks).

Only calls that generate are read for usage: POSTs, except those that act on an object that
exists (`…/chat/completions/{id}` updates a stored completion, `…/responses/{id}/cancel`,
`…/batches…`). A GET of a stored completion, a response or a list is a free request. A batch is
billed once, when a `GET …/batches/{id}` shows it finished with usage: at the batch rate
(`processing=batch`, the price context genai-prices keys batch rates on), under the dedupe key
`openai-batch:<id>`, so later reads of it are free.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType

from meterfox_cli.providers.base import (
    BodyTap,
    RequestPlan,
    SocketTap,
    StreamReader,
    WireFormat,
    dig,
)
from meterfox_cli.providers.openai_media import (
    SPEECH,
    RequestReadTap,
    media_reading,
    speech_reading,
)
from meterfox_cli.providers.openai_realtime import REALTIME_PATH, RealtimeTap
from meterfox_cli.providers.sse import SseBlock
from meterfox_cli.usage import Reading, Usage, as_int

# Only blocks that can hold a usage object are parsed as JSON (plus the first, for the model).
_HAS_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_STREAM_OPTIONS = b'"stream_options":{"include_usage":true},'
_USD_TICKS = Decimal(10) ** 10
# POSTs that act on an object that exists already: no usage is read from their answers.
_ON_AN_OBJECT = re.compile(r"/chat/completions/[^/]+$|/responses/[^/]+/cancel$|/batches(/|$)")
_BATCH = re.compile(r"/batches/[^/]+$")
# A batch in one of these states has run all it will run; its usage is what was billed.
_BATCH_FINISHED = frozenset({"completed", "expired", "cancelled"})
BATCH_CONTEXT = (("processing", "batch"),)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
}


class OpenAIFormat(WireFormat):
    name = "openai"
    skim_keys = ("usage", "model", "service_tier", "object", "status", "id")

    def __init__(self, inject_stream_usage: bool = True) -> None:
        self.inject_stream_usage = inject_stream_usage

    def plan(self, path: str, query: Mapping[str, str], body: bytes | None) -> RequestPlan:
        plan = super().plan(path, query, body)
        data = plan.request_json
        if not (plan.stream and self.inject_stream_usage and isinstance(data, dict)):
            return plan
        if not path.endswith("completions") or _asks_for_usage(data) or not _utf8(body):
            return plan
        return RequestPlan(
            model=plan.model,
            stream=True,
            body=_with_include_usage(body or b"", data),
            strip_usage_chunk=True,
            request_json=data,
        )

    def reads_usage(self, method: str, path: str) -> bool:
        if _BATCH.search(path):
            return method == "GET"
        return method == "POST" and not _ON_AN_OBJECT.search(path)

    def read_body(self, data: object, plan: RequestPlan, path: str) -> Reading:
        if not isinstance(data, dict):
            return Reading(model=plan.model)
        if _BATCH.search(path):
            return batch_reading(data, plan.model)
        media = media_reading(path, data, plan)
        if media is not None:
            return media
        return reading_from(data, data.get("usage"), plan.model)

    def body_tap(self, plan: RequestPlan, path: str, content_type: str, *, method: str) -> BodyTap:
        """Speech answers in raw audio: its usage is read from the request instead."""
        speech = method == "POST" and SPEECH.search(path) is not None
        if speech and not content_type.startswith("text/event-stream"):
            return RequestReadTap(speech_reading(plan))
        return super().body_tap(plan, path, content_type, method=method)

    def stream_reader(self, plan: RequestPlan, path: str) -> StreamReader:
        return OpenAIStreamReader(plan)

    def socket_tap(self, path: str, query: Mapping[str, str]) -> SocketTap | None:
        return RealtimeTap(query) if REALTIME_PATH.search(path) else None

    def error_body(self, status: int, message: str, kind: str) -> dict[str, object]:
        return {
            "error": {
                "message": message,
                "type": _ERROR_TYPES.get(status, "api_error"),
                "param": None,
                "code": kind,
            }
        }


class OpenAIStreamReader(StreamReader):
    """Keeps the model and the last non-null usage of a chat, completions or Responses stream."""

    skim_paths = (
        ("model",),
        ("service_tier",),
        ("usage",),
        ("x_groq", "usage"),
        ("response", "model"),
        ("response", "service_tier"),
        ("response", "usage"),
    )

    def __init__(self, plan: RequestPlan) -> None:
        self._plan = plan
        self._model: str | None = None
        self._frame: dict[str, object] | None = None
        self._usage: object = None
        self._groq_usage: object = None

    def wants(self, raw: bytes) -> bool:
        """Every block until the model is known; then those that may hold usage (a `"usage"`
        in the data is in the raw bytes: a data line is a piece of them)."""
        return self._model is None or b'"usage"' in raw

    def on_block(self, block: SseBlock) -> bool:
        data = block.data
        if data is None or data == b"[DONE]":
            return True
        if self._model is not None and not _HAS_USAGE.search(data):
            return True
        event = json.loads(data)
        if not isinstance(event, dict):
            return True
        response = event.get("response")
        if isinstance(response, dict):  # Responses API: response.created / .completed / ...
            self._note(response, response.get("usage"))
            return True
        self._note(event, event.get("usage"))
        groq = dig(event, "x_groq", "usage")
        if isinstance(groq, dict):
            self._groq_usage = groq
        usage_only = event.get("choices") == [] and isinstance(event.get("usage"), dict)
        return not (self._plan.strip_usage_chunk and usage_only)

    def reading(self) -> Reading:
        usage = self._usage if isinstance(self._usage, dict) else self._groq_usage
        return reading_from(self._frame or {}, usage, self._model or self._plan.model)

    def _note(self, frame: dict[str, object], usage: object) -> None:
        model = frame.get("model")
        if isinstance(model, str) and model:
            self._model = model
        if isinstance(usage, dict):
            self._usage = usage
            self._frame = frame


def reading_from(frame: dict[str, object], usage: object, fallback_model: str | None) -> Reading:
    """A Reading from a response (or final stream event) and its `usage` object."""
    model = frame.get("model")
    model = model if isinstance(model, str) and model else fallback_model
    tier = frame.get("service_tier")
    context = (("service_tier", tier),) if isinstance(tier, str) and tier else ()
    if not isinstance(usage, dict):
        return Reading(model=model, price_context=context)
    return Reading(
        model=model,
        usage=usage_from(usage),
        reported_cost_usd=reported_cost(usage),
        price_context=context,
    )


def batch_reading(batch: dict[str, object], fallback_model: str | None) -> Reading:
    """A batch object (`openai/types/batch.py`): its usage once it has finished, priced at the
    batch rate and counted once per batch id; nothing before."""
    model = batch.get("model")
    model = model if isinstance(model, str) and model else fallback_model
    batch_id, usage = batch.get("id"), batch.get("usage")
    finished = batch.get("object") == "batch" and batch.get("status") in _BATCH_FINISHED
    if not (finished and isinstance(batch_id, str) and isinstance(usage, dict)):
        return Reading(model=model)
    return Reading(
        model=model,
        usage=usage_from(usage),
        price_context=BATCH_CONTEXT,
        dedupe_key=f"openai-batch:{batch_id}",
    )


def usage_from(usage: dict[str, object]) -> Usage:
    """Normalise an OpenAI-style usage object (chat, embeddings or Responses API)."""
    if "prompt_tokens" not in usage and "input_tokens" in usage:
        return _responses_usage(usage)
    prompt = as_int(usage.get("prompt_tokens"))
    completion = as_int(usage.get("completion_tokens"))
    total = as_int(usage.get("total_tokens"))
    prompt_details = _details(usage, "prompt_tokens_details")
    completion_details = _details(usage, "completion_tokens_details")
    # Perplexity reports reasoning and citation tokens beside completion_tokens, not inside.
    beside = as_int(usage.get("reasoning_tokens")) + as_int(usage.get("citation_tokens"))
    reasoning = as_int(completion_details.get("reasoning_tokens")) or as_int(
        usage.get("reasoning_tokens")
    )
    if "prompt_cache_hit_tokens" in usage:
        cached = as_int(usage.get("prompt_cache_hit_tokens"))
    else:
        cached = as_int(prompt_details.get("cached_tokens"))
    output, reasoning = _output_with_hidden_reasoning(prompt, completion, total, reasoning, beside)
    units = _units(
        input_audio_tokens=prompt_details.get("audio_tokens"),
        output_audio_tokens=completion_details.get("audio_tokens"),
        input_image_tokens=prompt_details.get("image_tokens"),
        citation_tokens=usage.get("citation_tokens"),
        search_queries=usage.get("num_search_queries"),
    )
    return Usage(
        input_tokens=prompt,
        cached_tokens=min(cached, prompt),
        cache_write_tokens=as_int(prompt_details.get("cache_write_tokens")),
        output_tokens=output,
        reasoning_tokens=reasoning,
        units=units,
    )


def _responses_usage(usage: dict[str, object]) -> Usage:
    input_tokens = as_int(usage.get("input_tokens"))
    output = as_int(usage.get("output_tokens"))
    reasoning = as_int(dig(usage, "output_tokens_details", "reasoning_tokens"))
    output, reasoning = _output_with_hidden_reasoning(
        input_tokens, output, as_int(usage.get("total_tokens")), reasoning
    )
    return Usage(
        input_tokens=input_tokens,
        cached_tokens=min(
            as_int(dig(usage, "input_tokens_details", "cached_tokens")), input_tokens
        ),
        output_tokens=output,
        reasoning_tokens=reasoning,
        units=_units(
            # `input_token_details` (sic) in a streamed transcription's `transcript.text.done`
            input_audio_tokens=dig(usage, "input_tokens_details", "audio_tokens")
            or dig(usage, "input_token_details", "audio_tokens"),
            input_image_tokens=dig(usage, "input_tokens_details", "image_tokens"),
            output_image_tokens=dig(usage, "output_tokens_details", "image_tokens"),
        ),
    )


def _output_with_hidden_reasoning(
    prompt: int, completion: int, total: int, reasoning: int, beside: int = 0
) -> tuple[int, int]:
    """Billed output and reasoning, when a provider leaves reasoning out of the output count:
    the gap between total and prompt + completion, or the tokens it reports `beside` them."""
    hidden = max(total - prompt - completion, beside)
    if hidden <= 0:
        return completion, min(reasoning, completion)
    return completion + hidden, reasoning or hidden


def _details(usage: dict[str, object], key: str) -> Mapping[str, object]:
    """`usage[key]` where it is an object; an empty one otherwise (so `.get` gives None)."""
    details = usage.get(key)
    return details if isinstance(details, dict) else _NO_DETAILS


_NO_DETAILS: Mapping[str, object] = MappingProxyType({})


def _units(**values: object) -> tuple[tuple[str, float], ...]:
    counts = [(name, as_int(value)) for name, value in values.items()]
    return tuple((name, float(count)) for name, count in counts if count)


def reported_cost(usage: dict[str, object]) -> Decimal | None:
    """The provider's own figure in USD, where it reports one."""
    cost = usage.get("cost")
    if isinstance(cost, dict):
        cost = cost.get("total_cost")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        return _decimal(cost)
    ticks = usage.get("cost_in_usd_ticks")
    if isinstance(ticks, int) and not isinstance(ticks, bool):
        return Decimal(ticks) / _USD_TICKS
    return None


def _decimal(value: float) -> Decimal | None:
    try:
        result = Decimal(repr(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() and result >= 0 else None


def _utf8(body: bytes | None) -> bool:
    """Only a UTF-8 body can be edited in place (json.loads also reads UTF-16 and UTF-32):
    any other is forwarded untouched, without asking for stream usage."""
    try:
        (body or b"").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _asks_for_usage(request: dict[str, object]) -> bool:
    return dig(request, "stream_options", "include_usage") is True


def _with_include_usage(body: bytes, request: dict[str, object]) -> bytes:
    """The request body, asking for stream usage. Keeps the caller's bytes where it can."""
    if "stream_options" not in request:  # the object is not empty: it holds "stream": true
        start = body.find(b"{") + 1
        return body[:start] + _STREAM_OPTIONS + body[start:]
    options = request.get("stream_options")
    options = dict(options) if isinstance(options, dict) else {}
    options["include_usage"] = True
    return json.dumps({**request, "stream_options": options}).encode()
