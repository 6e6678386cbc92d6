"""Large JSON responses are skimmed for their usage, never parsed whole on the event loop:
the skim must read exactly what a full parse reads, for every format that skims."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterfox_cli.providers.base import SKIM_JSON_BYTES, JsonTap, RequestPlan, WireFormat
from meterfox_cli.providers.cohere import CohereFormat
from meterfox_cli.providers.gemini import GeminiFormat
from meterfox_cli.providers.json_skim import JsonSkim
from meterfox_cli.providers.openai import OpenAIFormat
from tests.fixtures import cohere, gemini
from tests.providers.taps import split

PAD = "x" * (SKIM_JSON_BYTES + 1000)


def readings(wire: WireFormat, path: str, body: dict) -> tuple[object, object]:
    raw = json.dumps(body).encode()
    assert len(raw) > SKIM_JSON_BYTES and wire.skim(raw) is not None
    plan = RequestPlan(model="requested", stream=False, body=b"{}")
    whole = wire.read_body(json.loads(raw), plan, path)
    tap = wire.body_tap(plan, path, "application/json", method="POST")
    tap.feed(raw)
    return whole, tap.reading()


def gemini_large_inline_image() -> dict:
    body = json.loads(json.dumps(gemini.JSON_BODY))
    body["candidates"][0]["content"]["parts"].append(
        {"inlineData": {"mimeType": "image/png", "data": PAD}}
    )
    return body


@pytest.mark.parametrize(
    ("wire", "path", "body"),
    [
        (
            GeminiFormat(),
            "/v1beta/models/gemini-2.5-flash:generateContent",
            gemini_large_inline_image(),
        ),
        (
            GeminiFormat(),
            "/v1/models/m:batchEmbedContents",
            {**gemini.BATCH_EMBED_BODY, "pad": PAD},
        ),
        (CohereFormat(), "/v2/chat", {**cohere.CHAT_BODY, "pad": PAD}),
        (CohereFormat(), "/v2/embed", {**cohere.EMBED_BODY, "texts": [PAD]}),
    ],
    ids=["gemini image", "gemini embed batch (no usage)", "cohere chat", "cohere embed"],
)
def test_skim_reads_what_a_full_parse_reads(wire, path, body):
    whole, skimmed = readings(wire, path, body)
    assert skimmed == whole


def test_gemini_skim_keeps_the_usage_and_model_version():
    _, skimmed = readings(
        GeminiFormat(), "/v1beta/models/m:generateContent", gemini_large_inline_image()
    )
    assert skimmed.usage is not None and skimmed.model == gemini.MODEL_VERSION


# --- the skim reads the top level only ---------------------------------------------------------

SKIMMING = [
    (OpenAIFormat(), "/v1/chat/completions"),
    (GeminiFormat(), "/v1beta/models/m:generateContent"),
    (CohereFormat(), "/v2/chat"),
]


def usage_leaf(a: int, b: int) -> dict:
    """A usage object every skimming format reads (OpenAI, Gemini and Cohere fields at once)."""
    return {
        "prompt_tokens": a,
        "completion_tokens": b,
        "total_tokens": a + b,
        "promptTokenCount": a,
        "candidatesTokenCount": b,
        "billed_units": {"input_tokens": a, "output_tokens": b},
    }


USAGE_KEYS = ["usage", "usageMetadata", "meta"]
LEAVES = st.one_of(
    st.builds(usage_leaf, st.integers(0, 10**6), st.integers(0, 10**6)),
    st.integers(),
    st.text(alphabet='ab{}[]":,\\ usage', max_size=12),
    st.none(),
)
NESTED = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from([*USAGE_KEYS, "data", "response", "x"]), inner, max_size=3),
    ),
    max_leaves=12,
)
TOP_LEVEL = st.lists(
    st.tuples(st.sampled_from([*USAGE_KEYS, "data", "model", "pad", "items"]), NESTED),
    max_size=6,
)


def tap_reading(wire: WireFormat, path: str, raw: bytes):
    plan = RequestPlan(model="requested", stream=False, body=b"{}")
    tap = JsonTap(wire, plan, path)
    for at in range(0, len(raw), 50_000):
        tap.feed(raw[at : at + 50_000])
    return tap.reading()


def object_text(pairs: list[tuple[str, object]]) -> bytes:
    """A JSON object from key/value pairs, duplicate keys kept (json.loads keeps the last)."""
    members = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs]
    return ("{" + ", ".join(members) + "}").encode()


@settings(max_examples=150, deadline=None)
@given(pairs=TOP_LEVEL, pad_at=st.integers(0, 6), nested_usage=NESTED)
def test_a_large_body_is_read_from_its_top_level_only(pairs, pad_at, nested_usage):
    """`usage` objects nested at any depth, in list items or after the top-level one, are never
    taken for the response's own: the skim agrees with a full json.loads of the top level."""
    pairs = list(pairs)
    pairs.insert(min(pad_at, len(pairs)), ("pad", PAD))
    pairs.append(("items", [{"usage": nested_usage}, {"x": {"usage": usage_leaf(7, 9)}}]))
    raw = object_text(pairs)
    assert len(raw) > SKIM_JSON_BYTES
    plan = RequestPlan(model="requested", stream=False, body=b"{}")
    for wire, path in SKIMMING:
        assert tap_reading(wire, path, raw) == wire.read_body(json.loads(raw), plan, path)


@pytest.mark.parametrize(("wire", "path"), SKIMMING, ids=["openai", "gemini", "cohere"])
def test_a_large_list_does_not_lend_its_last_item_usage(wire, path):
    items = [{"id": f"c{i}", "pad": "y" * 500, "usage": usage_leaf(i, i)} for i in range(200)]
    raw = json.dumps({"object": "list", "data": items}).encode()
    assert tap_reading(wire, path, raw).usage is None


def test_the_skim_finds_values_across_any_chunk_split():
    raw = object_text([("a", {"usage": usage_leaf(1, 1)}), ("usage", usage_leaf(3, 4))])
    paths = [("usage",), ("a", "usage")]
    whole = JsonSkim(paths)
    whole.feed(raw)
    assert whole.found() == {"usage": usage_leaf(3, 4), "a": {"usage": usage_leaf(1, 1)}}
    for cut in range(1, len(raw)):
        split = JsonSkim(paths)
        split.feed(raw[:cut])
        split.feed(raw[cut:])
        assert split.found() == whole.found(), cut


@settings(max_examples=150, deadline=None)
@given(
    pairs=TOP_LEVEL,
    response=NESTED,
    repeated=st.booleans(),
    cuts=st.lists(st.integers(1, 4000), max_size=8),
)
def test_the_stream_skim_agrees_with_a_full_parse_at_nested_paths(pairs, response, repeated, cuts):
    """What an oversized SSE event is read with: `usage` and `response.usage` only, wherever
    else `usage` objects are nested, however the bytes are split (and a repeated `response`
    replaces what the first one held, as in json.loads)."""
    pairs = [*pairs, ("response", response)]
    if repeated:
        pairs.append(("response", {"x": [{"usage": 1}], "y": 2}))
    raw = object_text(pairs)
    full = json.loads(raw)
    expected: dict = {}
    if "usage" in full:
        expected["usage"] = full["usage"]
    if isinstance(full.get("response"), dict) and "usage" in full["response"]:
        expected["response"] = {"usage": full["response"]["usage"]}
    skim = JsonSkim([("usage",), ("response", "usage")])
    for piece in split(raw, [c % len(raw) for c in cuts]):
        skim.feed(piece)
    assert skim.found() == expected
