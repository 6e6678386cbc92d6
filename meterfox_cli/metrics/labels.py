"""Bounded label values: the first `cap` distinct values of a label pass, later new ones count
under `other`, so a client that invents model names cannot grow the metrics without end."""

from __future__ import annotations

import re

OTHER = "other"
UNKNOWN_MODEL = "unknown"  # a request whose model nothing named (an error before the body)


class Capped:
    """The first `cap` distinct values pass as they are; any value first seen after that is
    `other`. Not locked: only the writer's thread calls it."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._seen: set[str] = set()
        self.overflowed = 0  # values mapped to `other` (a sign the cap is too low)

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self._cap:
            self._seen.add(value)
            return value
        self.overflowed += 1
        return OTHER


def tag_label(tag: str) -> str:
    """The Prometheus label a tag becomes: `tag_` and its name, other characters as `_`."""
    return "tag_" + re.sub(r"[^a-zA-Z0-9_]", "_", tag)
