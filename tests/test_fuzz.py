"""Fuzzing everything that reads untrusted bytes on the request path.

The SSE parser, and the body tap of every wire format in meterfox_cli/providers/ (OpenAI-style,
Anthropic, Gemini SSE and JSON-array, Cohere, Replicate, and the OpenAI-compatible layers of
the native providers), given random bytes, random JSON shapes built from the fields adapters
look for, and random chunk splits:
- never raise into the request path (`feed`, `flush`, `reading`, `plan`);
- forward every byte untouched, except the one documented edit: the usage-only chunk the proxy
  asked for on the caller's behalf;
- give the same bytes and the same reading however the response is split;
- produce a Reading the store can always write (no value SQLite cannot take).
The proxy's own request handling is fuzzed too: the upstream URL never leaves the provider's
origin, and header helpers never raise.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from meterfox_cli.pricing.book import price_record
from meterfox_cli.providers.base import SseTap, WireFormat
from meterfox_cli.providers.registry import build_registry
from meterfox_cli.providers.sse import SseParser
from meterfox_cli.proxy.auth import find_credential
from meterfox_cli.proxy.forward import _rest_of_path, _upstream_url
from meterfox_cli.proxy.headers import (
    client_response_headers,
    tags_from_headers,
    upstream_request_headers,
)
from meterfox_cli.store.db import migrate
from meterfox_cli.store.rows import insert_records
from meterfox_cli.usage import MAX_COUNT, Reading, as_int
from tests.fakes.records import usage_record
from tests.fakes.upstream import sse
from tests.fixtures import anthropic as anthropic_fixtures
from tests.fixtures import cohere as cohere_fixtures
from tests.fixtures import gemini as gemini_fixtures
from tests.fixtures.openai_style import RESPONSES_BODY, chat_stream_chunks
from tests.providers.taps import split

REGISTRY = build_registry()
# METERFOX_FUZZ_EXAMPLES=5000 for a longer run than CI's.
FUZZ = settings(
    max_examples=int(os.environ.get("METERFOX_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# --- strategies --------------------------------------------------------------------------------

# The names adapters look for, so random shapes reach deep into every extractor.
FIELDS = [
    "usage", "model", "choices", "type", "message", "delta", "response", "id", "status",
    "prompt_tokens", "completion_tokens", "total_tokens", "input_tokens", "output_tokens",
    "prompt_tokens_details", "completion_tokens_details", "cached_tokens", "reasoning_tokens",
    "audio_tokens", "image_tokens", "prompt_cache_hit_tokens", "cache_write_tokens",
    "input_tokens_details", "output_tokens_details", "citation_tokens", "num_search_queries",
    "cost", "total_cost", "cost_in_usd_ticks", "x_groq", "service_tier",
    "cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation",
    "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens", "server_tool_use",
    "web_search_requests", "thinking_tokens", "speed",
    "usageMetadata", "modelVersion", "promptTokenCount", "candidatesTokenCount",
    "thoughtsTokenCount", "cachedContentTokenCount", "toolUsePromptTokenCount",
    "promptTokensDetails", "candidatesTokensDetails", "modality", "tokenCount", "serviceTier",
    "totalTokens", "meta", "billed_units", "search_units", "metrics", "predict_time",
    "input_token_count", "output_token_count",
]  # fmt: skip
WORDS = [
    "message_start", "message_delta", "message-end", "message", "succeeded", "AUDIO", "IMAGE",
    "chat.completion.chunk", "response.completed", "[DONE]", "gpt-4o", "",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**60, max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(WORDS)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), children, max_size=6)
    ),
    max_leaves=30,
)
json_objects = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
newlines = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def sse_streams(draw) -> bytes:
    """SSE with random events, comments, data lines and line ends (mixed within a stream)."""
    out = []
    for _ in range(draw(st.integers(0, 8))):
        nl = draw(newlines)
        kind = draw(st.sampled_from(["event", "comment", "raw", "done"]))
        if kind == "comment":
            out.append(b": keep-alive" + nl + nl)
        elif kind == "done":
            out.append(b"data: [DONE]" + nl + nl)
        elif kind == "raw":
            out.append(draw(st.binary(max_size=40)))
        else:
            name = draw(st.none() | st.sampled_from(WORDS))
            data = json.dumps(draw(json_objects)).encode()
            head = b"event: " + name.encode() + nl if name is not None else b""
            out.append(head + b"data: " + data + nl + nl)
    return b"".join(out)


def _recorded_blocks() -> list[bytes]:
    """The SSE events of every format's recorded shapes (tests/fixtures), each also without
    its `event:` line: the events readers must not pass by."""
    usage = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    responses = [
        {"type": "response.created", "response": {**RESPONSES_BODY, "usage": None}},
        {"type": "response.completed", "response": RESPONSES_BODY},
    ]
    model = "gpt-4o-2024-08-06"  # not the request's: where the model is read from shows
    groq = {"choices": [], "model": model, "x_groq": {"usage": usage}}
    gemini = gemini_fixtures.stream_responses()
    blocks = [
        *anthropic_fixtures.stream_events(),
        *cohere_fixtures.stream_events(),
        *gemini_fixtures.sse_chunks(),
        *sse(*chat_stream_chunks(model, ["a", "b"], usage), *responses, groq),
        *sse(*({k: v for k, v in r.items() if k != "modelVersion"} for r in gemini)),
    ]
    unnamed = [block.partition(b"\n")[2] for block in blocks if block.startswith(b"event:")]
    return blocks + unnamed


RECORDED_BLOCKS = _recorded_blocks()


@st.composite
def recorded_sse_streams(draw) -> bytes:
    """Recorded events in any order and number, between random ones; line ends of any kind,
    and a data line sometimes cut in two (a field name, or a needle, split across lines)."""
    out = []
    recorded = st.sampled_from(RECORDED_BLOCKS)
    for block in draw(
        st.lists(st.one_of(recorded, recorded, recorded, sse_streams()), max_size=24)
    ):
        cut = draw(st.integers(0, len(block)))
        head, data_line, rest = block.partition(b"data: ")
        if data_line and draw(st.booleans()):  # one data line becomes two
            at = min(cut, len(rest))
            rest = rest[:at] + b"\ndata:" + rest[at:]
        block = head + data_line + rest
        nl = draw(newlines)
        out.append(block.replace(b"\r\n", b"\n").replace(b"\n", nl))
    return b"".join(out)


@st.composite
def json_array_streams(draw) -> bytes:
    elements = [json.dumps(e).encode() for e in draw(st.lists(json_objects, max_size=5))]
    return b"[" + b",\r\n".join(elements) + draw(st.sampled_from([b"]", b"", b"]\n", b",{"]))


def bodies(kind: str):
    """Response bodies for a tap: well-formed shapes of that kind, or random bytes."""
    shaped = {
        "sse": sse_streams(),
        "json": json_values.map(lambda v: json.dumps(v).encode()),
        "array": json_array_streams(),
    }[kind]
    return shaped | st.binary(max_size=300)


def cuts_for(data: bytes):
    return st.lists(st.integers(1, max(len(data) - 1, 1)), max_size=20)


# --- the taps of every wire format ---------------------------------------------------------------


@dataclass(frozen=True)
class TapCase:
    slug: str
    path: str
    content_type: str
    kind: str  # sse | json | array
    request: bytes = b'{"model": "m", "stream": true}'
    method: str = "POST"

    @property
    def wire(self) -> WireFormat:
        return REGISTRY.get(self.slug).wire.for_path(self.path)

    def __str__(self) -> str:
        return f"{self.slug}{self.path}[{self.kind}]"


SSE = "text/event-stream"
JSON = "application/json"
TAP_CASES = [
    TapCase("openai", "/v1/chat/completions", SSE, "sse"),  # the proxy asks for usage: edits
    TapCase(
        "openai",
        "/v1/chat/completions",
        SSE,
        "sse",
        b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}',
    ),
    TapCase("openai", "/v1/responses", SSE, "sse"),
    TapCase("openai", "/v1/chat/completions", JSON, "json", b'{"model": "m"}'),
    TapCase("groq", "/openai/v1/chat/completions", SSE, "sse"),
    TapCase("anthropic", "/v1/messages", SSE, "sse"),
    TapCase("anthropic", "/v1/messages", JSON, "json"),
    TapCase("anthropic", "/v1/messages/count_tokens", JSON, "json"),
    TapCase("anthropic", "/v1/chat/completions", SSE, "sse"),
    TapCase("gemini", "/v1beta/models/g:streamGenerateContent", SSE, "sse"),
    TapCase("gemini", "/v1beta/models/g:streamGenerateContent", JSON, "array"),
    TapCase("gemini", "/v1beta/models/g:generateContent", JSON, "json"),
    TapCase("gemini", "/v1beta/models/g:countTokens", JSON, "json"),
    TapCase("gemini", "/v1beta/openai/chat/completions", SSE, "sse"),
    TapCase("cohere", "/v2/chat", SSE, "sse"),
    TapCase("cohere", "/v2/chat", JSON, "json"),
    TapCase("cohere", "/v2/embed", JSON, "json"),
    TapCase("cohere", "/compatibility/v1/chat/completions", SSE, "sse"),
    TapCase("replicate", "/v1/predictions", JSON, "json"),
    TapCase("replicate", "/v1/predictions/p1", SSE, "sse"),
    TapCase("replicate", "/v1/predictions/p1", JSON, "json", b"", "GET"),
    TapCase("openai", "/v1/batches/batch_1", JSON, "json", b"", "GET"),
]


@st.composite
def tap_inputs(draw):
    case = draw(st.sampled_from(TAP_CASES))
    data = draw(bodies(case.kind))
    return case, data, draw(cuts_for(data))


def run_tap(case: TapCase, pieces: list[bytes]) -> tuple[bytes, Reading, bool]:
    """Drive the tap exactly as forward._relay does; return (forwarded bytes, reading, edits)."""
    wire = case.wire
    plan = wire.plan(case.path, {}, case.request)
    tap = wire.body_tap(plan, case.path, case.content_type, method=case.method)
    out = b"".join(tap.feed(piece) for piece in pieces) + tap.flush()
    return out, tap.reading(), plan.strip_usage_chunk


def usage_only(raw_block: bytes) -> bool:
    """An OpenAI-style `choices: []` chunk with a usage object: the one block the proxy may
    drop (docs: forward.py, "less only a usage-only chunk the proxy itself asked for")."""
    [block] = SseParser().feed(raw_block) or [None]
    if block is None or block.data is None:
        return False
    try:
        event = json.loads(block.data)
    except ValueError:
        return False
    return (
        isinstance(event, dict)
        and event.get("choices") == []
        and isinstance(event.get("usage"), dict)
    )


def events(data: bytes) -> list[tuple[str, bytes | None]]:
    """The complete SSE events in `data`, as a client's parser reads them."""
    return [(block.event, block.data) for block in SseParser().feed(data)]


def assert_only_usage_chunks_dropped(data: bytes, out: bytes) -> None:
    """The client reads every event but the usage-only ones, and got no byte that was not
    sent, in the order sent (a CR/LF pair split across reads may end on either side of a
    dropped block: the same events either way)."""
    kept = [(b.event, b.data) for b in SseParser().feed(data) if not usage_only(b.raw)]
    assert events(out) == kept
    assert is_subsequence(out, data)


def is_subsequence(short: bytes, long: bytes) -> bool:
    it = iter(long)
    return all(byte in it for byte in short)


_DB = sqlite3.connect(":memory:", isolation_level=None)
migrate(_DB)


def assert_storable(reading: Reading) -> None:
    record = usage_record(
        id=f"fuzz-{time.perf_counter_ns()}",
        provider="fuzz",
        model=reading.model,
        endpoint="/",
        streamed=True,
        reading=reading,
    )
    _DB.execute("SAVEPOINT fuzz")
    try:
        insert_records(_DB, [(record, price_record(record))])
    finally:
        _DB.execute("ROLLBACK TO fuzz")
        _DB.execute("RELEASE fuzz")
    if reading.usage is not None:
        usage = reading.usage
        counts = (usage.input_tokens, usage.output_tokens, usage.cached_tokens)
        assert all(0 <= count < 2**63 for count in counts)


@FUZZ
@given(tap_inputs())
def test_every_tap_forwards_the_bytes_it_is_given_whatever_they_are(inputs):
    case, data, cuts = inputs
    out, _, edits = run_tap(case, split(data, cuts))
    if edits:
        assert_only_usage_chunks_dropped(data, out)
    else:
        assert out == data


@FUZZ
@given(tap_inputs())
def test_every_tap_reads_the_same_whatever_the_split(inputs):
    case, data, cuts = inputs
    out, reading, edits = run_tap(case, split(data, cuts))
    whole_out, whole_reading, _ = run_tap(case, [data])
    assert reading == whole_reading
    if edits:
        assert events(out) == events(whole_out)
    else:
        assert out == whole_out


@pytest.mark.parametrize("case", [case for case in TAP_CASES if case.kind == "sse"], ids=str)
@FUZZ
@given(st.data())
def test_the_blocks_a_stream_reader_passes_by_unread_would_change_nothing(case, draw):
    """A reader's `wants` lets the tap skip reading most blocks: handing it every block instead
    must give the same reading and forward the same bytes, at any split."""
    data = draw.draw(recorded_sse_streams() | st.binary(max_size=300))
    pieces = split(data, draw.draw(cuts_for(data)))
    out, reading, _ = run_tap(case, pieces)
    plan = case.wire.plan(case.path, {}, case.request)
    reader = case.wire.stream_reader(plan, case.path)
    reader.wants = lambda raw: True  # every block read, as before readers said what they want
    tap = SseTap(reader, plan.strip_usage_chunk)
    assert b"".join(tap.feed(piece) for piece in pieces) + tap.flush() == out
    assert tap.reading() == reading


@FUZZ
@given(tap_inputs())
def test_every_reading_can_be_stored(inputs):
    case, data, _ = inputs
    _, reading, _ = run_tap(case, [data])
    assert_storable(reading)


@FUZZ
@given(st.sampled_from(TAP_CASES), json_objects)
def test_usage_shapes_of_any_type_are_read_without_raising_and_can_be_stored(case, shape):
    """Well-framed responses whose fields have any type: the extractors themselves, not only
    the framing, meet hostile values (huge counts, floats, strings, nesting)."""
    body = json.dumps(shape).encode()
    data = {
        "sse": b"data: " + body + b"\n\n",
        "json": body,
        "array": b"[" + body + b"]",
    }[case.kind]
    _, reading, _ = run_tap(case, [data])
    assert_storable(reading)


# --- the SSE parser ----------------------------------------------------------------------------

sse_bytes = sse_streams() | st.binary(max_size=300)


@FUZZ
@given(st.data())
def test_sse_parser_keeps_every_byte_and_reads_the_same_at_any_split(draw):
    data = draw.draw(sse_bytes)
    pieces = split(data, draw.draw(cuts_for(data)))
    whole, parts = SseParser(), SseParser()
    expected = whole.feed(data)
    got = [block for piece in pieces for block in parts.feed(piece)]
    assert [(b.event, b.data) for b in got] == [(b.event, b.data) for b in expected]
    assert b"".join(b.raw for b in got) + parts.pending() == data


def test_sse_parser_reads_a_long_line_in_small_chunks_in_linear_time():
    """A big event (an image in base64) arriving in small reads must not be rescanned from
    its start on every read (that is quadratic: seconds of blocked event loop)."""
    line = b"data: " + b"A" * (4 * 1024 * 1024)
    piece = 2048

    def parse(data: bytes) -> float:
        parser = SseParser()
        started = time.perf_counter()
        for i in range(0, len(data), piece):
            assert parser.feed(data[i : i + piece]) == []
        [block] = parser.feed(b"\n\n")
        assert block.data == data[len(b"data: ") :]
        return time.perf_counter() - started

    small = parse(line[: len(line) // 8])
    big = parse(line)
    # Linear: 8x the bytes takes about 8x the time. Quadratic would take about 64x.
    assert big < max(small, 0.01) * 24, (small, big)


# --- the request side ----------------------------------------------------------------------------

raw_paths = st.lists(
    st.sampled_from(
        [*"/\\.@:%?#&=2Fef-_ab", "%2F", "%2f", "%2e", "%5C", "//", "@evil.example", ":80", "%40"]
    ),
    max_size=20,
).map("".join)


@FUZZ
@given(st.sampled_from([p.slug for p in REGISTRY]), raw_paths)
def test_the_upstream_url_never_leaves_the_provider_origin(slug, tail):
    provider = REGISTRY.get(slug)
    rest = _rest_of_path("/" + slug + tail, slug)
    assume(rest is not None)
    url = _upstream_url(provider, rest)
    if url is not None:
        assert f"{url.scheme}://{url.raw_authority}" == provider.origin
        assert url.host == URL(provider.base_url).host


@FUZZ
@given(
    st.sampled_from(TAP_CASES),
    json_values,
    st.sampled_from([b"", b"  \n", b"\xef\xbb\xbf"]),
    st.sampled_from(["utf-8", "utf-16", "utf-32"]),
)
def test_plan_never_raises_and_edits_only_to_ask_for_stream_usage(case, value, lead, encoding):
    if isinstance(value, dict):
        value = {**value, "stream": True}
    body = (
        lead + json.dumps(value).encode(encoding)
        if encoding == "utf-8"
        else (json.dumps(value).encode(encoding))
    )
    plan = case.wire.plan(case.path, {}, body)
    if plan.body == body:
        return
    assert plan.strip_usage_chunk
    sent = json.loads(plan.body)
    assert sent.pop("stream_options") == {
        **(value.get("stream_options") if isinstance(value.get("stream_options"), dict) else {}),
        "include_usage": True,
    }
    value.pop("stream_options", None)
    assert json.dumps(sent, sort_keys=True) == json.dumps(value, sort_keys=True)


headers_strategy = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "Authorization",
                "x-api-key",
                "x-goog-api-key",
                "api-key",
                "Connection",
                "X-MeterFox-Tag-",
                "X-MeterFox-Tag-Team",
                "Helicone-Property-X",
                "x-litellm-tags",
                "Keep-Alive",
                "Host",
                "Content-Length",
                "X-Other",
            ]
        ),
        st.text(max_size=20),
    ),
    max_size=8,
)


@FUZZ
@given(headers_strategy, st.dictionaries(st.sampled_from(["key", "alt"]), st.text(max_size=8)))
def test_header_helpers_never_raise(headers, query):
    incoming = CIMultiDict(headers)
    tags_from_headers(incoming)
    upstream_request_headers(incoming)
    client_response_headers(incoming)
    find_credential(incoming, query)


@FUZZ
@given(json_values)
def test_token_counts_are_never_negative_nor_beyond_what_can_be_stored(value):
    assert 0 <= as_int(value) <= MAX_COUNT
