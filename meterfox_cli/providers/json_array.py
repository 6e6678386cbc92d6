"""Reading a streamed JSON array (`[{…},\\r\\n{…}]`) element by element, safe across any split.

Gemini's `:streamGenerateContent` without `?alt=sse` answers with one JSON array whose elements
arrive piece by piece. The tap forwards every byte untouched as it arrives; on the side, a
scanner finds where each top-level element ends (tracking only brackets, braces and whole
strings, each found by one regex match, so text costs nothing in Python) and keeps the raw
bytes of the last element that can hold usage. Parsing happens once, when the response ends.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from meterfox_cli.providers.base import (
    MAX_JSON_BODY_BYTES,
    BodyTap,
    RequestPlan,
    WireFormat,
    parse_json_object,
    safe_read,
)
from meterfox_cli.usage import Reading

# Outside strings: a bracket or brace, or a whole string (group 1 is set when it is closed).
_TOKEN = re.compile(rb'[\[\]{}]|"[^"\\]*(?:\\.[^"\\]*)*(")?', re.DOTALL)
# Inside a string that an earlier chunk left open: an escape pair, or the closing quote.
_IN_STRING = re.compile(rb'\\.|"', re.DOTALL)


class JsonArrayScanner:
    """Splits a JSON array (or a single top-level object) into its top-level elements.

    `feed` returns the raw bytes of every element completed by the chunk. An element larger
    than `max_element` is skipped (its bytes are not kept) rather than held in memory.
    """

    def __init__(self, max_element: int = MAX_JSON_BODY_BYTES) -> None:
        self._buf = b""  # bytes from the start of the current element (or unread bytes)
        self._scan = 0  # offset in _buf of the first byte not yet scanned
        self._start: int | None = None  # offset in _buf where the current element began
        self._depth = 0
        self._element_depth: int | None = None  # 1 inside a top-level array, 0 for an object
        self._in_string = False
        self._max = max_element
        self._skipping = False  # the current element is too large: scan it, don't keep it

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        scan = self._scan
        done: list[bytes] = []
        size = len(buf)
        while scan < size:
            if self._in_string:
                match = _IN_STRING.search(buf, scan)
                if match is None:
                    # A lone trailing backslash escapes the next chunk's first byte: rescan it.
                    scan = size - 1 if buf.endswith(b"\\") else size
                    break
                scan = match.end()
                if match.group() == b'"':
                    self._in_string = False
                continue
            match = _TOKEN.search(buf, scan)
            if match is None:
                scan = size
                break
            scan = match.end()
            if buf[match.start()] == 0x22:  # '"': a string, closed here or still open
                self._in_string = match.group(1) is None
                continue
            self._structural(match.group(), match.start(), scan, buf, done)
        keeping = self._start is not None and not self._skipping
        if keeping and size - self._start > self._max:
            self._skipping, keeping = True, False
        keep_from = self._start if keeping else scan
        self._buf = buf[keep_from:]
        self._scan = scan - keep_from
        if keeping:
            self._start = 0
        return done

    def _structural(self, char: bytes, at: int, end: int, buf: bytes, done: list[bytes]) -> None:
        opening = char in (b"[", b"{")
        if opening:
            if self._element_depth is None:
                self._element_depth = 1 if char == b"[" else 0
            if self._depth == self._element_depth:
                self._start = at
                self._skipping = False
            self._depth += 1
            return
        self._depth -= 1
        if self._depth == self._element_depth and self._start is not None:
            if not self._skipping:
                done.append(buf[self._start : end])
            self._start = None
            self._skipping = False


class JsonArrayTap(BodyTap):
    """Forwards a streamed JSON array untouched and reads usage from its last usage element.

    `wanted` picks the elements worth keeping (cheaply, on raw bytes); at the end the last one
    is parsed and handed to the wire format's `read_body`, as a one-element list.
    """

    def __init__(
        self,
        wire: WireFormat,
        plan: RequestPlan,
        path: str,
        wanted: Callable[[bytes], bool],
    ) -> None:
        self._wire = wire
        self._plan = plan
        self._path = path
        self._wanted = wanted
        self._scanner: JsonArrayScanner | None = JsonArrayScanner()
        self._last: bytes | None = None

    def feed(self, chunk: bytes) -> bytes:
        if self._scanner is not None:
            try:
                for element in self._scanner.feed(chunk):
                    if self._wanted(element):
                        self._last = element
            except Exception:  # a scanner bug must never break the stream: stop reading
                self._scanner = None
        return chunk

    def reading(self) -> Reading:
        data = parse_json_object(self._last)
        if data is None:
            return Reading(model=self._plan.model)
        return safe_read(lambda: self._wire.read_body([data], self._plan, self._path), self._plan)
