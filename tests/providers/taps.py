"""Helpers to drive an adapter's body tap the way the proxy does, with any chunk split."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

from hypothesis import strategies as st

from meterfox_cli.providers.base import WireFormat
from meterfox_cli.usage import Reading


def through_tap(
    wire: WireFormat,
    path: str,
    request: bytes,
    content_type: str,
    pieces: Iterable[bytes],
) -> tuple[bytes, Reading]:
    """Feed response pieces through the tap the proxy would use; return what the client gets
    and what would be recorded."""
    plan = wire.plan(path, {}, request)
    tap = wire.body_tap(plan, path, content_type, method="POST")
    out = b"".join(tap.feed(piece) for piece in pieces) + tap.flush()
    return out, tap.reading()


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    edges = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in pairwise(edges) if b > a]


def cut_points(data: bytes):
    """Any set of byte offsets inside `data` (hypothesis strategy)."""
    return st.lists(st.integers(min_value=1, max_value=max(len(data) - 1, 1)), max_size=40)


def assert_same_at_every_single_cut(
    wire: WireFormat, path: str, request: bytes, content_type: str, data: bytes
) -> tuple[bytes, Reading]:
    """Cutting the body in two at each byte boundary changes neither the bytes nor the usage."""
    whole = through_tap(wire, path, request, content_type, [data])
    assert whole[0] == data
    for cut in range(1, len(data)):
        assert through_tap(wire, path, request, content_type, split(data, [cut])) == whole, cut
    return whole
