"""The SSE parser reads the same events whatever the chunk boundaries and line endings."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterfox_cli.providers.sse import SseParser

STREAM = (
    b": OPENROUTER PROCESSING\n\n"
    b'event: message_start\ndata: {"a": 1}\n\n'
    b"data: line one\ndata: line two\n\n"
    b": keep-alive\n\n"
    b"data:no-space\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    ("", None),
    ("message_start", b'{"a": 1}'),
    ("", b"line one\nline two"),
    ("", None),
    ("", b"no-space"),
    ("", b"[DONE]"),
]


def parse(chunks: list[bytes]) -> list[tuple[str, bytes | None, bytes]]:
    """Events, with the bytes still pending at the end (a lone LF after a CR) as a last raw."""
    parser = SseParser()
    blocks = [block for chunk in chunks for block in parser.feed(chunk)]
    events = [(b.event, b.data, b.raw) for b in blocks]
    if parser.pending():
        events.append(("", None, parser.pending()))
    return events


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_events_comments_and_multiline_data(newline):
    stream = STREAM.replace(b"\n", newline)
    events = parse([stream])
    assert [(e, d) for e, d, _ in events][: len(EXPECTED)] == EXPECTED
    assert b"".join(raw for _, _, raw in events) == stream


newlines = st.sampled_from([b"\n", b"\r\n", b"\r"])


@settings(max_examples=300, deadline=None)
@given(
    cuts=st.lists(st.integers(0, len(STREAM.replace(b"\n", b"\r\n"))), max_size=40),
    newline=newlines,
)
def test_any_split_yields_the_same_events_and_bytes(cuts, newline):
    stream = STREAM.replace(b"\n", newline)
    events = parse(split_at(stream, cuts))
    assert [(e, d) for e, d, _ in events][: len(EXPECTED)] == EXPECTED
    assert b"".join(raw for _, _, raw in events) == stream


def test_every_single_byte_split():
    stream = STREAM.replace(b"\n", b"\r\n")
    events = parse([stream[i : i + 1] for i in range(len(stream))])
    assert [(e, d) for e, d, _ in events][: len(EXPECTED)] == EXPECTED
    assert b"".join(raw for _, _, raw in events) == stream


def reference_events(stream: bytes) -> list[tuple[str, bytes | None]]:
    """The events of a whole stream by the WHATWG rules, line by line: no chunks, no framing
    (the parser finds each block's end first and reads its lines only when asked)."""
    events, event, data = [], "", []
    for line in re.split(rb"\r\n|\r|\n", stream)[:-1]:  # the last: an unterminated line
        if not line:
            events.append((event, b"\n".join(data) if data else None))
            event, data = "", []
        elif not line.startswith(b":"):
            name, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
    return events


# Pieces of SSE, line ends of every kind mixed at random: CR LF pairs form across pieces too.
SSE_PIECES = [
    b"data:", b"data: ", b"event: ", b"event:", b": note", b":", b"x", b" ", b"\xff",
    b'{"usage": {"a": 1}}', b"message_start", b"\n", b"\r", b"\r\n", b"\n\n", b"\r\n\r\n",
]  # fmt: skip
sse_soup = st.lists(st.sampled_from(SSE_PIECES), max_size=60).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_any_stream_at_any_split_reads_as_the_line_by_line_rules_read_it_whole(draw):
    stream = draw.draw(sse_soup)
    cuts = draw.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    parser = SseParser()
    blocks = [block for piece in split_at(stream, cuts) for block in parser.feed(piece)]
    assert [(b.event, b.data) for b in blocks] == reference_events(stream)
    assert b"".join(b.raw for b in blocks) + parser.pending() == stream


@pytest.mark.parametrize(
    ("stream", "raws"),
    [
        (b"data: a\n\ndata: b\n\n", [b"data: a\n\n", b"data: b\n\n"]),
        (b"data: a\r\n\r\n\r\n", [b"data: a\r\n\r\n", b"\r\n"]),  # then an empty block
        (b"data: a\r\rdata: b\n\r\n", [b"data: a\r\r", b"data: b\n\r\n"]),
        (b"data: a\r\r\ndata: b\r\n\n", [b"data: a\r\r\n", b"data: b\r\n\n"]),
    ],
)
def test_each_block_ends_with_its_blank_line(stream, raws):
    assert [b.raw for b in SseParser().feed(stream)] == raws


def test_a_block_is_read_only_when_asked():
    [block] = SseParser().feed(b"event: e\ndata: one\ndata: two\n\n")
    assert block._fields is None  # framed, not read
    assert (block.event, block.data) == ("e", b"one\ntwo")


def test_unterminated_block_is_pending_not_emitted():
    parser = SseParser()
    assert parser.feed(b"data: partial") == []
    assert parser.pending() == b"data: partial"
    [block] = parser.feed(b"\n\n")
    assert block.data == b"partial"


# --- a block too large to hold is passed over, its data streamed to a sink ---------------------


class Collect:
    def __init__(self) -> None:
        self.data = b""

    def feed(self, data: bytes) -> None:
        self.data += data

    def finish(self) -> bytes:
        return b"<" + self.data + b">"


BIG = b"x" * 200
LARGE = (
    b"data: small\n\n"
    b"event: response.completed\ndata: " + BIG + b"\ndata: second " + BIG + b"\n: note\n\n"
    b"event: after\ndata: small again\n\n"
)
LARGE_EXPECTED = [
    ("", b"small"),
    ("response.completed", b"<" + BIG + b"\nsecond " + BIG + b">"),
    ("after", b"small again"),
]


def parse_oversized(chunks: list[bytes], sink=Collect) -> list[tuple[str, bytes | None]]:
    parser = SseParser(oversized=lambda event: sink(), max_block=64)
    return [(b.event, b.data) for chunk in chunks for b in parser.feed(chunk)]


@settings(max_examples=300, deadline=None)
@given(
    cuts=st.lists(st.integers(0, len(LARGE.replace(b"\n", b"\r\n"))), max_size=40),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_an_oversized_block_is_streamed_to_its_sink_at_any_split(cuts, newline):
    stream = LARGE.replace(b"\n", newline)
    assert parse_oversized(split_at(stream, cuts)) == LARGE_EXPECTED


@st.composite
def mixed_line_ends(draw, stream: bytes) -> bytes:
    """`stream` (LF line ends) with each line end drawn from LF, CRLF and CR; a CR is never
    followed by an LF of the next line end (the two would read as one CRLF)."""
    out, previous = [], b""
    for line in stream.split(b"\n")[:-1]:
        end = draw(newlines)
        if previous == b"\r" and not line and end.startswith(b"\n"):
            end = b"\r"
        out.append(line + end)
        previous = end
    return b"".join(out)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_an_oversized_block_with_mixed_line_ends_is_read_at_any_split(draw):
    stream = draw.draw(mixed_line_ends(LARGE))
    cuts = draw.draw(st.lists(st.integers(0, len(stream)), max_size=40))
    assert parse_oversized(split_at(stream, cuts)) == LARGE_EXPECTED


def test_an_oversized_block_is_not_held():
    parser = SseParser(oversized=lambda event: None, max_block=64)
    assert parser.feed(b"event: big\ndata: " + b"y" * 1000) == []
    assert parser.pending() == b""
    assert parser.feed(b"y" * 10_000 + b"\n\n") == []  # no sink: the block is dropped
    assert [(b.event, b.data) for b in parser.feed(b"data: next\n\n")] == [("", b"next")]


def test_without_a_sink_factory_an_oversized_block_still_raises():
    from meterfox_cli.providers.sse import SseOverflow

    with pytest.raises(SseOverflow):
        SseParser(max_block=64).feed(b"data: " + b"z" * 100)
