"""OpenAI Realtime over WebSocket (`/v1/realtime?model=…`): usage read from the server's events.

A Realtime session bills per response. `response.created` opens one; `response.done` closes it
with `response.usage` (openai/types/realtime/realtime_response_usage.py):
`input_tokens` (text + audio + image, cached included), `input_token_details.{text_tokens,
audio_tokens, image_tokens, cached_tokens, cached_tokens_details.{text_tokens, audio_tokens,
image_tokens}}`, `output_tokens`, `output_token_details.{text_tokens, audio_tokens}`. Audio and
image tokens become the units genai-prices prices apart (`input_audio_tokens`,
`cache_audio_read_tokens`, `output_audio_tokens`, …): parts of the input / output totals.
The model is the URL's `?model=`, replaced by `session.model` from `session.created` or
`session.updated`. Only those four event types are parsed: audio deltas pass unread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from meterfox_cli.providers.base import NO_NEWS, SocketNews, SocketTap, dig, json_message
from meterfox_cli.usage import Reading, Usage, as_int

REALTIME_PATH = re.compile(r"/realtime/?$")
# A JSON string value cannot hold an unescaped quote, so this literal is only ever a real key.
_NOTED = re.compile(
    r'"type"\s*:\s*"(?:session\.created|session\.updated|response\.(?:created|done))"'
)


class RealtimeTap(SocketTap):
    def __init__(self, query: Mapping[str, str]) -> None:
        model = query.get("model")
        self._model = model or None
        self._open = 0

    @property
    def model(self) -> str | None:
        return self._model

    @property
    def open(self) -> int:
        return self._open

    def from_client(self, message: str | bytes) -> None:
        return None  # the model is in the URL; responses open on the server's word

    def from_server(self, message: str | bytes) -> SocketNews:
        if not isinstance(message, str) or not _NOTED.search(message):
            return NO_NEWS
        event = json_message(message)
        kind = event.get("type") if event else None
        if kind in ("session.created", "session.updated"):
            model = dig(event, "session", "model")
            if isinstance(model, str) and model:
                self._model = model
            return NO_NEWS
        if kind == "response.created":
            self._open += 1
            return SocketNews(started=1)
        if kind != "response.done":
            return NO_NEWS
        started = 0 if self._open else 1  # a `done` whose `created` was never seen
        self._open = max(self._open - 1, 0)
        usage = dig(event, "response", "usage")
        reading = Reading(
            model=self._model,
            usage=realtime_usage(usage) if isinstance(usage, dict) else None,
        )
        return SocketNews(started=started, finished=(reading,))


def realtime_usage(usage: dict[str, object]) -> Usage:
    """A `response.done` event's `response.usage`, normalised."""
    input_tokens = as_int(usage.get("input_tokens"))
    output_tokens = as_int(usage.get("output_tokens"))
    details = usage.get("input_token_details")
    cached = as_int(dig(details, "cached_tokens"))
    units = {
        "input_audio_tokens": dig(details, "audio_tokens"),
        "input_image_tokens": dig(details, "image_tokens"),
        "cache_audio_read_tokens": dig(details, "cached_tokens_details", "audio_tokens"),
        "cache_image_read_tokens": dig(details, "cached_tokens_details", "image_tokens"),
        "output_audio_tokens": dig(usage, "output_token_details", "audio_tokens"),
    }
    return Usage(
        input_tokens=input_tokens,
        cached_tokens=min(cached, input_tokens),
        output_tokens=output_tokens,
        units=tuple((name, float(as_int(v))) for name, v in units.items() if as_int(v)),
    )
