"""An incremental Server-Sent Events parser that is safe across any chunk split.

It follows the WHATWG SSE rules that matter for usage: lines end in CRLF, LF or CR; a line that
starts with `:` is a comment (OpenRouter's `: OPENROUTER PROCESSING`, DeepSeek's `: keep-alive`);
`data:` lines of one event join with LF; a blank line ends the block. Each block keeps its raw
bytes, so a caller that must drop one block can forward every other byte exactly. Blocks are
framed first (one search for the blank line that ends each) and their fields read only when
asked: a tap that needs one event in twenty reads one. A block larger than MAX_BLOCK_BYTES is
not held: it is passed over, its data streamed to a sink.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

_LINE_END = re.compile(rb"\r\n|\r|\n")
# A line end, then an empty line: where a block ends (a CRLF is one line end, never a CR and
# an LF). Written as three branches that each start with a byte, so the search skips ahead.
_BLOCK_END = re.compile(rb"\r\n(?>\r\n|\r|\n)|\r(?!\n)(?>\r\n|\r|\n)|\n(?>\r\n|\r|\n)")
_CR, _LF = 0x0D, 0x0A

# A block is held whole up to this size; past it, it is passed over (see SseParser).
MAX_BLOCK_BYTES = 8 * 1024 * 1024


class SseBlock:
    """One blank-line-terminated block: its raw bytes as received, and its `event` name and
    `data` (None for a block with no data lines), read from the raw bytes on first use.

    A block read through a sink (too large to hold, see SseParser) is `skimmed`: its fields
    are what the sink found, its raw bytes empty when it was passed over."""

    __slots__ = ("_fields", "raw", "skimmed")

    def __init__(self, raw: bytes, fields: tuple[str, bytes | None] | None = None) -> None:
        self.raw = raw
        self.skimmed = fields is not None
        self._fields = fields

    @property
    def event(self) -> str:
        return (self._fields or self._read())[0]

    @property
    def data(self) -> bytes | None:
        return (self._fields or self._read())[1]

    def _read(self) -> tuple[str, bytes | None]:
        self._fields = fields = block_fields(self.raw)
        return fields

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SseBlock):
            return NotImplemented
        return (self.event, self.data, self.raw) == (other.event, other.data, other.raw)

    __hash__ = None  # type: ignore[assignment]  # mutable cache: compared by value, never hashed

    def __repr__(self) -> str:
        return f"SseBlock(event={self.event!r}, data={self.data!r}, raw={self.raw!r})"


def block_fields(raw: bytes) -> tuple[str, bytes | None]:
    """The event name and data of one whole block's raw bytes."""
    if raw[:1] == b"\n" and len(raw) > 1:
        raw = raw[1:]  # the LF of a CRLF whose CR ended the block before: not a line
    event, data = _fields(_LINE_END.split(raw)[:-2])  # the last two: the blank line's
    return event, data


def _fields(lines: list[bytes]) -> tuple[str, bytes | None]:
    """The event name and joined data of a block's lines (none of them blank)."""
    event = ""
    data: list[bytes] = []
    for line in lines:
        name, value = _field(line)  # a comment (":…") has the empty name
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    return event, b"\n".join(data) if data else None


def _field(line: bytes) -> tuple[bytes, bytes]:
    """A line's field name and value (one space after the colon is not part of the value)."""
    name, sep, value = line.partition(b":")
    return name, value[1:] if sep and value[:1] == b" " else value


def _blank_line(chunk: bytes) -> bytes | None:
    """A line end and an empty line, when every line end in `chunk` is of one kind (LF, CRLF or
    CR): found by a plain search, many times faster than the regular expression; else None."""
    crs = chunk.count(b"\r")
    if not crs:
        return b"\n\n"
    lfs = chunk.count(b"\n")
    if not lfs:
        return b"\r\r"
    return b"\r\n\r\n" if crs == lfs == chunk.count(b"\r\n") else None


class SseOverflow(Exception):
    """A block grew past MAX_BLOCK_BYTES and the parser was given no way to pass it over."""


class DataSink(Protocol):
    """Takes the data of a block too large to hold, piece by piece."""

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> bytes:
        """What to hand on as the block's data (something small read from it)."""
        ...


class SseParser:
    """Feed it chunks; it returns the blocks each chunk completes.

    Work is linear in the bytes fed, however a block is split: held bytes are never rescanned
    nor re-joined until the block ends (a multi-megabyte event, such as a streamed image in
    base64, may arrive in thousands of small reads).

    A block past `max_block` bytes raises SseOverflow, unless `oversized` is given: then the
    block is let go and the rest of it passed over, its data lines streamed to the sink that
    `oversized(event name)` returns, and it ends as a block whose data is the sink's `finish()`
    and whose raw bytes are empty (None from `oversized`: the block is dropped). A block past
    `max_block` that arrives whole in one chunk is read through the sink just the same.
    """

    def __init__(
        self,
        oversized: Callable[[str], DataSink | None] | None = None,
        max_block: int = MAX_BLOCK_BYTES,
    ) -> None:
        self._oversized = oversized
        self._max_block = max_block
        self._spill: _Spill | None = None  # the oversized block being passed over
        self._event = ""  # the event name of the block being passed over
        self._pieces: list[bytes] = []  # bytes of the unfinished block, as fed
        self._held = 0  # their total size
        self._line_start = True  # the bytes so far end where a line starts
        self._after_cr = False  # the last byte read was a CR: a following LF belongs to it

    def feed(self, chunk: bytes) -> list[SseBlock]:
        blocks: list[SseBlock] = []
        if not chunk:
            return blocks
        if self._spill is not None:
            return self._pass_over(chunk)
        size = len(chunk)
        pos = 0  # where to look for the end of the block
        if self._after_cr:
            self._after_cr = False
            if chunk[0] == _LF:  # the rest of a CRLF: no new line starts here
                pos = 1
        start = 0  # where the unfinished block's bytes start in chunk
        line_start = self._line_start
        blank = _blank_line(chunk)
        while pos < size:
            if line_start and chunk[pos] in (_LF, _CR):  # an empty line
                end = pos + 2 if chunk.startswith(b"\r\n", pos) else pos + 1
            elif blank is not None:  # one kind of line end: a plain search
                end = chunk.find(blank, pos)
                if end < 0:
                    break
                end += len(blank)
            else:
                match = _BLOCK_END.search(chunk, pos)
                if match is None:
                    break
                end = match.end()
            raw = chunk[start:end]
            if self._pieces:
                raw = b"".join([*self._pieces, raw])
                self._pieces, self._held = [], 0
            if len(raw) > self._max_block and self._oversized is not None:
                block = self._skim_whole(raw)  # arrived whole: read as if passed over
                if block is not None:
                    blocks.append(block)
            else:
                blocks.append(SseBlock(raw))
            start = pos = end
            line_start = True
        last = chunk[-1]
        self._after_cr = last == _CR
        if start == size:  # the chunk ends where a block ends
            self._line_start = True
            return blocks
        self._line_start = last in (_LF, _CR)
        self._pieces.append(chunk[start:])
        self._held += size - start
        if self._held > self._max_block:
            self._start_spill()
        return blocks

    def pending(self) -> bytes:
        """Bytes of the block not yet terminated (held back only by callers that edit)."""
        return b"".join(self._pieces)

    def _skim_whole(self, raw: bytes) -> SseBlock | None:
        event, data = block_fields(raw)
        sink = self._oversized(event) if self._oversized is not None else None
        if sink is None:
            return None
        if data is not None:
            sink.feed(data)
        return SseBlock(raw, (event, sink.finish()))

    def _start_spill(self) -> None:
        """Let the held bytes go: their whole lines read now (once), the rest passed over."""
        if self._oversized is None:
            raise SseOverflow(f"an SSE block exceeded {self._max_block} bytes")
        held = b"".join(self._pieces)
        if held[:1] == b"\n":
            held = held[1:]  # the LF of a CRLF before the block (see block_fields)
        *lines, partial = _LINE_END.split(held)
        self._event, _ = _fields(lines)
        spill = _Spill(self._oversized(self._event))
        for name, value in map(_field, lines):
            if name == b"data":
                spill.data_line(value)
        spill.piece(partial)
        self._spill = spill
        self._pieces, self._held = [], 0

    def _pass_over(self, chunk: bytes) -> list[SseBlock]:
        """Find the end of the oversized block without holding it; go on parsing after it."""
        spill = self._spill
        assert spill is not None
        pos = 0
        if self._after_cr:
            self._after_cr = False
            if chunk[0] == _LF:
                pos = 1
        for match in _LINE_END.finditer(chunk, pos):
            start, end = match.span()
            spill.piece(chunk[pos:start])
            pos = end
            if spill.line_end():
                sink = spill.sink
                self._spill, self._line_start = None, True
                event, self._event = self._event, ""
                blocks = [SseBlock(b"", (event, sink.finish()))] if sink is not None else []
                if end == len(chunk):
                    self._after_cr = chunk[-1] == _CR
                    return blocks
                return blocks + self.feed(chunk[end:])
        if pos < len(chunk):
            spill.piece(chunk[pos:])
        else:
            self._after_cr = chunk[-1] == _CR
        return []


class _Spill:
    """The lines of a block too large to hold, as they pass: data values go to the sink."""

    _HEAD = 6  # enough of a line to know whether it is `data:` (and drop one space after it)

    def __init__(self, sink: DataSink | None) -> None:
        self.sink = sink
        self._head = b""  # the start of the current line, until its field is known
        self._data: bool | None = None  # is the current line a data line? (None: not known)
        self._empty = True  # nothing yet on the current line
        self._lines = 0  # data lines so far (they join with LF)

    def data_line(self, value: bytes) -> None:
        self._open_data()
        self._feed(value)

    def piece(self, piece: bytes) -> None:
        if not piece:
            return
        self._empty = False
        if self._data is None:
            self._head += piece
            if len(self._head) < self._HEAD:
                return
            piece, self._head = self._decide(self._head), b""
        if self._data:
            self._feed(piece)

    def line_end(self) -> bool:
        """The current line ended; True when it was blank (the block ends)."""
        if self._empty:
            return True
        if self._data is None:
            self._feed(self._decide(self._head))
        self._head, self._data, self._empty = b"", None, True
        return False

    def _decide(self, head: bytes) -> bytes:
        """Whether the line is a data line; the part of `head` that is its value."""
        name, _, value = head.partition(b":")
        self._data = name == b"data"
        if not self._data:
            return b""
        self._open_data()
        return value[1:] if value[:1] == b" " else value

    def _open_data(self) -> None:
        if self._lines:
            self._feed(b"\n")
        self._lines += 1

    def _feed(self, data: bytes) -> None:
        if data and self.sink is not None:
            self.sink.feed(data)
