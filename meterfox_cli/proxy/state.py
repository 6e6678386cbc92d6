"""Typed application state shared by the proxy's handlers."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from meterfox_cli.config import Timeouts
from meterfox_cli.providers.registry import Registry
from meterfox_cli.proxy.auth import Authorizer
from meterfox_cli.proxy.upstream import UpstreamClient

if TYPE_CHECKING:  # the writer's own module loads in its process, not the proxy's
    from meterfox_cli.store.writer import RecordWriter


@dataclass
class ProxyState:
    registry: Registry
    writer: RecordWriter
    authorizer: Authorizer
    timeouts: Timeouts
    max_body_bytes: int
    session: aiohttp.ClientSession = field(init=False)  # the WebSocket path's (websocket.py)
    upstream: UpstreamClient = field(init=False)  # every other upstream call's (upstream.py)
    started_at: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)  # for people: since when it runs
    refused: Counter[str] = field(default_factory=Counter)  # refusals by reason (error kind)


STATE = web.AppKey("meterfox_state", ProxyState)
