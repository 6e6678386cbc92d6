"""The caller's credential: where it is, and what goes upstream in its place.

SDKs send keys in different places: `Authorization: Bearer` (OpenAI-style, current Anthropic),
`x-api-key` (older Anthropic), `x-goog-api-key` or `?key=` (Gemini), `api-key` (Azure).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from multidict import CIMultiDict, MultiDict
from yarl import URL

from meterfox_cli.records import PASSTHROUGH_KEY, UsageRecord

if TYPE_CHECKING:
    from meterfox_cli.providers.base import RequestPlan

CREDENTIAL_HEADERS: tuple[str, ...] = (
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
)
QUERY_KEY = "key"
PROXY_KEY_PREFIX = "mf-"
# A proxy key anywhere in a value: `mf-` and a key's worth of URL-safe characters, after a
# non-key character (`Bearer mf-…`, `api-key.mf-…`, `token=mf-…`). Minted keys have 43.
_PROXY_KEY_IN_TEXT = re.compile(r"(?<![A-Za-z0-9_-])mf-[A-Za-z0-9_-]{16,}")


@dataclass(frozen=True, slots=True)
class Credential:
    """Where the secret was found: a header name (with its scheme prefix) or the `key` query."""

    location: str  # a header name, or "?key"
    prefix: str  # "Bearer " for Authorization headers, else ""
    secret: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a request: forward it as `key_name` (with `replacement` in place of the
    caller's secret, if any), or refuse it with `status` and `message`."""

    key_name: str
    replacement: str | None = None
    status: int | None = None
    message: str | None = None
    error_kind: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def refused(self) -> bool:
        return self.status is not None


PASSTHROUGH = Decision(PASSTHROUGH_KEY)
# `decide` does not know the key yet: the caller must `await look_up(...)` for the answer.
# A refusal in itself, so that a caller that forgot to look up refuses rather than forwards.
LOOK_UP = Decision(
    "(unknown-proxy-key)",
    status=401,
    message="MeterFox: unknown proxy key",
    error_kind="invalid_proxy_key",
)


def _nothing_to_settle(record: UsageRecord) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Admission:
    """A request let through (`refusal` None) or not. `settle` runs exactly once, with the
    request's record, when it ends however it ends: what its key reserved is settled then."""

    refusal: Decision | None = None
    settle: Callable[[UsageRecord], None] = _nothing_to_settle
    # Not decided yet (a budgeted key's reservation in the ledger): await it for the answer.
    pending: Awaitable[Admission] | None = None


ADMITTED = Admission()


def is_proxy_key(secret: str) -> bool:
    return secret.startswith(PROXY_KEY_PREFIX)


def carries_proxy_key(value: str) -> bool:
    """Whether a proxy key appears anywhere in `value`, whatever wraps it."""
    return PROXY_KEY_PREFIX in value and _PROXY_KEY_IN_TEXT.search(value) is not None


def find_credentials(headers: Mapping[str, str], query: Mapping[str, str]) -> list[Credential]:
    """Every credential the caller sent (every value of a repeated header), in
    CREDENTIAL_HEADERS order, then `?key=`."""
    found = []
    for name in CREDENTIAL_HEADERS:
        if name in headers:  # one lookup for each absent name, no list
            found += [parse_credential(name, value) for value in _all(headers, name) if value]
    if QUERY_KEY in query:
        found += [
            Credential("?" + QUERY_KEY, "", value) for value in _all(query, QUERY_KEY) if value
        ]
    return found


def parse_credential(header: str, value: str) -> Credential:
    """The secret in one header value: after the scheme for `Authorization`."""
    prefix = ""
    if header == "authorization":
        scheme, _, rest = value.partition(" ")
        if rest:
            prefix, value = f"{scheme} ", rest.strip()
    return Credential(header, prefix, value)


def _all(mapping: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(mapping, "getall", None)
    if getall is not None:
        return list(getall(name, ()))
    value = mapping.get(name)
    return [value] if value else []


def find_credential(headers: Mapping[str, str], query: Mapping[str, str]) -> Credential | None:
    """The caller's credential: a MeterFox proxy key wherever it is, else the first found."""
    found = find_credentials(headers, query)
    for credential in found:
        if is_proxy_key(credential.secret):
            return credential
    return found[0] if found else None


def apply_credential(
    headers: CIMultiDict[str], url: URL, credential: Credential | None, replacement: str | None
) -> URL:
    """Make the outgoing request carry only what the provider may see; returns the URL to call.

    With a provider key for the caller's proxy key, the provider key goes wherever the caller
    put that proxy key, in the same form, and every other credential is dropped (the caller's
    own key beside it too). Then, on every request, any header or query value that still
    carries a proxy key is dropped, whatever its name, case or wrapper.
    """
    swap = credential is not None and replacement is not None and is_proxy_key(credential.secret)
    sent = credential if swap else None
    if sent is not None or any(carries_proxy_key(value) for value in headers.values()):
        header_items = list(headers.items())
        kept_headers = [
            (name, out)
            for name, value in header_items
            if (out := _outgoing(value, _header_credential(name, value), sent, replacement))
            is not None
        ]
        if kept_headers != header_items:
            headers.clear()
            headers.extend(kept_headers)
    if not url.raw_query_string:  # the common case: nothing in the query to look at
        return url
    query_items = list(url.query.items())
    kept_query = [
        (name, out)
        for name, value in query_items
        if (out := _outgoing(value, _query_credential(name, value), sent, replacement)) is not None
    ]
    return url if kept_query == query_items else url.with_query(MultiDict(kept_query))


def _outgoing(
    value: str, found: Credential | None, swapped: Credential | None, replacement: str | None
) -> str | None:
    """What goes upstream for one header or query value, or None to drop it: with a proxy key
    `swapped` for `replacement`, each credential becomes the replacement (where it is that
    proxy key) or goes; anything else goes if it carries a proxy key."""
    if swapped is not None and found is not None:
        return found.prefix + replacement if found.secret == swapped.secret else None
    return None if carries_proxy_key(value) else value


def _header_credential(name: str, value: str) -> Credential | None:
    lower = name.lower()
    return parse_credential(lower, value) if lower in CREDENTIAL_HEADERS else None


def _query_credential(name: str, value: str) -> Credential | None:
    return Credential("?" + QUERY_KEY, "", value) if name == QUERY_KEY else None


class Authorizer:
    """Decides per request. The base class passes every caller's own credential through.

    `decide` runs on the event loop for every request: it must not block (no keyring, no
    SQLite). `start` and `close` run once, off the loop, around the app's life.
    """

    def start(self) -> None:
        """Load what `decide` needs; called off the event loop before the first request."""

    def close(self) -> None:
        """Stop any background work; called off the event loop at shutdown."""

    def decide(self, provider_slug: str, credential: Credential | None) -> Decision:
        """The decision from what is in memory, or LOOK_UP when it needs `look_up`."""
        return PASSTHROUGH

    async def look_up(self, provider_slug: str, credential: Credential | None) -> Decision:
        """The decision for a credential `decide` did not know (never blocks the loop)."""
        return self.decide(provider_slug, credential)

    def admit(
        self,
        decision: Decision,
        provider_slug: str,
        plan: RequestPlan,
        body: bytes | None,
        request_id: str | None = None,
    ) -> Admission:
        """Once the body is read: let the request through, reserving what it may cost, or not
        (`request_id`: the id its record will have, where it is known)."""
        return ADMITTED

    @property
    def keys_unavailable(self) -> str | None:
        """Why every proxy key is refused right now (health says `degraded`), or None."""
        return None

    def stats(self) -> dict[str, object]:
        """Counters for the health endpoint."""
        return {}
