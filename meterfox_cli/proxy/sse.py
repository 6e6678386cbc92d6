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
    def __init__(self) -> None:
        self._buf = b""  # bytes of the unfinished block
        self._scan = 0  # offset in _buf of the first line not yet read
        self._event = ""
        self._data: list[bytes] = []
        self._after_cr = False  # the last byte read was a CR: a following LF belongs to it

    def feed(self, chunk: bytes) -> list[SseBlock]:
        buf = self._buf + chunk if self._buf else chunk
        scan = self._scan
        if self._after_cr and buf[scan : scan + 1] == b"\n":
            scan += 1
        self._after_cr = False
        start = 0
        blocks: list[SseBlock] = []
        size = len(buf)
        while scan < size:
            match = _LINE_END.search(buf, scan)
            if match is None:
                break
            line = buf[scan : match.start()]
            scan = match.end()
            if scan == size and match.group() == b"\r":
                self._after_cr = True
            if line:
                self._read_line(line)
                continue
            blocks.append(self._finish_block(buf[start:scan]))
            start = scan
        self._buf = buf[start:]
        self._scan = scan - start
        if len(self._buf) > MAX_BLOCK_BYTES:
            raise SseOverflow(f"an SSE block exceeded {MAX_BLOCK_BYTES} bytes")
        return blocks

    def pending(self) -> bytes:
        """Bytes of the block not yet terminated (held back only by callers that edit)."""
        return self._buf

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
