"""What `serve` leaves until after it listens (issue 17), and what it must not: aiohttp's TLS
contexts read the system's CA store in a thread once the port is bound (proxy/trust.py), yet
a request to an HTTPS upstream the moment health says ok is verified against that store; the
dashboard's code is imported then too (web/mount.py), yet a dashboard request that early is
answered. And what it does beside its start-up: the encrypted key file is opened (scrypt) in a
thread while serve imports and builds the app, yet a proxy key's first request as health says
ok goes out with the provider key, and a file that does not open is said as before."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from meterfox_cli.cli.serve_cmd import _stored_keys
from meterfox_cli.keys.provider_keys import stored_keys
from meterfox_cli.store.db import applied_migrations, connect
from meterfox_cli.store.migrations import MIGRATIONS
from tests.cli.conftest import launch_serve, run_meterfox
from tests.conftest import opened_during, read_records
from tests.fakes.tls import loopback_contexts
from tests.fakes.upstream import FakeUpstream, Reply

# A CA file this many times the system's: reading it takes seconds, so the first requests come
# while the thread is still at it
SLOW_STORE_COPIES = 25
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
PROVIDER_KEY = "sk-proj-TESTONLY-startup-3333"


async def https_upstream(directory: Path) -> TestServer:
    """A fake OpenAI-style upstream on HTTPS, its certificate (self-signed) in `directory`."""
    directory.mkdir()
    server_tls, _ = loopback_contexts(directory)
    fake = FakeUpstream()
    fake.reply = Reply(json_body={"id": "c1", "model": "gpt-4o", "usage": USAGE})
    server = TestServer(fake.app(), host="127.0.0.1", scheme="https")
    await server.start_server(ssl=server_tls)
    return server


def slow_store(own_ca: Path) -> Path:
    """A CA file (for SSL_CERT_FILE) that vouches for `own_ca` and is slow to read: the
    system's CAs SLOW_STORE_COPIES times over (or `own_ca` itself, many times)."""
    system = Path(ssl.get_default_verify_paths().cafile or "/nonexistent")
    filler = system.read_text() if system.is_file() else own_ca.read_text() * 100
    store = own_ca.with_name("slow-store.pem")
    store.write_text(filler * SLOW_STORE_COPIES + own_ca.read_text())
    return store


@pytest.fixture
async def upstreams(tmp_path) -> AsyncIterator[tuple[TestServer, TestServer, Path]]:
    """Two HTTPS upstreams: the first's certificate is among the CAs `serve` will trust (its
    SSL_CERT_FILE, slow to read), the second's is trusted by nobody."""
    trusted = await https_upstream(tmp_path / "trusted")
    stranger = await https_upstream(tmp_path / "stranger")
    yield trusted, stranger, slow_store(tmp_path / "trusted" / "loopback.pem")
    await trusted.close()
    await stranger.close()


async def test_an_https_upstream_is_verified_from_the_first_request(upstreams, meterfox_home):
    trusted, stranger, ca_file = upstreams
    async with launch_serve(
        upstreams={"openai": trusted, "mistral": stranger}, env={"SSL_CERT_FILE": str(ca_file)}
    ) as served:
        async with aiohttp.ClientSession() as session:
            # at once, both, while the thread is still reading the store
            first, refused = await asyncio.gather(
                session.post(f"{served.url}/openai/v1/chat/completions", json=CHAT),
                session.post(f"{served.url}/mistral/v1/chat/completions", json=CHAT),
            )
            assert first.status == 200, await first.text()
            assert (await first.json())["usage"] == USAGE
            assert refused.status == 502  # an upstream the store does not vouch for: refused
            assert "certificate" in (await refused.text()).lower()
    [record] = [r for r in read_records(meterfox_home / "meterfox.db") if r["status"] == 200]
    assert (record["input_tokens"], record["output_tokens"]) == (7, 3)


async def test_a_dashboard_request_as_health_says_ok_is_answered(meterfox_home):
    """web/routes.py is imported in a thread 0.2 s after the app starts; a request before that
    (here: the first thing after healthy) waits for it and gets its answer."""
    async with launch_serve() as served, aiohttp.ClientSession() as session:
        async with session.get(f"{served.url}/_meterfox/api/session") as response:
            assert response.status == 200
            assert len((await response.json())["csrf_token"]) > 20
        async with session.get(f"{served.url}/_meterfox/") as response:
            assert response.status == 200
            assert "MeterFox" in await response.text()


async def proxy_key_in_the_key_file() -> str:
    """The openai key in the encrypted file (the test's passphrase), and a proxy key for it."""
    stored = await run_meterfox("keys", "set", "openai", input=PROVIDER_KEY)
    assert stored.returncode == 0 and "encrypted file" in stored.stdout, stored.stderr
    created = await run_meterfox("keys", "create", "app", "--provider", "openai")
    assert created.returncode == 0, created.stderr
    return created.stdout.split()[0]


@pytest.mark.usefixtures("serve_workers", "encrypted_file_store")
async def test_a_proxy_key_goes_out_with_the_file_key_as_health_says_ok(upstream_server):
    fake, server = upstream_server
    fake.reply = Reply(json_body={"id": "c1", "model": "gpt-4o", "usage": USAGE})
    secret = await proxy_key_in_the_key_file()
    async with launch_serve(upstreams={"openai": server}) as served:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{served.url}/openai/v1/chat/completions",
                json=CHAT,
                headers={"Authorization": f"Bearer {secret}"},
            ) as response:
                assert response.status == 200, await response.text()
    assert [r.headers["Authorization"] for r in fake.received] == [f"Bearer {PROVIDER_KEY}"]


@pytest.mark.usefixtures("encrypted_file_store")
@pytest.mark.parametrize(
    ("passphrase", "says"),
    [
        ("not the passphrase", "the passphrase does not open"),
        (None, "the provider keys are in an encrypted file and no passphrase was given"),
    ],
    ids=["wrong", "none"],
)
async def test_a_key_file_that_does_not_open_is_said_and_serve_goes_on(
    upstream_server, passphrase, says
):
    fake, server = upstream_server
    fake.reply = Reply(json_body={"id": "c1", "model": "gpt-4o", "usage": USAGE})
    secret = await proxy_key_in_the_key_file()
    env = {"METERFOX_PASSPHRASE": passphrase}
    async with launch_serve(upstreams={"openai": server}, env=env) as served:
        url = f"{served.url}/openai/v1/chat/completions"
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {secret}"}
            async with session.post(url, json=CHAT, headers=headers) as refused:
                assert refused.status == 401
                assert "cannot read the openai key" in await refused.text()
            headers = {"Authorization": "Bearer sk-callers-own"}
            async with session.post(url, json=CHAT, headers=headers) as own:
                assert own.status == 200, await own.text()
    assert f"meterfox: provider keys unavailable: {says}" in served.output
    assert [r.headers["Authorization"] for r in fake.received] == ["Bearer sk-callers-own"]


def test_the_provider_key_index_is_read_without_a_write_or_made_when_not_migrated(tmp_path):
    """serve reads which provider keys are stored over a connection that writes nothing (the
    ledger's check has just migrated the file: one schema read, not two); a file not migrated
    yet (a PostgreSQL ledger's first start) is created and migrated as before."""

    migrated = tmp_path / "migrated.db"
    conn = connect(migrated)
    conn.execute("INSERT INTO provider_keys (provider, store, set_at) VALUES ('openai', 'f', 1)")
    conn.close()
    before = {p.name: hashlib.sha256(p.read_bytes()).digest() for p in tmp_path.iterdir()}
    with opened_during() as opened:
        assert [entry.provider for entry in _stored_keys(migrated, stored_keys)] == ["openai"]
    assert opened == [f"file:{migrated}?mode=ro&immutable=1"]  # one open, and a read-only one
    after = {p.name: hashlib.sha256(p.read_bytes()).digest() for p in tmp_path.iterdir()}
    assert after == before  # not a byte, no -wal, no -shm

    blank = tmp_path / "blank.db"
    sqlite3.connect(blank).close()  # there, but never migrated
    assert _stored_keys(blank, stored_keys) == []
    assert applied_migrations(blank) == {name for name, _ in MIGRATIONS}
