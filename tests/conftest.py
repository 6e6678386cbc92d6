"""Shared fixtures: a temp METERFOX_HOME, a migrated database connection, a fake upstream, and
a proxy wired to it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from meterfox_cli.config import ProviderConfig, Timeouts
from meterfox_cli.paths import resolve_paths
from meterfox_cli.providers.registry import Registry, build_registry
from meterfox_cli.proxy.app import make_app
from meterfox_cli.proxy.auth import Authorizer
from meterfox_cli.store.db import connect
from meterfox_cli.store.writer import RecordWriter
from tests.fakes.upstream import FakeUpstream

# The suite's own PostgreSQL server: `pg_server`, `pg_url` (tests/pg.py).
pytest_plugins = ["tests.pg"]


@pytest.fixture(autouse=True)
def meterfox_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own METERFOX_HOME: no test touches the user's real state.

    keyring's state moves too (its file backends and config live under the XDG dirs), and no
    keyring backend or passphrase leaks in from the environment running the tests.
    """
    home = tmp_path / "mfhome"
    monkeypatch.setenv("METERFOX_HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.delenv("METERFOX_PASSPHRASE", raising=False)
    return home


@pytest.fixture
def conn(meterfox_home: Path) -> Iterator[sqlite3.Connection]:
    """A migrated connection to this test's own database (where `meterfox serve` would write),
    closed after the test."""
    paths = resolve_paths()
    paths.ensure()
    connection = connect(paths.database)
    yield connection
    connection.close()


@dataclass
class Proxy:
    url: str
    upstream: FakeUpstream
    upstream_url: str
    writer: RecordWriter
    db_path: Path
    registry: Registry
    clients: list = field(default_factory=list)

    def track(self, sdk_client):
        """Remember an SDK client, so the fixture closes it before the event loop ends."""
        self.clients.append(sdk_client)
        return sdk_client

    async def close_clients(self) -> None:
        for sdk_client in self.clients:
            close = getattr(sdk_client, "close", None) or getattr(sdk_client, "aclose", None)
            if sdk_client.__class__.__name__ == "Mistral":
                await sdk_client.__aexit__(None, None, None)
                continue
            if close is not None:
                result = close()
                if hasattr(result, "__await__"):
                    await result

    def base(self, slug: str) -> str:
        return f"{self.url}/{slug}"

    async def records(self, count: int, timeout: float = 5.0) -> list[sqlite3.Row]:
        """Wait until `count` records are committed, then return all of them, oldest first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.writer.written < count and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return read_records(self.db_path)

    async def record(self) -> sqlite3.Row:
        rows = await self.records(1)
        assert len(rows) == 1, f"expected one record, found {len(rows)}"
        return rows[0]


def read_records(db_path: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM requests ORDER BY ts, id").fetchall()
    finally:
        conn.close()


def read_tags(db_path: Path, request_id: str) -> dict[str, str]:
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(
            "SELECT name, value FROM request_tags WHERE request_id = ?", (request_id,)
        )
        return dict(rows.fetchall())
    finally:
        conn.close()


@pytest.fixture
async def upstream_server() -> AsyncIterator[tuple[FakeUpstream, TestServer]]:
    fake = FakeUpstream()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, server
    await server.close()


async def start_proxy(
    upstream: FakeUpstream | object,
    upstream_server: TestServer | str,
    *,
    authorizer: Authorizer | None = None,
    timeouts: Timeouts | None = None,
    max_body_bytes: int = 32 * 1024 * 1024,
    extra_providers: tuple[ProviderConfig, ...] = (),
    writer: RecordWriter | None = None,
    mounts: tuple = (),
    ssl: object = None,
    health_sections: dict | None = None,
) -> tuple[Proxy, TestServer]:
    """A proxy whose every provider points at the fake upstream (path kept after the origin).

    `upstream_server` is an aiohttp TestServer, or the origin of any other fake (a raw socket
    one, tests/fakes/raw.py); `writer` replaces the default RecordWriter on the test database;
    `mounts` and `health_sections` go to make_app (the dashboard's, in tests/web/).
    `ssl` (an ssl.SSLContext) serves the proxy over TLS, for SDKs that insist on it.
    """
    if isinstance(upstream_server, str):
        upstream_url = upstream_server.rstrip("/")
    else:
        upstream_url = str(upstream_server.make_url("")).rstrip("/")
    base = build_registry()
    overrides = {p.slug: _moved(p.base_url, upstream_url) for p in base}
    registry = build_registry(extra_providers, overrides)
    paths = resolve_paths()
    paths.ensure()
    writer = writer or RecordWriter(paths.database)
    app = make_app(
        registry=registry,
        writer=writer,
        authorizer=authorizer,
        timeouts=timeouts,
        max_body_bytes=max_body_bytes,
        mounts=mounts,
        health_sections=health_sections,
    )
    server = TestServer(app, host="127.0.0.1", handler_cancellation=True)
    # No access log, as `meterfox serve` runs it: a `?key=` would otherwise be logged.
    await server.start_server(access_log=None, ssl=ssl)
    proxy = Proxy(
        url=str(server.make_url("")).rstrip("/"),
        upstream=upstream,
        upstream_url=upstream_url,
        writer=writer,
        db_path=writer.db_path,
        registry=registry,
    )
    return proxy, server


def _moved(base_url: str, origin: str) -> str:
    """The provider's base URL with its origin replaced, keeping its path (`/openai` for Groq)."""
    from urllib.parse import urlsplit

    return origin + urlsplit(base_url).path


@pytest.fixture
async def proxy(upstream_server) -> AsyncIterator[Proxy]:
    fake, server = upstream_server
    proxy, proxy_server = await start_proxy(fake, server)
    yield proxy
    await proxy.close_clients()
    await proxy_server.close()


# --- keys: real keyring backends, in the test's own XDG dirs --------------------------------

PLAINTEXT_KEYRING = "keyrings.alt.file.PlaintextKeyring"
NULL_KEYRING = "keyring.backends.null.Keyring"
TEST_PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def plaintext_keyring(monkeypatch: pytest.MonkeyPatch) -> str:
    """keyrings.alt's file backend (a real keyring backend), in this test's XDG_DATA_HOME."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", PLAINTEXT_KEYRING)
    return PLAINTEXT_KEYRING


@pytest.fixture
def encrypted_file_store(monkeypatch: pytest.MonkeyPatch) -> str:
    """No keyring (keyring's null backend, as on a headless box told so): the encrypted file."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NULL_KEYRING)
    monkeypatch.setenv("METERFOX_PASSPHRASE", TEST_PASSPHRASE)
    return TEST_PASSPHRASE


_OPENING: list[list[str]] = []  # the lists `opened_during` blocks fill, innermost last
_HOOKED: list[bool] = []  # the audit hook, once added (it cannot be removed)


def _note_open(event: str, args: tuple) -> None:
    if event == "sqlite3.connect" and _OPENING:
        _OPENING[-1].append(str(args[0]))


@contextlib.contextmanager
def opened_during() -> Iterator[list[str]]:
    """The database URIs sqlite3 opens in this process meanwhile, from its `sqlite3.connect`
    audit event (the hook is added once and records only inside these blocks)."""
    if not _HOOKED:
        sys.addaudithook(_note_open)
        _HOOKED.append(True)
    opened: list[str] = []
    _OPENING.append(opened)
    try:
        yield opened
    finally:
        _OPENING.remove(opened)
