"""Which headers cross the proxy, in each direction.

Each set is a frozenset with one name per line, so a missing comma cannot silently merge two
names (a real relay bug); each name has a test in tests/proxy/test_headers.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from multidict import CIMultiDict

# RFC 9110 §7.6.1 connection-specific headers, plus the pre-standard ones still seen in the wild.
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Recomputed by the proxy's own HTTP client or server for the bytes it actually sends.
RECOMPUTED: frozenset[str] = frozenset(
    {
        "host",
        "content-length",
    }
)

# Request headers that are ours (or another gateway's) and mean nothing to a provider.
PRIVATE_PREFIXES: tuple[str, ...] = (
    "x-meterfox-",
    "helicone-",
)
PRIVATE: frozenset[str] = frozenset(
    {
        "x-litellm-tags",
    }
)

TAG_PREFIXES: tuple[str, ...] = (
    "x-meterfox-tag-",
    "helicone-property-",
)
LITELLM_TAGS = "x-litellm-tags"
# What a header name must start with to carry a tag: one test per header on the hot path.
_TAG_STARTS: tuple[str, ...] = (*TAG_PREFIXES, LITELLM_TAGS)

REQUEST_ID_HEADER = "X-MeterFox-Request-Id"


_NOT_UPSTREAM: frozenset[str] = HOP_BY_HOP | RECOMPUTED | PRIVATE


def _connection_listed(headers: Mapping[str, str]) -> frozenset[str]:
    """Names a sender lists in `Connection` are hop-by-hop for this one connection."""
    listed = headers.get("connection", "")
    return frozenset(name.strip().lower() for name in listed.split(",") if name.strip())


def _dropped(
    always: frozenset[str], headers: Mapping[str, str], drop: Iterable[str]
) -> frozenset[str]:
    """`always`, plus the names `headers` list in `Connection` and those in `drop`: the set is
    built only when there is something to add (most requests have neither)."""
    dropped = always
    if "connection" in headers:
        dropped = dropped | _connection_listed(headers)
    if drop:
        dropped = dropped | {name.lower() for name in drop}
    return dropped


def upstream_request_headers(
    incoming: Mapping[str, str], drop: Iterable[str] = ()
) -> CIMultiDict[str]:
    """The caller's headers as they go upstream: minus hop-by-hop, recomputed and private ones."""
    dropped = _dropped(_NOT_UPSTREAM, incoming, drop)
    return CIMultiDict(
        [
            (name, value)
            for name, value in incoming.items()
            if (lower := name.lower()) not in dropped and not lower.startswith(PRIVATE_PREFIXES)
        ]
    )


def client_response_headers(
    upstream: Mapping[str, str], drop: Iterable[str] = ()
) -> CIMultiDict[str]:
    """The upstream's response headers as they go back to the caller."""
    dropped = _dropped(HOP_BY_HOP, upstream, drop)
    return CIMultiDict(
        [(name, value) for name, value in upstream.items() if name.lower() not in dropped]
    )


def tags_from_headers(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """User tags: `X-MeterFox-Tag-<Name>`, `Helicone-Property-<Name>`, `x-litellm-tags: a,b`.

    Tag names are lower-cased (headers are case-insensitive); a LiteLLM tag `k:v` or `k=v`
    becomes tag `k` = `v`, a bare one becomes tag `litellm` = its text.
    """
    tags: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if not lower.startswith(_TAG_STARTS):
            continue
        for prefix in TAG_PREFIXES:
            if lower.startswith(prefix) and len(lower) > len(prefix):
                tags[lower[len(prefix) :]] = value.strip()
        if lower == LITELLM_TAGS:
            for item in value.split(","):
                item = item.strip()
                if not item:
                    continue
                for sep in (":", "="):
                    if sep in item:
                        key, _, val = item.partition(sep)
                        tags[key.strip().lower()] = val.strip()
                        break
                else:
                    tags["litellm"] = item
    return tuple(sorted(tags.items()))


def merge_tags(*groups: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Tags from several sources; a later source wins on the same name."""
    merged: dict[str, str] = {}
    for group in groups:
        merged.update(group)
    return tuple(sorted(merged.items()))
