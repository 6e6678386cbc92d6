"""OpenAI(-compatible) endpoints that bill something other than chat tokens: audio, moderation,
OCR. Each maps its response (or, for speech, its request) into Usage. No I/O.

- `/audio/transcriptions`, `/audio/translations`: `usage` `{type: "tokens", input_tokens,
  input_token_details.{text_tokens, audio_tokens}, output_tokens}` (gpt-4o-transcribe and
  kin), or `{type: "duration", seconds}` (whisper-1), else the `duration` of a verbose_json
  body (Groq whisper): seconds become the `audio_seconds` unit. A text, srt or vtt body has no
  usage: recorded without it.
- `/audio/speech`: tts-1 and tts-1-hd bill the request's `input` characters (`input_characters`,
  read from the request, as the response is raw audio); gpt-4o-mini-tts bills tokens, read from
  the `speech.audio.done` event of an SSE response (`stream_format: "sse"`); its raw-audio
  answer carries no usage and is recorded without it.
- `/moderations`: free: zero usage at a reported cost of zero.
- `/ocr` (Mistral): `usage_info.pages_processed` becomes `input_document_pages`.
"""

from __future__ import annotations

import re
from decimal import Decimal

from meterfox_cli.providers.base import BodyTap, RequestPlan, dig
from meterfox_cli.usage import Reading, Usage, as_int

TRANSCRIPTION = re.compile(r"/audio/(?:transcriptions|translations)$")
SPEECH = re.compile(r"/audio/speech$")
_MODERATION = re.compile(r"/moderations$")
_OCR = re.compile(r"/ocr$")
_CHARACTER_BILLED = re.compile(r"^tts-1(?:-hd)?(?:-\d{4})?$")
MAX_SECONDS = 10**7  # no audio file is four months long: a larger figure is a broken upstream


def media_reading(path: str, data: dict[str, object], plan: RequestPlan) -> Reading | None:
    """The reading for a media endpoint's JSON body; None for any other endpoint."""
    model = data.get("model")
    model = model if isinstance(model, str) and model else plan.model
    if TRANSCRIPTION.search(path):
        return Reading(model=model, usage=transcription_usage(data))
    if _MODERATION.search(path):
        return Reading(model=model, usage=Usage(), reported_cost_usd=Decimal(0))
    if _OCR.search(path):
        pages = as_int(dig(data, "usage_info", "pages_processed"))
        usage = Usage(units=(("input_document_pages", float(pages)),)) if pages else None
        return Reading(model=model, usage=usage)
    return None


def transcription_usage(data: dict[str, object]) -> Usage | None:
    usage = data.get("usage")
    if isinstance(usage, dict) and usage.get("type") == "tokens":
        input_tokens = as_int(usage.get("input_tokens"))
        audio = min(as_int(dig(usage, "input_token_details", "audio_tokens")), input_tokens)
        return Usage(
            input_tokens=input_tokens,
            output_tokens=as_int(usage.get("output_tokens")),
            units=(("input_audio_tokens", float(audio)),) if audio else (),
        )
    seconds = usage.get("seconds") if isinstance(usage, dict) else data.get("duration")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        return Usage(units=(("audio_seconds", float(min(seconds, MAX_SECONDS))),))
    return None


def speech_reading(plan: RequestPlan) -> Reading:
    """A raw-audio speech response: characters for the models billed per character."""
    text = dig(plan.request_json, "input")
    if plan.model and _CHARACTER_BILLED.match(plan.model) and isinstance(text, str):
        return Reading(
            model=plan.model, usage=Usage(units=(("input_characters", float(len(text))),))
        )
    return Reading(model=plan.model)


class RequestReadTap(BodyTap):
    """A response read for nothing (raw audio): its reading was known from the request."""

    def __init__(self, reading: Reading) -> None:
        self._reading = reading

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def reading(self) -> Reading:
        return self._reading
