"""The caller's credential: where it is, and what goes upstream in its place.

SDKs send keys in different places: `Authorization: Bearer` (OpenAI-style, current Anthropic),
`x-api-key` (older Anthropic), `x-goog-api-key` or `?key=` (Gemini), `api-key` (Azure).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

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


ADMITTED = Admission()


def is_proxy_key(secret: str) -> bool:
    return secret.startswith(PROXY_KEY_PREFIX)


def find_credentials(headers: Mapping[str, str], query: Mapping[str, str]) -> list[Credential]:
    """Every credential the caller sent (every value of a repeated header), in
    CREDENTIAL_HEADERS order, then `?key=`."""
    found = []
    for name in CREDENTIAL_HEADERS:
        for value in _all(headers, name):
            if value:
                found.append(parse_credential(name, value))
    for value in _all(query, QUERY_KEY):
        if value:
            found.append(Credential("?" + QUERY_KEY, "", value))
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
        self, decision: Decision, provider_slug: str, plan: RequestPlan, body: bytes | None
    ) -> Admission:
        """Once the body is read: let the request through, reserving what it may cost, or not."""
        return ADMITTED

    def stats(self) -> dict[str, object]:
        """Counters for the health endpoint."""
        return {}
