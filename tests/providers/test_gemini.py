"""The Gemini adapter: model from the path, running-total usage, both stream forms."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterfox_cli.providers.gemini import GeminiFormat
from meterfox_cli.providers.json_array import JsonArrayScanner
from meterfox_cli.providers.openai import OpenAIFormat
from meterfox_cli.usage import Usage
from tests.fixtures import gemini as fx
from tests.providers.taps import assert_same_at_every_single_cut, cut_points, split, through_tap

WIRE = GeminiFormat()
GENERATE = "/v1beta/models/gemini-2.5-flash:generateContent"
STREAM = "/v1/models/gemini-2.5-flash:streamGenerateContent"
REQUEST = b'{"contents": [{"parts": [{"text": "hi"}]}]}'
SSE = "text/event-stream"
JSON = "application/json; charset=UTF-8"
EXPECTED = Usage(**fx.EXPECTED, units=tuple(fx.EXPECTED_UNITS.items()))


@pytest.mark.parametrize(
    ("path", "model", "stream"),
    [
        ("/v1beta/models/gemini-2.5-pro:generateContent", "gemini-2.5-pro", False),
        ("/v1/models/gemini-2.5-flash:streamGenerateContent", "gemini-2.5-flash", True),
        ("/v1beta/models/text-embedding-004:embedContent", "text-embedding-004", False),
        ("/v1beta/models/gemini-embedding-001:batchEmbedContents", "gemini-embedding-001", False),
        ("/v1beta/models/gemini-2.0-flash:countTokens", "gemini-2.0-flash", False),
        ("/v1beta/tunedModels/my-model-1:generateContent", "tunedModels/my-model-1", False),
        ("/v1beta/models", None, False),
    ],
)
def test_model_and_stream_flag_come_from_the_path(path, model, stream):
    plan = WIRE.plan(path, {}, REQUEST)
    assert (plan.model, plan.stream) == (model, stream)
    assert plan.body == REQUEST  # forwarded untouched


def test_json_usage_is_normalised_and_model_version_wins():
    _, reading = through_tap(WIRE, GENERATE, REQUEST, JSON, [json.dumps(fx.JSON_BODY).encode()])
    assert reading.model == fx.MODEL_VERSION
    assert reading.usage == EXPECTED


def test_sse_stream_keeps_the_last_running_total():
    data = b"".join(fx.sse_chunks())
    _, reading = through_tap(WIRE, STREAM, REQUEST, SSE, [data])
    assert reading.model == fx.MODEL_VERSION
    assert reading.usage == EXPECTED  # adding the three chunks would triple the prompt


def test_json_array_stream_keeps_the_last_running_total():
    chunks = fx.json_array_chunks()
    out, reading = through_tap(WIRE, STREAM, REQUEST, JSON, chunks)
    assert out == b"".join(chunks)
    assert reading.model == fx.MODEL_VERSION
    assert reading.usage == EXPECTED


def test_json_array_stream_cut_before_the_end_has_usage_so_far():
    chunks = fx.json_array_chunks()
    _, reading = through_tap(WIRE, STREAM, REQUEST, JSON, chunks[:2])
    assert reading.usage == Usage(input_tokens=1200, output_tokens=302, reasoning_tokens=300)


@pytest.mark.parametrize(
    ("content_type", "make"), [(SSE, fx.sse_chunks), (JSON, fx.json_array_chunks)]
)
def test_stream_cut_at_every_single_byte_boundary(content_type, make):
    data = b"".join(make())
    _, reading = assert_same_at_every_single_cut(WIRE, STREAM, REQUEST, content_type, data)
    assert reading.usage == EXPECTED


@settings(max_examples=200, deadline=None)
@given(cut_points(b"".join(fx.json_array_chunks())), cut_points(b"".join(fx.sse_chunks())))
def test_stream_split_anywhere_gives_same_bytes_and_usage(array_cuts, sse_cuts):
    for content_type, data, cuts in (
        (JSON, b"".join(fx.json_array_chunks()), array_cuts),
        (SSE, b"".join(fx.sse_chunks()), sse_cuts),
    ):
        whole = through_tap(WIRE, STREAM, REQUEST, content_type, [data])
        assert whole[1].usage == EXPECTED
        assert through_tap(WIRE, STREAM, REQUEST, content_type, split(data, cuts)) == whole


def test_scanner_is_not_fooled_by_brackets_quotes_and_escapes_in_strings():
    elements = [{"t": 'a"]}[{\\'}, {"t": "\\\\"}, {"usageMetadata": {"promptTokenCount": 1}}]
    data = ("[" + ",\r\n".join(json.dumps(e) for e in elements) + "]").encode()
    for size in (1, 2, 3, 7):
        scanner = JsonArrayScanner()
        found = []
        for i in range(0, len(data), size):
            found += scanner.feed(data[i : i + size])
        assert [json.loads(f) for f in found] == elements


def test_scanner_skips_an_element_over_its_limit_and_reads_the_next():
    big = {"candidates": [{"content": {"parts": [{"text": "x" * 500}]}}]}
    last = {"usageMetadata": {"promptTokenCount": 3}}
    data = f"[{json.dumps(big)},\r\n{json.dumps(last)}]".encode()
    scanner = JsonArrayScanner(max_element=200)
    found = [e for i in range(0, len(data), 64) for e in scanner.feed(data[i : i + 64])]
    assert [json.loads(f) for f in found] == [last]


def test_error_object_instead_of_a_stream_has_no_usage():
    body = json.dumps(fx.ERROR_BODY).encode()
    _, reading = through_tap(WIRE, STREAM, REQUEST, JSON, [body])
    assert reading.usage is None and reading.model == "gemini-2.5-flash"


def test_count_tokens_is_recorded_free():
    body = json.dumps(fx.COUNT_TOKENS_BODY).encode()
    path = "/v1beta/models/gemini-2.5-flash:countTokens"
    _, reading = through_tap(WIRE, path, REQUEST, JSON, [body])
    assert reading.usage == Usage() and reading.reported_cost_usd == Decimal(0)


def test_embed_without_usage_metadata_has_no_usage():
    path = "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    body = json.dumps(fx.BATCH_EMBED_BODY).encode()
    _, reading = through_tap(WIRE, path, REQUEST, JSON, [body])
    assert reading.usage is None and reading.model == "gemini-embedding-001"


def test_embed_with_usage_metadata_counts_prompt_tokens():
    path = "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    body = json.dumps({**fx.BATCH_EMBED_BODY, "usageMetadata": {"promptTokenCount": 9}}).encode()
    _, reading = through_tap(WIRE, path, REQUEST, JSON, [body])
    assert reading.usage == Usage(input_tokens=9)


def test_openai_compatible_path_uses_the_openai_adapter_with_hidden_thinking():
    path = "/v1beta/openai/chat/completions"
    wire = WIRE.for_path(path)
    assert isinstance(wire, OpenAIFormat)
    body = json.dumps(fx.OPENAI_COMPAT_BODY).encode()
    request = b'{"model": "gemini-2.5-flash", "messages": []}'
    _, reading = through_tap(wire, path, request, JSON, [body])
    assert reading.usage == Usage(**fx.OPENAI_COMPAT_EXPECTED)


def test_error_body_is_the_google_shape():
    assert WIRE.error_body(504, "MeterFox: upstream gemini timed out", "upstream_timeout") == {
        "error": {
            "code": 504,
            "message": "MeterFox: upstream gemini timed out",
            "status": "DEADLINE_EXCEEDED",
        }
    }


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab"\\[]{}, \n\u00e9'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.text(alphabet='k"\\]', max_size=3), _values, max_size=3), max_size=4
    ),
    st.sampled_from([None, 2]),
    st.data(),
)
def test_scanner_finds_every_element_of_any_array_split_anywhere(elements, indent, data):
    raw = ("[" + ",\r\n".join(json.dumps(e, indent=indent) for e in elements) + "]").encode()
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=max(len(raw) - 1, 1))))
    scanner = JsonArrayScanner()
    found = [element for piece in split(raw, cuts) for element in scanner.feed(piece)]
    assert [json.loads(f) for f in found] == elements
