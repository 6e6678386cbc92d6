"""Gemini Live over WebSocket (`/ws/google.ai.generativelanguage.{version}.GenerativeService.
BidiGenerateContent`): usage read from the server's messages, one reading per model turn.

The client's first message is `setup` with the model (`models/…`). Server messages may carry
`usageMetadata` beside their one payload (the Live API reference); Live names the output
`responseTokenCount` / `responseTokensDetails` where generateContent says `candidates…`.
A turn opens with the first `serverContent` (or usage) after the last turn ended. It finishes
at once when its `serverContent.turnComplete` message carries `usageMetadata` (one message,
nothing can follow); when the usage comes apart from turnComplete (before or after it), the
completed turn is held until the next turn's first `serverContent` or the session's end
(`drain`), so a usage arriving after turnComplete still joins its turn. Several usageMetadata in
one turn are running values: the last one wins, never a sum. Audio chunks are parsed only to
open a turn.
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
        usage = usage if isinstance(usage, dict) else None
        ends = content is not None and content.get("turnComplete") is True
        finished: list[Reading] = []
        if content is not None and self._complete and not ends:
            finished.append(self._close())  # the next turn began: the held one is done
        started = 0
        if (content is not None or usage is not None) and not self._open:
            self._open, started = True, 1
        if usage is not None:
            self._usage = usage
        if ends:
            self._complete = True
            if usage is not None:  # usage on the completing message: nothing can follow it
                finished.append(self._close())
        return SocketNews(started=started, finished=tuple(finished))

    def drain(self) -> tuple[Reading, ...]:
        return (self._close(),) if self._open and self._complete else ()

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
