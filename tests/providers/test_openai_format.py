"""The OpenAI adapter on its own: usage normalisation, request planning, and stream taps."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterfox_cli.providers.base import SKIM_JSON_BYTES
from meterfox_cli.providers.openai import OpenAIFormat, usage_from
from meterfox_cli.usage import Usage
from tests.fakes.upstream import sse
from tests.fixtures.openai_style import CASES, EMBEDDINGS_BODY, RESPONSES_BODY, chat_stream_chunks
from tests.providers.test_sse import split_at

WIRE = OpenAIFormat()
USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 30,
    "total_tokens": 150,
    "prompt_tokens_details": {"cached_tokens": 64},
    "completion_tokens_details": {"reasoning_tokens": 10},
}
STREAM = b"".join(sse(*chat_stream_chunks("gpt-4o-2024-08-06", ["a", "b", "c"], USAGE)))
EXPECTED = Usage(input_tokens=120, cached_tokens=64, output_tokens=30, reasoning_tokens=10)


def run_tap(chunks: list[bytes], *, asked: bool) -> tuple[bytes, object]:
    options = ', "stream_options": {"include_usage": true}' if asked else ""
    body = f'{{"model": "gpt-4o", "stream": true{options}}}'.encode()
    plan = WIRE.plan("/v1/chat/completions", {}, body)
    tap = WIRE.body_tap(plan, "/v1/chat/completions", "text/event-stream", method="POST")
    out = b"".join(tap.feed(chunk) for chunk in chunks) + tap.flush()
    return out, tap.reading()


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, len(STREAM)), max_size=30), asked=st.booleans())
def test_stream_cut_anywhere_gives_the_same_usage_and_bytes(cuts, asked):
    out, reading = run_tap(split_at(STREAM, cuts), asked=asked)
    assert reading.usage == EXPECTED and reading.model == "gpt-4o-2024-08-06"
    if asked:
        assert out == STREAM
    else:  # the usage-only chunk the proxy asked for is removed, every other byte kept
        usage_block = sse(chat_stream_chunks("gpt-4o-2024-08-06", [], USAGE)[-1], done=False)[0]
        assert out == STREAM.replace(usage_block, b"")


def test_stream_cut_at_every_byte():
    out, reading = run_tap([STREAM[i : i + 1] for i in range(len(STREAM))], asked=True)
    assert out == STREAM and reading.usage == EXPECTED


def test_plan_asks_for_usage_only_for_streams_that_did_not():
    plain = WIRE.plan("/v1/chat/completions", {}, b'{"model":"m","stream":false}')
    assert not plain.strip_usage_chunk and plain.body == b'{"model":"m","stream":false}'
    off = WIRE.plan(
        "/v1/chat/completions",
        {},
        b'{"model":"m","stream":true,"stream_options":{"include_usage":false}}',
    )
    assert off.strip_usage_chunk
    assert json.loads(off.body)["stream_options"] == {"include_usage": True}
    responses = WIRE.plan("/v1/responses", {}, b'{"model":"m","stream":true}')
    assert not responses.strip_usage_chunk
    no_inject = OpenAIFormat(inject_stream_usage=False).plan(
        "/v1/chat/completions", {}, b'{"model":"m","stream":true}'
    )
    assert not no_inject.strip_usage_chunk


def test_every_recorded_case_normalises_as_documented():
    for case in CASES:
        usage = usage_from(case.body["usage"])
        for name, value in case.expected.items():
            assert getattr(usage, name) == value, (case.name, name)


def test_gemini_compat_thinking_hides_in_total_minus_prompt():
    usage = usage_from({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 115})
    assert (usage.output_tokens, usage.reasoning_tokens) == (105, 100)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_read_body_never_raises_on_any_json_shape(data):
    plan = WIRE.plan("/v1/chat/completions", {}, b"{}")
    tap = WIRE.body_tap(plan, "/v1/chat/completions", "application/json", method="POST")
    body = json.dumps({"model": "m", "usage": data}).encode()
    assert tap.feed(body) == body
    tap.reading()  # must not raise


def read_whole_and_skimmed(body: dict) -> tuple[object, object]:
    """The Reading from a full parse, and from the skim the tap uses for large bodies."""
    raw = json.dumps(body).encode()
    assert len(raw) > SKIM_JSON_BYTES
    plan = WIRE.plan("/v1/x", {}, b'{"model": "requested"}')
    whole = WIRE.read_body(json.loads(raw), plan, "/v1/x")
    tap = WIRE.body_tap(plan, "/v1/x", "application/json", method="POST")
    tap.feed(raw)
    assert WIRE.skim(raw) is not None
    return whole, tap.reading()


def test_large_embedding_batch_is_skimmed_to_the_same_reading():
    vectors = [{"object": "embedding", "index": i, "embedding": [0.125] * 1536} for i in range(20)]
    body = {**EMBEDDINGS_BODY, "data": vectors, "usage": {"prompt_tokens": 80, "total_tokens": 80}}
    whole, skimmed = read_whole_and_skimmed(body)
    assert skimmed == whole and skimmed.usage.input_tokens == 80
    assert skimmed.model == "text-embedding-3-small"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_recorded_case_reads_the_same_when_large_and_skimmed(case):
    long_text = 'a "usage": {"prompt_tokens": 1} ' * 4000  # escaped in JSON: not a key
    body = json.loads(json.dumps(case.body))
    body["choices"][0]["message"]["content"] = long_text
    whole, skimmed = read_whole_and_skimmed(body)
    assert skimmed == whole


def test_responses_tool_schema_with_a_usage_property_does_not_confuse_the_skim():
    tools = [
        {
            "type": "function",
            "name": "f",
            "parameters": {
                "type": "object",
                "properties": {"usage": {"type": "string"}, "pad": {"description": "x" * 70000}},
            },
        }
    ]
    body = {**RESPONSES_BODY, "tools": tools}
    body["usage"] = body.pop("usage")  # top-level usage last, as the API sends it
    whole, skimmed = read_whole_and_skimmed(body)
    assert skimmed == whole and skimmed.usage.cached_tokens == 2048


def test_skim_reads_the_top_level_only():
    body = json.dumps({"model": "m", "data": ["x" * 70000], "metadata": {"usage": {"x": 1}}})
    assert WIRE.skim(body.encode()) == {"model": "m"}
    assert WIRE.skim(b"[" + body.encode() + b"]") is None  # not an object: parse it whole
