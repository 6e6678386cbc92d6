"""An incremental Server-Sent Events parser that is safe across any chunk split.

It follows the WHATWG SSE rules that matter for usage: lines end in CRLF, LF or CR; a line that
starts with `:` is a comment (OpenRouter's `: OPENROUTER PROCESSING`, DeepSeek's `: keep-alive`);
`data:` lines of one event join with LF; a blank line ends the block. Each block keeps its raw
bytes, so a caller that must drop one block can forward every other byte exactly. A block
larger than MAX_BLOCK_BYTES is not held: it is passed over, its data streamed to a sink.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

_LINE_END = re.compile(rb"\r\n|\r|\n")

# A block is held whole up to this size; past it, it is passed over (see SseParser).
MAX_BLOCK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SseBlock:
    """One blank-line-terminated block. `data` is None for a block with no data lines."""

    event: str
    data: bytes | None
    raw: bytes


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
        self._pieces: list[bytes] = []  # bytes of the unfinished block, as fed
        self._held = 0  # their total size
        self._line: list[bytes] = []  # pieces of the unfinished line
        self._event = ""
        self._data: list[bytes] = []
        self._after_cr = False  # the last byte read was a CR: a following LF belongs to it

    def feed(self, chunk: bytes) -> list[SseBlock]:
        blocks: list[SseBlock] = []
        if not chunk:
            return blocks
        if self._spill is not None:
            return self._pass_over(chunk)
        pos = 0  # where the current line starts in chunk
        if self._after_cr:
            self._after_cr = False
            if chunk[0] == 0x0A:
                pos = 1
        block_start = 0  # where the unfinished block's bytes start in chunk
        held_line = self._line
        read_line = self._read_line
        for match in _LINE_END.finditer(chunk, pos):
            start, end = match.span()
            line = chunk[pos:start]
            pos = end
            if held_line:  # only the first line of a chunk can continue a held one
                held_line.append(line)
                line = b"".join(held_line)
                held_line = self._line = []
            if line:
                read_line(line)
                continue
            raw = chunk[block_start:end]
            if self._pieces:
                raw = b"".join([*self._pieces, raw])
                self._pieces, self._held = [], 0
            block = self._finish_block(raw)
            if block is not None:
                blocks.append(block)
            block_start = end
        size = len(chunk)
        if pos < size:
            self._line.append(chunk[pos:])
        elif chunk[-1] == 0x0D:
            self._after_cr = True
        if block_start < size:
            self._pieces.append(chunk[block_start:])
            self._held += size - block_start
            if self._held > self._max_block:
                self._start_spill()
        return blocks

    def pending(self) -> bytes:
        """Bytes of the block not yet terminated (held back only by callers that edit)."""
        return b"".join(self._pieces)

    def _start_spill(self) -> None:
        if self._oversized is None:
            raise SseOverflow(f"an SSE block exceeded {self._max_block} bytes")
        spill = _Spill(self._oversized(self._event))
        for line in self._data:
            spill.data_line(line)
        for piece in self._line:
            spill.piece(piece)
        self._spill = spill
        self._pieces, self._held, self._line, self._data = [], 0, [], []

    def _pass_over(self, chunk: bytes) -> list[SseBlock]:
        """Find the end of the oversized block without holding it; go on parsing after it."""
        spill = self._spill
        assert spill is not None
        pos = 0
        if self._after_cr:
            self._after_cr = False
            if chunk[0] == 0x0A:
                pos = 1
        for match in _LINE_END.finditer(chunk, pos):
            start, end = match.span()
            spill.piece(chunk[pos:start])
            pos = end
            if spill.line_end():
                sink = spill.sink
                self._spill = None
                event, self._event = self._event, ""
                blocks = [SseBlock(event, sink.finish(), b"")] if sink is not None else []
                if end == len(chunk):
                    self._after_cr = chunk[-1] == 0x0D
                    return blocks
                return blocks + self.feed(chunk[end:])
        if pos < len(chunk):
            spill.piece(chunk[pos:])
        else:
            self._after_cr = chunk[-1] == 0x0D
        return []

    def _read_line(self, line: bytes) -> None:
        if line[0] == 0x3A:  # ":" comment
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")

    def _finish_block(self, raw: bytes) -> SseBlock | None:
        data = b"\n".join(self._data) if self._data else None
        event = self._event
        self._event = ""
        self._data = []
        if self._oversized is not None and len(raw) > self._max_block:
            # Arrived whole in one chunk: read as if it had been passed over, whatever the split.
            sink = self._oversized(event)
            if sink is None:
                return None
            if data is not None:
                sink.feed(data)
            data = sink.finish()
        return SseBlock(event, data, raw)


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
