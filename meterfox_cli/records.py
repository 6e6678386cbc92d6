"""One UsageRecord per proxied request: the metadata MeterFox keeps (never prompts or keys)."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from enum import StrEnum

from meterfox_cli.frozen import quick_init
from meterfox_cli.usage import Reading


class Outcome(StrEnum):
    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"
    CLIENT_CLOSED = "client_closed"
    PROXY_ERROR = "proxy_error"


PASSTHROUGH_KEY = "passthrough"


@quick_init
@dataclass(frozen=True, slots=True)
class UsageRecord:
    id: str
    started_at: float  # unix seconds
    provider: str
    model: str | None
    endpoint: str  # the path after the provider slug, without the query string
    method: str
    status: int
    streamed: bool
    outcome: Outcome
    key_name: str
    ttfb_ms: float | None
    latency_ms: float
    reading: Reading
    tags: tuple[tuple[str, str], ...] = ()


def _os_seed() -> int:
    """128 bits from the OS (what `secrets` reads, without importing it: it pulls in hashlib
    and OpenSSL, 4 MB of the writer's process, which never makes an id)."""
    return int.from_bytes(os.urandom(16), "big")


_random = random.Random(_os_seed())


def _reseed() -> None:
    _random.seed(_os_seed())


# A forked process (`serve --workers N`) must not repeat its parent's ids: the store keeps the
# first record with an id and skips the rest.
os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    """Time-ordered and unique: 11 hex digits of milliseconds, then 40 random bits (from a
    generator seeded once from the OS, so no system call per request)."""
    return f"{int(time.time() * 1000):011x}{_random.getrandbits(40):010x}"
