"""The Cohere v2 adapter: billed units, the request's model, usage from `message-end`."""

from __future__ import annotations

import json

from hypothesis import given, settings

from meterfox_cli.providers.cohere import CohereFormat
from meterfox_cli.providers.openai import OpenAIFormat
from meterfox_cli.usage import Usage
from tests.fixtures import cohere as fx
from tests.providers.taps import assert_same_at_every_single_cut, cut_points, split, through_tap

WIRE = CohereFormat()
REQUEST = json.dumps({"model": fx.MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
STREAM_REQUEST = json.dumps({"model": fx.MODEL, "stream": True, "messages": []}).encode()
SSE = "text/event-stream"
JSON = "application/json"


def json_reading(path: str, body: dict, request: bytes = REQUEST):
    return through_tap(WIRE, path, request, JSON, [json.dumps(body).encode()])[1]


def test_chat_bills_billed_units_not_raw_tokens_and_keeps_the_request_model():
    reading = json_reading("/v2/chat", fx.CHAT_BODY)
    assert reading.model == fx.MODEL  # the response names none
    assert reading.usage == Usage(**fx.CHAT_EXPECTED)


def test_inference_cache_hits_are_a_unit_not_discounted_input():
    body = {**fx.CHAT_BODY, "usage": {**fx.CHAT_USAGE, "cached_tokens": 4.0}}
    reading = json_reading("/v2/chat", body)
    assert reading.usage.cached_tokens == 0
    assert reading.usage.unit("inference_cache_tokens") == 4.0


def test_embed_reads_meta_billed_units():
    request = json.dumps({"model": "embed-v4.0", "texts": ["hello"]}).encode()
    reading = json_reading("/v2/embed", fx.EMBED_BODY, request)
    assert reading.model == "embed-v4.0"
    assert reading.usage == Usage(input_tokens=2)


def test_rerank_bills_search_units():
    request = json.dumps({"model": "rerank-v3.5", "query": "q", "documents": ["d"]}).encode()
    reading = json_reading("/v2/rerank", fx.RERANK_BODY, request)
    assert reading.usage == Usage(units=(("search_units", 1.0),))


def test_stream_usage_comes_from_message_end():
    data = b"".join(fx.stream_events())
    out, reading = through_tap(WIRE, "/v2/chat", STREAM_REQUEST, SSE, [data])
    assert out == data
    assert reading.model == fx.MODEL
    assert reading.usage == Usage(**fx.STREAM_EXPECTED)


def test_stream_cut_before_message_end_has_no_usage():
    events = fx.stream_events()[:-1]
    _, reading = through_tap(WIRE, "/v2/chat", STREAM_REQUEST, SSE, events)
    assert reading.usage is None


def test_stream_cut_at_every_single_byte_boundary():
    data = b"".join(fx.stream_events())
    assert_same_at_every_single_cut(WIRE, "/v2/chat", STREAM_REQUEST, SSE, data)


@settings(max_examples=200, deadline=None)
@given(cut_points(b"".join(fx.stream_events())))
def test_stream_split_anywhere_gives_same_bytes_and_usage(cuts):
    data = b"".join(fx.stream_events())
    whole = through_tap(WIRE, "/v2/chat", STREAM_REQUEST, SSE, [data])
    assert whole[1].usage == Usage(**fx.STREAM_EXPECTED)
    assert through_tap(WIRE, "/v2/chat", STREAM_REQUEST, SSE, split(data, cuts)) == whole


def test_error_body_is_cohere_shape_and_has_no_usage():
    assert WIRE.error_body(502, "down", "upstream_unreachable") == {"message": "down"}
    assert json_reading("/v2/chat", fx.ERROR_BODY).usage is None


def test_compatibility_path_uses_the_openai_adapter():
    assert isinstance(WIRE.for_path("/compatibility/v1/chat/completions"), OpenAIFormat)
    assert WIRE.for_path("/v2/chat") is WIRE
