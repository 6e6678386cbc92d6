"""The Anthropic Messages adapter: normalisation, stream merging, free and batch endpoints."""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import given, settings

from meterfox_cli.providers.anthropic import AnthropicFormat, usage_from
from meterfox_cli.providers.openai import OpenAIFormat
from meterfox_cli.usage import Usage
from tests.fixtures import anthropic as fx
from tests.providers.taps import assert_same_at_every_single_cut, cut_points, split, through_tap

WIRE = AnthropicFormat()
REQUEST = json.dumps({"model": "claude-opus-4-1", "max_tokens": 64, "messages": []}).encode()
STREAM_REQUEST = json.dumps({"model": "claude-opus-4-1", "stream": True}).encode()
SSE = "text/event-stream"


def json_reading(body: object, path: str = "/v1/messages"):
    return through_tap(WIRE, path, REQUEST, "application/json", [json.dumps(body).encode()])[1]


def test_input_counts_cache_reads_and_writes_and_output_keeps_thinking():
    reading = json_reading(fx.JSON_BODY)
    assert reading.model == fx.MODEL
    assert reading.usage == Usage(**fx.JSON_EXPECTED, units=(("web_search_requests", 1.0),))
    assert reading.price_context == (("service_tier", "standard"),)


def test_cache_write_split_is_summed_when_the_total_is_missing():
    usage = usage_from(
        {
            "input_tokens": 3,
            "cache_creation": {"ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 11},
            "output_tokens": 1,
        }
    )
    assert usage == Usage(
        input_tokens=21, cache_write_tokens=18, cache_write_1h_tokens=11, output_tokens=1
    )


def test_minimal_usage_without_cache_fields():
    assert usage_from({"input_tokens": 12, "output_tokens": 6}) == Usage(
        input_tokens=12, output_tokens=6
    )


def test_stream_merges_message_start_with_cumulative_deltas_by_replacing():
    data = b"".join(fx.stream_events())
    _, reading = through_tap(WIRE, "/v1/messages", STREAM_REQUEST, SSE, [data])
    assert reading.model == fx.MODEL
    # Two message_delta events: output 10 then 42, searches 1 then 2. Adding would give 52 / 3.
    assert reading.usage == Usage(**fx.STREAM_EXPECTED, units=(("web_search_requests", 2.0),))


def test_stream_cut_at_every_single_byte_boundary():
    data = b"".join(fx.stream_events())
    _, reading = assert_same_at_every_single_cut(WIRE, "/v1/messages", STREAM_REQUEST, SSE, data)
    assert reading.usage.output_tokens == 42


@settings(max_examples=200, deadline=None)
@given(cut_points(b"".join(fx.stream_events())))
def test_stream_split_anywhere_gives_same_bytes_and_usage(cuts):
    data = b"".join(fx.stream_events())
    whole = through_tap(WIRE, "/v1/messages", STREAM_REQUEST, SSE, [data])
    assert through_tap(WIRE, "/v1/messages", STREAM_REQUEST, SSE, split(data, cuts)) == whole


def test_error_event_midway_keeps_usage_so_far():
    data = b"".join(fx.stream_with_error_midway())
    out, reading = through_tap(WIRE, "/v1/messages", STREAM_REQUEST, SSE, [data])
    assert out == data
    # message_start's input side (already billed) and its output count so far.
    assert reading.usage == Usage(
        input_tokens=5525,
        cached_tokens=4000,
        cache_write_tokens=1500,
        cache_write_1h_tokens=1000,
        output_tokens=1,
    )


def test_stream_cut_before_message_start_has_no_usage():
    _, reading = through_tap(WIRE, "/v1/messages", STREAM_REQUEST, SSE, [b"event: ping\n"])
    assert reading.usage is None and reading.model == "claude-opus-4-1"


def test_count_tokens_is_recorded_free():
    reading = json_reading(fx.COUNT_TOKENS_BODY, "/v1/messages/count_tokens")
    assert reading.usage == Usage() and reading.reported_cost_usd == Decimal(0)


def test_count_tokens_error_is_not_called_free():
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "x"}}
    reading = json_reading(error, "/v1/messages/count_tokens")
    assert reading.usage is None and reading.reported_cost_usd is None


def test_batches_and_errors_carry_no_usage():
    batch = {"id": "msgbatch_01", "type": "message_batch", "processing_status": "in_progress"}
    assert json_reading(batch, "/v1/messages/batches").usage is None
    assert json_reading(fx.OVERLOADED).usage is None


def test_error_body_is_the_anthropic_shape():
    assert WIRE.error_body(502, "MeterFox: upstream down", "upstream_unreachable") == {
        "type": "error",
        "error": {"type": "api_error", "message": "MeterFox: upstream down"},
    }
    assert WIRE.error_body(401, "no", "invalid_api_key")["error"]["type"] == (
        "authentication_error"
    )


def test_openai_compatible_path_uses_the_openai_adapter():
    assert isinstance(WIRE.for_path("/v1/chat/completions"), OpenAIFormat)
    assert WIRE.for_path("/v1/messages") is WIRE


def test_unread_events_are_never_parsed():
    """Text deltas can't hold usage: a malformed one must not matter (nor cost a parse)."""
    data = b"".join(fx.stream_events()).replace(b'"text": "Hel"', b'"text": "Hel')
    _, reading = through_tap(WIRE, "/v1/messages", STREAM_REQUEST, SSE, [data])
    assert reading.usage.output_tokens == 42
