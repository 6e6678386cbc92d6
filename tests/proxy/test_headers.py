"""Each header name in each set, one test apiece: a missing comma cannot merge two names."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from meterfox_cli.proxy import headers as h

HOP_BY_HOP = [
    "Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
]


@pytest.mark.parametrize("name", HOP_BY_HOP)
def test_hop_by_hop_header_is_dropped_both_ways(name):
    incoming = CIMultiDict({name: "x", "Authorization": "Bearer k", "Content-Type": "a/b"})
    upstream = h.upstream_request_headers(incoming)
    assert name not in upstream and upstream["Authorization"] == "Bearer k"
    back = h.client_response_headers(CIMultiDict({name: "x", "Content-Type": "a/b"}))
    assert name not in back and back["Content-Type"] == "a/b"


def test_sets_hold_exactly_the_documented_names():
    assert {n.lower() for n in HOP_BY_HOP} == h.HOP_BY_HOP
    assert frozenset({"host", "content-length"}) == h.RECOMPUTED
    assert frozenset({"x-litellm-tags"}) == h.PRIVATE


@pytest.mark.parametrize("name", ["Host", "Content-Length"])
def test_recomputed_request_headers_are_dropped(name):
    assert name not in h.upstream_request_headers(CIMultiDict({name: "1"}))


@pytest.mark.parametrize(
    "name",
    [
        "X-MeterFox-Tag-Feature",
        "X-MeterFox-Anything",
        "Helicone-Property-Customer",
        "Helicone-Auth",
        "x-litellm-tags",
    ],
)
def test_private_headers_never_go_upstream(name):
    assert name not in h.upstream_request_headers(CIMultiDict({name: "v", "Accept": "*/*"}))


def test_headers_named_in_connection_are_dropped():
    incoming = CIMultiDict({"Connection": "close, X-Secret-Hop", "X-Secret-Hop": "1", "A": "b"})
    assert list(h.upstream_request_headers(incoming).keys()) == ["A"]


def test_tags_from_all_gateway_conventions():
    incoming = CIMultiDict(
        {
            "X-MeterFox-Tag-Feature": " search ",
            "Helicone-Property-Customer": "acme",
            "x-litellm-tags": "team:core, env=prod, nightly",
        }
    )
    assert dict(h.tags_from_headers(incoming)) == {
        "feature": "search",
        "customer": "acme",
        "team": "core",
        "env": "prod",
        "litellm": "nightly",
    }
