"""Finding a few values in a large JSON object without parsing it whole or holding it.

`JsonSkim` is fed the bytes of one JSON object in any pieces and keeps only the values at the
key paths it was asked for (`("usage",)` is the top-level `usage`; `("response", "usage")` the
`usage` of the top-level `response`): a `usage` nested anywhere else, in a list item or a
deeper object, is never taken for one of them. Where a key repeats, the last one wins, as in
json.loads. Brackets, braces and whole strings are found by one regex match each, so long text
and base64 cost next to nothing in Python.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

# Outside strings: whatever is not a bracket, brace or quote (numbers, literals, `:` and `,`:
# skipped in one C loop), then a bracket or brace (group 1), or a string (group 2; group 3 is
# set when it closes in this piece).
_TOKEN = re.compile(rb'[^\[\]{}"]*(?:([\[\]{}])|("[^"\\]*(?:\\.[^"\\]*)*)(")?)', re.DOTALL)

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_COLON = re.compile(rb"[ \t\r\n]*:")
_SPACE = frozenset(b" \t\r\n")
_MAX_KEY = 256  # longer strings are never one of the keys asked for
_DECODER = json.JSONDecoder()
_NOTHING = object()

Path = tuple[str, ...]


class JsonSkim:
    """Keeps the values at `paths` of the JSON object fed to it, each at most `max_value`
    bytes; holds nothing else (a key, or a string that may be one, at most `_MAX_KEY` bytes)."""

    def __init__(self, paths: Iterable[Path], max_value: int = 64 * 1024) -> None:
        self._paths = frozenset(paths)
        self._parents = frozenset(p[:i] for p in self._paths for i in range(len(p)))
        self._max_value = max_value
        self._buf = b""  # unscanned bytes, plus any held ones
        self._base = 0  # stream offset of _buf[0]
        self._scan = 0  # offset in _buf of the first byte not yet scanned
        self._keys: list[str | None] = []  # per open container: its current key (objects only)
        self._watched: list[bool] = []  # per open container: may it hold a wanted key?
        self._in_string = False
        self._string_at: int | None = None  # stream offset of a string that may be a key
        self._maybe_key: tuple[str, int] | None = None  # a string waiting for its `:`
        self._capture: tuple[Path, int, int] | None = None  # path, depth, stream offset
        self._raw: dict[Path, bytes] = {}
        self.broken = False  # not one well-nested JSON value: found() is empty
        self.complete = False  # one whole top-level object was read

    def feed(self, chunk: bytes) -> None:
        if self.broken or not chunk:
            return
        buf = self._buf + chunk if self._buf else chunk
        scan, size = self._scan, len(buf)
        while scan < size and not self.broken:
            if self._maybe_key is not None:
                while scan < size and buf[scan] in _SPACE:
                    scan += 1
                if scan == size:
                    break
                name, at = self._maybe_key
                self._maybe_key = None
                if buf[scan] == 0x3A:  # ':'
                    scan += 1
                    self._on_key(buf, name, at, self._base + scan)
                continue
            if self._in_string:
                end = _string_close(buf, scan)
                if end < 0:  # trailing backslashes may escape the next piece's first byte
                    scan = len(buf.rstrip(b"\\"))
                    break
                scan = end
                self._in_string = False
                self._string_end(buf, scan)
                continue
            match = _TOKEN.match(buf, scan)
            if match is None:  # no token left in this piece
                scan = size
                break
            scan = match.end()
            if match.group(1) is None:  # a string, closed here or still open
                at = match.start(2)
                self._string_at = self._base + at if self._may_be_key() else None
                if match.group(3) is None:
                    self._in_string = True
                else:
                    self._string_end(buf, scan)
                continue
            self._structural(buf, match.start(1), scan)
        self._keep(buf, scan)

    def found(self) -> dict[str, object]:
        """The values found so far, nested as in the object: {"response": {"usage": {...}}}."""
        tree: dict[str, object] = {}
        if self.broken:
            return tree
        for path, raw in self._raw.items():
            value = _value(raw)
            if value is _NOTHING:
                continue
            node = tree
            for key in path[:-1]:
                child = node.setdefault(key, {})
                if not isinstance(child, dict):
                    break
                node = child
            else:
                node[path[-1]] = value
        return tree

    def finish(self) -> bytes:
        """The values found, as a small JSON object (for an SSE event too large to hold)."""
        return json.dumps(self.found()).encode()

    # --- scanning ---------------------------------------------------------------------------

    def _may_be_key(self) -> bool:
        return bool(self._watched) and self._watched[-1]

    def _string_end(self, buf: bytes, end: int) -> None:
        at = self._string_at
        self._string_at = None
        if at is None or self._base + end - at > _MAX_KEY + 2:
            return
        name = _key(buf[at - self._base : end])
        if name is not None:
            self._maybe_key = (name, at)

    def _on_key(self, buf: bytes, name: str, at: int, value_at: int) -> None:
        depth = len(self._keys)
        capture = self._capture
        if capture is not None and capture[1] == depth:
            self._end_capture(buf, at)
        self._keys[-1] = name
        path = tuple(self._keys)
        if None in path:
            return
        for wanted in self._paths:  # a repeated key replaces what was found under the last one
            if wanted[:depth] == path:
                self._raw.pop(wanted, None)
        if path in self._paths:
            self._capture = (path, depth, value_at)  # type: ignore[assignment]

    def _structural(self, buf: bytes, at: int, end: int) -> None:
        char = buf[at]
        depth = len(self._keys)
        if char in (0x7B, 0x5B):  # '{' '['
            if depth == 0 and (self.complete or char == 0x5B):
                self.broken = True  # a second value, or not an object: for a full parse
                return
            watched = char == 0x7B and (
                depth == 0 or (None not in self._keys and tuple(self._keys) in self._parents)
            )
            self._keys.append(None)
            self._watched.append(watched)
            return
        if depth == 0:
            self.broken = True
            return
        capture = self._capture
        if capture is not None:
            if capture[1] == depth:  # the object holding the key closes
                self._end_capture(buf, self._base + at)
            elif capture[1] == depth - 1:  # the captured object or list closes
                self._end_capture(buf, self._base + end)
        self._keys.pop()
        self._watched.pop()
        self.complete = not self._keys

    def _end_capture(self, buf: bytes, end: int) -> None:
        assert self._capture is not None
        path, _, start = self._capture
        self._capture = None
        if end - start <= self._max_value:
            self._raw[path] = buf[start - self._base : end - self._base]

    def _keep(self, buf: bytes, scan: int) -> None:
        """Hold only what is still needed: a value being captured, a string that may be a key."""
        keep = self._base + scan
        capture = self._capture
        if capture is not None:
            if self._base + len(buf) - capture[2] > self._max_value:
                self._capture = None  # too large to be a value we read
            else:
                keep = min(keep, capture[2])
        if self._in_string and self._string_at is not None:
            if self._base + len(buf) - self._string_at > _MAX_KEY + 2:
                self._string_at = None
            else:
                keep = min(keep, self._string_at)
        cut = keep - self._base
        self._buf = buf[cut:]
        self._scan = scan - cut
        self._base = keep


def top_level(body: bytes, keys: Iterable[str], max_value: int = 64 * 1024) -> dict | None:
    """The top-level `keys` of a JSON object body (those it has), or None when the body is not
    a JSON object that this scan can follow (then only a full parse can say what it is).

    Faster than JsonSkim on a body held whole: strings are found with `find` and one regex
    match each, and the depth between them by counting brackets, so numbers (embeddings) cost
    only C loops. A wanted value is decoded from at most `max_value` bytes after its key.
    """
    wanted = frozenset(keys)
    start = len(body) - len(body.lstrip())
    if body[start : start + 1] != b"{":
        return None
    found: dict[str, object] = {}
    depth, pos, size = 0, start, len(body)
    while True:
        quote = body.find(b'"', pos)
        stop = size if quote < 0 else quote
        depth += body.count(b"{", pos, stop) + body.count(b"[", pos, stop)
        depth -= body.count(b"}", pos, stop) + body.count(b"]", pos, stop)
        if quote < 0:
            return found if depth == 0 else None
        if depth <= 0:
            return None  # a second top-level value, or not JSON
        string = _STRING.match(body, quote)
        if string is None:
            return None
        pos = string.end()
        if depth == 1 and (colon := _COLON.match(body, pos)) is not None:
            name = _key(string.group())
            if name in wanted:
                found.pop(name, None)  # a repeated key: the last one wins
                value = _value(body[colon.end() : colon.end() + max_value])
                if value is not _NOTHING:
                    found[name] = value


def _value(raw: bytes) -> object:
    """The JSON value at the start of `raw` (after blanks; anything may follow), or _NOTHING."""
    text = raw.decode("utf-8", "replace")
    try:
        value, _ = _DECODER.raw_decode(text, len(text) - len(text.lstrip()))
    except ValueError:
        return _NOTHING
    return value


def _string_close(buf: bytes, scan: int) -> int:
    """Where an open string ends (just past its closing quote) at or after `scan`, or -1."""
    while (quote := buf.find(b'"', scan)) >= 0:
        slashes = quote - len(buf[scan:quote].rstrip(b"\\")) - scan
        if slashes % 2 == 0:
            return quote + 1
        scan = quote + 1
    return -1


def _key(raw: bytes) -> str | None:
    try:
        return json.loads(raw) if b"\\" in raw else raw[1:-1].decode("utf-8")
    except ValueError:
        return None
