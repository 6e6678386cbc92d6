"""The caller's credential: where it is, and what goes upstream in its place.

SDKs send keys in different places: `Authorization: Bearer` (OpenAI-style, current Anthropic),
`x-api-key` (older Anthropic), `x-goog-api-key` or `?key=` (Gemini), `api-key` (Azure).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meterfox_cli.records import PASSTHROUGH_KEY

CREDENTIAL_HEADERS: tuple[str, ...] = (
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
)
QUERY_KEY = "key"


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


def find_credential(headers: Mapping[str, str], query: Mapping[str, str]) -> Credential | None:
    for name in CREDENTIAL_HEADERS:
        value = headers.get(name)
        if value:
            prefix = ""
            if name == "authorization":
                scheme, _, rest = value.partition(" ")
                if rest:
                    prefix, value = f"{scheme} ", rest.strip()
            return Credential(name, prefix, value)
    if query.get(QUERY_KEY):
        return Credential("?" + QUERY_KEY, "", query[QUERY_KEY])
    return None


class Authorizer:
    """Decides per request. The base class passes every caller's own credential through."""

    def decide(self, provider_slug: str, credential: Credential | None) -> Decision:
        return PASSTHROUGH
