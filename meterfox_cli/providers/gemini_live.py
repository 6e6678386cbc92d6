"""Gemini Live over WebSocket (`/ws/google.ai.generativelanguage.{version}.GenerativeService.
BidiGenerateContent`): usage read from the server's messages, one reading per model turn.

The client's first message is `setup` with the model (`models/…`). Server messages may carry
`usageMetadata` beside their one payload (the Live API reference); Live names the output
`responseTokenCount` / `responseTokensDetails` where generateContent says `candidates…`.
A turn opens with the first `serverContent` after the last turn ended and finishes once both
its `serverContent.turnComplete` and its usage have been seen, in either order (the usage may
ride on the turnComplete message or come just before or after it). Several usageMetadata in one
turn are running values: the last one wins, never a sum. A turn that completes without usage
is closed without it when the next turn opens. Audio chunks are parsed only to open a turn.
"""

from __future__ import annotations

from meterfox_cli.providers.base import NO_NEWS, SocketNews, SocketTap, dig, json_message
from meterfox_cli.providers.gemini import usage_from
from meterfox_cli.usage import Reading

LIVE_METHOD = "BidiGenerateContent"
_LIVE_NAMES = (
    ("responseTokenCount", "candidatesTokenCount"),
    ("responseTokensDetails", "candidatesTokensDetails"),
)


class LiveTap(SocketTap):
    def __init__(self) -> None:
        self._model: str | None = None
        self._open = False
        self._complete = False
        self._usage: dict[str, object] | None = None

    @property
    def model(self) -> str | None:
        return self._model

    @property
    def open(self) -> int:
        return int(self._open)

    def from_client(self, message: str | bytes) -> None:
        if self._model is not None or not _holds(message, "setup"):
            return
        model = dig(json_message(message), "setup", "model")
        if isinstance(model, str) and model:
            self._model = model.removeprefix("models/")

    def from_server(self, message: str | bytes) -> SocketNews:
        noted = _holds(message, "usageMetadata") or _holds(message, "turnComplete")
        if not (noted or not self._open or self._complete):
            return NO_NEWS
        data = json_message(message)
        if data is None:
            return NO_NEWS
        content, usage = data.get("serverContent"), data.get("usageMetadata")
        content = content if isinstance(content, dict) else None
        finished: list[Reading] = []
        if content is not None and self._complete and not content.get("turnComplete"):
            finished.append(self._close())  # the last turn completed without usage
        started = 0
        if (content is not None or isinstance(usage, dict)) and not self._open:
            self._open, started = True, 1
        if isinstance(usage, dict):
            self._usage = usage
        if content is not None and content.get("turnComplete") is True:
            self._complete = True
        if self._complete and self._usage is not None:
            finished.append(self._close())
        return SocketNews(started=started, finished=tuple(finished))

    def _close(self) -> Reading:
        usage = self._usage
        self._open, self._complete, self._usage = False, False, None
        return Reading(model=self._model, usage=live_usage(usage) if usage else None)


def live_usage(metadata: dict[str, object]) -> object:
    """Live's usageMetadata through the generateContent normalisation (gemini.usage_from)."""
    renamed = dict(metadata)
    for live, standard in _LIVE_NAMES:
        if live in renamed and standard not in renamed:
            renamed[standard] = renamed.pop(live)
    return usage_from(renamed)


def _holds(message: str | bytes, key: str) -> bool:
    needle = f'"{key}"'
    return needle.encode() in message if isinstance(message, bytes) else needle in message
