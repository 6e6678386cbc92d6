"""The WebSocket taps, message by message: which messages open and finish a billed unit, and
the usage each finished one carries, in every order the protocols allow."""

from __future__ import annotations

import json

from meterfox_cli.providers.base import SocketNews
from meterfox_cli.providers.gemini_live import LiveTap
from meterfox_cli.providers.openai_realtime import RealtimeTap
from meterfox_cli.usage import Usage


def event(kind: str, **fields) -> str:
    return json.dumps({"type": kind, "event_id": "ev", **fields})


def test_realtime_one_reading_per_response_done_with_its_audio_parts():
    tap = RealtimeTap({"model": "gpt-realtime"})
    assert (
        tap.from_server(
            event("session.created", session={"model": "gpt-realtime-2025-08-28"})
        ).started
        == 0
    )
    assert tap.model == "gpt-realtime-2025-08-28"
    assert tap.from_server(event("response.created", response={"id": "r1"})).started == 1
    assert tap.open == 1
    # An audio delta is not parsed; a quoted event type inside a string is not an event.
    assert (
        tap.from_server(
            event("response.output_text.delta", delta='"type":"response.done"')
        ).finished
        == ()
    )
    usage = {
        "input_tokens": 50,
        "output_tokens": 20,
        "input_token_details": {
            "audio_tokens": 30,
            "cached_tokens": 10,
            "cached_tokens_details": {"audio_tokens": 4},
        },
        "output_token_details": {"audio_tokens": 15, "text_tokens": 5},
    }
    news = tap.from_server(event("response.done", response={"id": "r1", "usage": usage}))
    [reading] = news.finished
    assert news.started == 0 and tap.open == 0
    assert reading.model == "gpt-realtime-2025-08-28"
    assert reading.usage == Usage(
        input_tokens=50,
        cached_tokens=10,
        output_tokens=20,
        units=(
            ("input_audio_tokens", 30.0),
            ("cache_audio_read_tokens", 4.0),
            ("output_audio_tokens", 15.0),
        ),
    )


def test_realtime_a_done_without_its_created_still_counts_once():
    tap = RealtimeTap({})
    news = tap.from_server(event("response.done", response={"status": "failed", "usage": None}))
    assert news.started == 1 and len(news.finished) == 1 and news.finished[0].usage is None
    assert tap.model is None and tap.open == 0


def live(**message) -> bytes:
    return json.dumps(message).encode()


USAGE = {"promptTokenCount": 10, "responseTokenCount": 4, "thoughtsTokenCount": 2}


def test_live_usage_on_the_turn_complete_message():
    tap = LiveTap()
    tap.from_client(json.dumps({"setup": {"model": "models/gemini-live-2.5-flash"}}))
    assert tap.model == "gemini-live-2.5-flash"
    assert tap.from_server(live(serverContent={"modelTurn": {"parts": []}})).started == 1
    news = tap.from_server(live(serverContent={"turnComplete": True}, usageMetadata=USAGE))
    [reading] = news.finished
    assert reading.usage == Usage(input_tokens=10, output_tokens=6, reasoning_tokens=2)
    assert tap.open == 0


def test_live_usage_apart_from_turn_complete_joins_its_turn_and_is_not_added():
    for order in ("before", "after"):
        tap = LiveTap()
        tap.from_server(live(serverContent={"modelTurn": {"parts": []}}))
        tap.from_server(live(usageMetadata={**USAGE, "responseTokenCount": 1}))  # running value
        messages = [{"usageMetadata": USAGE}, {"serverContent": {"turnComplete": True}}]
        for message in messages if order == "before" else messages[::-1]:
            assert tap.from_server(live(**message)) == SocketNews(), order
        # Held until the next turn begins (or the session ends: drain).
        news = tap.from_server(live(serverContent={"modelTurn": {"parts": []}}))
        [reading] = news.finished
        assert news.started == 1 and reading.usage.output_tokens == 6, order
        assert tap.drain() == () and tap.open == 1


def test_live_a_completed_turn_is_drained_at_the_end_and_an_open_one_is_not():
    tap = LiveTap()
    tap.from_server(live(serverContent={"modelTurn": {"parts": []}}))
    tap.from_server(live(serverContent={"turnComplete": True}))
    [reading] = tap.drain()
    assert reading.usage is None and tap.open == 0
    tap.from_server(live(serverContent={"modelTurn": {"parts": []}}))
    assert tap.drain() == () and tap.open == 1
