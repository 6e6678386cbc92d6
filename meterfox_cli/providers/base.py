"""The common interface every wire format implements, and the taps that feed it.

An adapter answers five questions about its wire format, without doing any I/O:
where the model and stream flag are in a request (`plan`), which calls generate and bill, so
their responses are read for usage (`reads_usage`, by method and path), how usage is read from
a JSON body (`read_body`) and from a stream (`stream_reader`), and what an error looks like to
the caller's SDK (`error_body`). Authentication is common to all formats and lives in
`Credential`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from meterfox_cli.providers.json_skim import JsonSkim, Path, top_level
from meterfox_cli.providers.sse import SseBlock, SseOverflow, SseParser
from meterfox_cli.usage import Reading, Usage

# A non-streamed JSON body larger than this is forwarded but not read for usage (and the part
# held so far is let go); a body of any other type is never held.
MAX_JSON_BODY_BYTES = 32 * 1024 * 1024
# Above this, a format may read just the few top-level values it needs (`WireFormat.skim`):
# parsing a 3 MB embeddings response whole holds the event loop for ~50 ms.
SKIM_JSON_BYTES = 64 * 1024
# Above this a JSON body is parsed with a Python-level object hook: json's C parser holds the
# GIL from start to end, the hook lets the interpreter switch threads between two objects, so
# a parse on a worker thread no longer stalls the event loop (proxy/forward.py parses request
# bodies this large on one).
LARGE_JSON_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """What an adapter decided about one request before it goes upstream.

    ``body`` is the body to send (the caller's bytes unless the adapter had to ask for usage);
    ``strip_usage_chunk`` is set when the adapter asked for stream usage the caller did not,
    so the usage-only chunk must be removed from what the caller receives.
    """

    model: str | None
    stream: bool
    body: bytes | None
    strip_usage_chunk: bool = False
    request_json: object = None


class StreamReader(ABC):
    """Reads usage from the blocks (SSE) or bytes of one streamed response."""

    # Where usage may be in one event's JSON: read from an event too large to hold.
    skim_paths: tuple[Path, ...] = ()

    def wants(self, raw: bytes) -> bool:
        """False only if `on_block` would neither read anything from a block of these raw bytes
        nor drop it: such a block is forwarded and its fields are never read (most of a stream's
        events are content a reader passes by). A cheap test on the bytes (a substring that
        must be there); the answer may change as the reader learns. Default: every block."""
        return True

    @abstractmethod
    def on_block(self, block: SseBlock) -> bool:
        """Read one SSE block; return False to drop it from what the caller receives. Only
        blocks it `wants` (and every skimmed one: see SseBlock) are handed to it."""

    def reading(self) -> Reading:
        return Reading()

    def oversized(self, event: str) -> JsonSkim | None:
        """What takes the data of an event too large to hold (a base64 image): the values at
        `skim_paths`, handed to `on_block` as a small JSON object; None to pass it over."""
        return JsonSkim(self.skim_paths) if self.skim_paths else None


class WireFormat(ABC):
    """One wire format (OpenAI-style, Anthropic Messages, Gemini, ...)."""

    name: str = "abstract"
    # The top-level keys `read_body` needs from a large JSON body (see `skim`).
    skim_keys: tuple[str, ...] = ()

    def for_path(self, path: str) -> WireFormat:
        """The format spoken at `path`: this one, unless the provider serves another wire format
        there too (Gemini's OpenAI-compatible `/v1beta/openai/…`). The proxy asks once per
        request and uses the answer for the plan, the usage tap and its own error bodies."""
        return self

    def plan(self, path: str, query: Mapping[str, str], body: bytes | None) -> RequestPlan:
        """Read model and stream flag from a JSON request body; formats may override."""
        data = parse_json_object(body)
        model = data.get("model") if isinstance(data, dict) else None
        stream = bool(data.get("stream")) if isinstance(data, dict) else False
        return RequestPlan(
            model=model if isinstance(model, str) else None,
            stream=stream,
            body=body,
            request_json=data,
        )

    def plan_form(self, path: str, fields: Mapping[str, str]) -> RequestPlan:
        """Model and stream flag from the form fields at the head of a multipart upload (an
        audio file, an image to edit); the body itself streams through unread."""
        model = fields.get("model") or None
        return RequestPlan(model=model, stream=fields.get("stream") == "true", body=None)

    def reads_usage(self, method: str, path: str) -> bool:
        """Whether this call generates and bills, so its response is read for usage. A read of
        an object that exists already (a GET, a list) is a free request. Default: POSTs."""
        return method == "POST"

    @abstractmethod
    def read_body(self, data: object, plan: RequestPlan, path: str) -> Reading:
        """Usage from a complete (non-streamed) JSON response body."""

    def skim(self, body: bytes) -> object:
        """The top-level `skim_keys` of a large JSON body, found without parsing the rest (a
        `usage` nested deeper is never taken for the response's own); None to parse it whole."""
        return top_level(body, self.skim_keys) if self.skim_keys else None

    @abstractmethod
    def stream_reader(self, plan: RequestPlan, path: str) -> StreamReader:
        """A reader for one streamed response (SSE)."""

    @abstractmethod
    def error_body(self, status: int, message: str, kind: str) -> dict[str, object]:
        """An error in the JSON shape this format's SDKs parse into a proper exception."""

    def body_tap(self, plan: RequestPlan, path: str, content_type: str, *, method: str) -> BodyTap:
        """The tap for the response to `method path`: a free call's, or a body that is neither
        SSE nor JSON (audio, files), is passed through unread and unheld."""
        if not (self.reads_usage(method, path) or plan.strip_usage_chunk):
            return UnreadTap(plan)
        if content_type.startswith("text/event-stream"):
            return SseTap(self.stream_reader(plan, path), plan.strip_usage_chunk)
        if not is_json(content_type):
            return UnreadTap(plan)
        return self.json_tap(plan, path)

    def json_tap(self, plan: RequestPlan, path: str) -> BodyTap:
        """The tap for a JSON response; formats that stream JSON override."""
        return JsonTap(self, plan, path)

    def socket_tap(self, path: str, query: Mapping[str, str]) -> SocketTap | None:
        """The tap for a WebSocket session at `path` (OpenAI Realtime, Gemini Live); None where
        this format bills nothing over a socket: its frames are relayed, nothing is read."""
        return None


class BodyTap(ABC):
    """Sees a copy of every response chunk as it passes; never blocks or reorders the stream.

    `feed` returns the bytes to forward: the chunk itself unless the tap edits the stream.
    """

    @abstractmethod
    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes:
        """Bytes still held back when the response ends."""
        return b""

    @abstractmethod
    def reading(self) -> Reading: ...


class UnreadTap(BodyTap):
    """Passes a response through without reading or holding it: recorded with no usage."""

    def __init__(self, plan: RequestPlan) -> None:
        self._model = plan.model

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def reading(self) -> Reading:
        return Reading(model=self._model)


class JsonTap(BodyTap):
    """Collects a non-streamed JSON body and reads usage once it is complete; a body past
    MAX_JSON_BODY_BYTES is let go as soon as it passes the limit."""

    def __init__(self, wire: WireFormat, plan: RequestPlan, path: str) -> None:
        self._wire = wire
        self._plan = plan
        self._path = path
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def held(self) -> int:
        """Bytes held for reading: at most MAX_JSON_BODY_BYTES."""
        return sum(len(part) for part in self._parts)

    def feed(self, chunk: bytes) -> bytes:
        self._size += len(chunk)
        if self._size <= MAX_JSON_BODY_BYTES:
            self._parts.append(chunk)
        elif self._parts:
            self._parts = []
        return chunk

    def reading(self) -> Reading:
        if self._size > MAX_JSON_BODY_BYTES:
            return Reading(model=self._plan.model)
        body = b"".join(self._parts)
        data = self._wire.skim(body) if len(body) > SKIM_JSON_BYTES else None
        if data is None:
            data = parse_json_object(body)
        if data is None:
            return Reading(model=self._plan.model)
        try:  # as `safe_read`, without a closure per response
            return self._wire.read_body(data, self._plan, self._path)
        except Exception:
            return Reading(model=self._plan.model)


class SseTap(BodyTap):
    """Feeds an SSE stream to a StreamReader. Forwards chunks untouched unless it must edit."""

    def __init__(self, reader: StreamReader, editing: bool) -> None:
        self._reader = reader
        # An event too large to hold is read through `oversized`, unless the tap edits the
        # stream: then it must hold every block it may drop, and gives up instead.
        self._parser: SseParser | None = SseParser(None if editing else reader.oversized)
        self._editing = editing

    def feed(self, chunk: bytes) -> bytes:
        if self._parser is None:
            return chunk
        try:
            blocks = self._parser.feed(chunk)
        except SseOverflow:
            return self._give_up(chunk)
        wants = self._reader.wants
        kept = []
        for block in blocks:
            if not (block.skimmed or wants(block.raw)) or self._read(block):
                kept.append(block.raw)
        if not self._editing:
            return chunk
        return b"".join(kept)

    def flush(self) -> bytes:
        if self._parser is None or not self._editing:
            return b""
        return self._parser.pending()

    def reading(self) -> Reading:
        try:
            return self._reader.reading()
        except Exception:  # an adapter bug must never break the request path
            return Reading()

    def _read(self, block: SseBlock) -> bool:
        try:
            return self._reader.on_block(block)
        except Exception:
            return True

    def _give_up(self, chunk: bytes) -> bytes:
        """Stop reading; forward whatever was held back so no byte is lost."""
        held = self._parser.pending() if self._parser and self._editing else b""
        self._parser = None
        return held if self._editing else chunk


@dataclass(frozen=True, slots=True)
class SocketNews:
    """What one server message told a SocketTap: how many billed units (responses, turns)
    started, and the readings of those that finished, oldest first."""

    started: int = 0
    finished: tuple[Reading, ...] = ()


NO_NEWS = SocketNews()


class SocketTap(ABC):
    """Reads usage from the messages of one WebSocket session, both ways, without altering or
    holding them. A session bills per unit (a Realtime response, a Live turn): each finished
    unit is one Reading; a unit still open when the session ends is counted by `open`."""

    @abstractmethod
    def from_client(self, message: str | bytes) -> None:
        """See one client message (the model may be named there: Gemini's `setup`)."""

    @abstractmethod
    def from_server(self, message: str | bytes) -> SocketNews:
        """See one server message."""

    def drain(self) -> tuple[Reading, ...]:
        """At the session's end: units complete but held for usage that may still come."""
        return ()

    @property
    @abstractmethod
    def model(self) -> str | None:
        """The session's model as known so far."""

    @property
    @abstractmethod
    def open(self) -> int:
        """Units started and not finished."""


def json_message(message: str | bytes) -> dict[str, object] | None:
    """A WebSocket message as a JSON object, or None."""
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def parse_json_object(body: bytes | None) -> object:
    """JSON from untrusted bytes, or None. Leading blank lines (DeepSeek keep-alives) are fine."""
    if not body:
        return None
    try:
        if len(body) > LARGE_JSON_BYTES:
            return json.loads(body, object_pairs_hook=_dict_between_switches)
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def is_json(content_type: str) -> bool:
    """A JSON media type (or none given: some servers send JSON unlabelled)."""
    media = content_type.partition(";")[0].strip().lower()
    return media in ("", "application/json", "text/json") or media.endswith("+json")


def _dict_between_switches(pairs: list[tuple[str, object]]) -> dict[str, object]:
    return dict(pairs)  # a Python frame: a point where another thread may take the GIL


def safe_read(read, plan: RequestPlan) -> Reading:
    """Run an adapter's reader; a malformed shape yields an unknown usage, never an exception."""
    try:
        return read()
    except Exception:
        return Reading(model=plan.model)


def token_count_reading(plan: RequestPlan, counted: bool) -> Reading:
    """A token-counting endpoint (Anthropic `count_tokens`, Gemini `:countTokens`) is free:
    zero usage at a reported cost of zero when it counted, no usage when it did not."""
    if not counted:
        return Reading(model=plan.model)
    return Reading(model=plan.model, usage=Usage(), reported_cost_usd=Decimal(0))


def dig(data: object, *keys: str) -> object:
    """data[k1][k2]... through dicts, or None where any step is missing or not a dict."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
