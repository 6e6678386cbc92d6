"""An incremental Server-Sent Events parser that is safe across any chunk split.

It follows the WHATWG SSE rules that matter for usage: lines end in CRLF, LF or CR; a line that
starts with `:` is a comment (OpenRouter's `: OPENROUTER PROCESSING`, DeepSeek's `: keep-alive`);
`data:` lines of one event join with LF; a blank line ends the block. Each block keeps its raw
bytes, so a caller that must drop one block can forward every other byte exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")

# A block that grows past this without ending is not an SSE stream we can read.
MAX_BLOCK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SseBlock:
    """One blank-line-terminated block. `data` is None for a block with no data lines."""

    event: str
    data: bytes | None
    raw: bytes


class SseOverflow(Exception):
    """A block grew past MAX_BLOCK_BYTES: the stream is not (readable) SSE."""


class SseParser:
    """Feed it chunks; it returns the blocks each chunk completes.

    Work is linear in the bytes fed, however a block is split: held bytes are never rescanned
    nor re-joined until the block ends (a multi-megabyte event, such as a streamed image in
    base64, may arrive in thousands of small reads).
    """

    def __init__(self) -> None:
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
            blocks.append(self._finish_block(raw))
            block_start = end
        size = len(chunk)
        if pos < size:
            self._line.append(chunk[pos:])
        elif chunk[-1] == 0x0D:
            self._after_cr = True
        if block_start < size:
            self._pieces.append(chunk[block_start:])
            self._held += size - block_start
            if self._held > MAX_BLOCK_BYTES:
                raise SseOverflow(f"an SSE block exceeded {MAX_BLOCK_BYTES} bytes")
        return blocks

    def pending(self) -> bytes:
        """Bytes of the block not yet terminated (held back only by callers that edit)."""
        return b"".join(self._pieces)

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

    def _finish_block(self, raw: bytes) -> SseBlock:
        data = b"\n".join(self._data) if self._data else None
        block = SseBlock(self._event, data, raw)
        self._event = ""
        self._data = []
        return block
