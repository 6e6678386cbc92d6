"""Proxy keys through the proxy, with the real openai, anthropic and google-genai SDKs.

For every credential form an SDK uses (Authorization Bearer, x-api-key, x-goog-api-key,
?key=): the upstream receives exactly the provider key, in the caller's form, and never a
proxy key; a refused request (unknown, revoked, out of scope, over budget) never reaches it.
Anthropic and Gemini are declared here as custom providers where the native adapters do not
exist yet: authentication is common to all formats, so the credential swap is the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from multidict import CIMultiDict
from yarl import URL

from meterfox_cli.config import ProviderConfig
from meterfox_cli.keys.authorizer import KeyAuthorizer
from meterfox_cli.keys.budget import parse_budget
from meterfox_cli.keys.provider_keys import ProviderKeys, choose_store, env_passphrase
from meterfox_cli.keys.proxy_keys import KeySpec, create_key, revoke_key
from meterfox_cli.paths import resolve_paths
from meterfox_cli.providers.registry import build_registry
from meterfox_cli.proxy.auth import find_credentials
from meterfox_cli.store.db import connect
from tests.conftest import Proxy, read_records, read_tags, start_proxy
from tests.fakes.upstream import Received, Reply
from tests.fixtures.openai_style import chat

PROVIDER_KEYS = {
    "openai": "sk-proj-TESTONLY-openai-0001",
    "anthropic": "sk-ant-TESTONLY-anthropic-0002",
    "gemini": "AIzaTESTONLY-gemini-0003",
    "openrouter": "sk-or-TESTONLY-openrouter-0004",
}

ANTHROPIC_BODY = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": "Hello there!"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 3},
}
GEMINI_BODY = {
    "candidates": [
        {
            "content": {"role": "model", "parts": [{"text": "Hello there!"}]},
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "resp-1",
}
OPENAI_BODY = chat("gpt-4o-mini-2024-07-18", {"prompt_tokens": 9, "completion_tokens": 3})


def reply_for(received: Received) -> Reply:
    """Each provider's own response shape, by path."""
    if received.path_qs.startswith("/v1/messages"):
        return Reply(json_body=ANTHROPIC_BODY)
    if ":generateContent" in received.path_qs:
        return Reply(json_body=GEMINI_BODY)
    return Reply(json_body=OPENAI_BODY)


@dataclass
class Keyed:
    proxy: Proxy
    conn: object
    authorizer: KeyAuthorizer

    def mint(self, name: str, **rules) -> str:
        """A new key, once the running proxy knows it (its watcher polls every 0.25 s)."""
        new = create_key(self.conn, KeySpec(name, **rules))
        deadline = time.monotonic() + 1
        while new.key.key_hash not in self.authorizer.snapshot.keys:
            assert time.monotonic() < deadline, "a new key did not reach the proxy in 1 s"
            time.sleep(0.01)
        return new.secret

    def upstream_credentials(self, received: Received) -> list:
        return find_credentials(CIMultiDict(received.headers), URL(received.path_qs).query)


def missing_native(slugs: tuple[str, ...], upstream_url: str) -> tuple[ProviderConfig, ...]:
    """Providers this branch has no built-in for, declared as custom ones at the fake upstream."""
    builtin = {p.slug for p in build_registry()}
    return tuple(ProviderConfig(s, upstream_url, "openai") for s in slugs if s not in builtin)


@pytest.fixture
async def keyed(upstream_server, plaintext_keyring) -> AsyncIterator[Keyed]:
    fake, server = upstream_server
    fake.reply = reply_for
    paths = resolve_paths()
    paths.ensure()
    conn = connect(paths.database)
    choice = choose_store(paths.data_dir, env_passphrase())
    for provider, secret in PROVIDER_KEYS.items():
        ProviderKeys(conn, choice).set(provider, secret)
    authorizer = KeyAuthorizer(paths.database, choice)
    upstream_url = str(server.make_url("")).rstrip("/")
    proxy, proxy_server = await start_proxy(
        fake,
        server,
        authorizer=authorizer,
        extra_providers=missing_native(("anthropic", "gemini"), upstream_url),
    )
    yield Keyed(proxy, conn, authorizer)
    await proxy.close_clients()
    await proxy_server.close()
    conn.close()


async def health(proxy: Proxy) -> dict:
    async with (
        aiohttp.ClientSession() as session,
        session.get(proxy.url + "/_meterfox/health") as response,
    ):
        return await response.json()


def assert_never_sent_a_proxy_key(keyed: Keyed, *proxy_keys: str) -> None:
    for received in keyed.proxy.upstream.received:
        blob = json.dumps(received.headers) + received.path_qs + received.body.decode("latin-1")
        assert "mf-" not in blob
        for key in proxy_keys:
            assert key not in blob and key[3:] not in blob


def assert_got_only(keyed: Keyed, received: Received, provider: str) -> str:
    """The upstream saw exactly one credential: `provider`'s key. Returns where it was."""
    [credential] = keyed.upstream_credentials(received)
    assert credential.secret == PROVIDER_KEYS[provider]
    others = set(PROVIDER_KEYS.values()) - {PROVIDER_KEYS[provider]}
    blob = json.dumps(received.headers) + received.path_qs
    assert not any(other in blob for other in others)
    return credential.location


# --- each SDK ---------------------------------------------------------------------------------


async def test_openai_sdk_with_a_proxy_key(keyed):
    secret = keyed.mint("web-app", tags=(("team", "search"),))
    client = keyed.proxy.track(
        openai.AsyncOpenAI(
            base_url=keyed.proxy.base("openai") + "/v1", api_key=secret, max_retries=0
        )
    )
    completion = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-MeterFox-Tag-Team": "spoofed", "X-MeterFox-Tag-Feature": "chat"},
    )
    assert completion.choices[0].message.content == "Hello there!"
    [received] = keyed.proxy.upstream.received
    assert assert_got_only(keyed, received, "openai") == "authorization"
    assert received.headers["Authorization"] == f"Bearer {PROVIDER_KEYS['openai']}"
    record = await keyed.proxy.record()
    assert record["key_name"] == "web-app" and record["status"] == 200
    # The key's tags are added to every request, and win over a caller's header of that name.
    assert read_tags(keyed.proxy.db_path, record["id"]) == {"team": "search", "feature": "chat"}
    assert_never_sent_a_proxy_key(keyed, secret)


async def test_anthropic_sdk_with_a_proxy_key(keyed):
    secret = keyed.mint("claude-app", providers=("anthropic",))
    client = keyed.proxy.track(
        anthropic.AsyncAnthropic(
            base_url=keyed.proxy.base("anthropic"), api_key=secret, max_retries=0
        )
    )
    message = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.content[0].text == "Hello there!"
    [received] = keyed.proxy.upstream.received
    assert received.path_qs == "/v1/messages"
    # anthropic 2.x sends Bearer; older versions x-api-key: either way, the caller's form.
    location = assert_got_only(keyed, received, "anthropic")
    assert location in ("authorization", "x-api-key")
    assert (await keyed.proxy.record())["key_name"] == "claude-app"
    assert_never_sent_a_proxy_key(keyed, secret)


async def test_google_genai_sdk_with_a_proxy_key(keyed):
    secret = keyed.mint("gemini-app")
    client = genai.Client(
        api_key=secret,
        http_options=genai_types.HttpOptions(base_url=keyed.proxy.base("gemini")),
    )
    aio = keyed.proxy.track(client.aio)
    response = await aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert response.text == "Hello there!"
    [received] = keyed.proxy.upstream.received
    assert ":generateContent" in received.path_qs
    assert assert_got_only(keyed, received, "gemini") == "x-goog-api-key"
    assert received.headers["x-goog-api-key"] == PROVIDER_KEYS["gemini"]
    assert (await keyed.proxy.record())["key_name"] == "gemini-app"
    assert_never_sent_a_proxy_key(keyed, secret)


# --- every credential form, on the wire -------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "path", "how"),
    [
        ("openai", "/v1/chat/completions", "bearer"),
        ("anthropic", "/v1/messages", "x-api-key"),
        ("anthropic", "/v1/messages", "bearer"),
        ("gemini", "/v1beta/models/gemini-2.5-flash:generateContent", "x-goog-api-key"),
        ("gemini", "/v1beta/models/gemini-2.5-flash:generateContent", "query"),
    ],
)
async def test_each_credential_form_is_kept(keyed, provider, path, how):
    secret = keyed.mint("raw")
    headers = {"Content-Type": "application/json", "anthropic-version": "2023-06-01"}
    query = {"alt": "json"}
    if how == "bearer":
        headers["Authorization"] = f"Bearer {secret}"
    elif how == "query":
        query["key"] = secret
    else:
        headers[how] = secret
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            keyed.proxy.base(provider) + path, params=query, data=b"{}", headers=headers
        ) as response,
    ):
        assert response.status == 200
    [received] = keyed.proxy.upstream.received
    location = assert_got_only(keyed, received, provider)
    assert location == {"bearer": "authorization", "query": "?key"}.get(how, how)
    if how == "bearer":
        assert received.headers["Authorization"] == f"Bearer {PROVIDER_KEYS[provider]}"
    if how == "query":
        assert received.path_qs.startswith(path + "?alt=json&key=")
    assert_never_sent_a_proxy_key(keyed, secret)


async def test_a_proxy_key_in_two_places_is_replaced_in_both_and_a_second_key_dropped(keyed):
    first, second = keyed.mint("one"), keyed.mint("two")
    headers = {
        "Authorization": f"Bearer {first}",
        "x-api-key": first,
        "x-goog-api-key": second,
        "Content-Type": "application/json",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            keyed.proxy.base("anthropic") + "/v1/messages",
            params={"key": second},
            data=b"{}",
            headers=headers,
        ) as response,
    ):
        assert response.status == 200
    [received] = keyed.proxy.upstream.received
    key = PROVIDER_KEYS["anthropic"]
    assert received.headers["Authorization"] == f"Bearer {key}"
    assert received.headers["x-api-key"] == key
    assert "x-goog-api-key" not in {h.lower() for h in received.headers}
    assert received.path_qs == "/v1/messages"
    assert_never_sent_a_proxy_key(keyed, first, second)


async def test_a_proxy_key_in_any_header_or_query_value_never_reaches_the_provider(keyed):
    """Finding 8 (issue 12): not only the credential places: any header, any query name in any
    case, any wrapper (a WebSocket subprotocol, a `token=` pair)."""
    secret = keyed.mint("anywhere")
    headers = {
        "Authorization": f"Bearer {secret}",
        "Sec-WebSocket-Protocol": f"realtime, openai-insecure-api-key.{secret}",
        "X-Debug": f"token={secret}; note=kept",
        "X-Keep": "an ordinary value",
        "Content-Type": "application/json",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            keyed.proxy.base("openai") + "/v1/chat/completions",
            params=[("KEY", secret), ("Key", secret), ("q", "kept")],
            data=b"{}",
            headers=headers,
        ) as response,
    ):
        assert response.status == 200
    [received] = keyed.proxy.upstream.received
    assert assert_got_only(keyed, received, "openai") == "authorization"
    assert received.headers["X-Keep"] == "an ordinary value"
    assert received.path_qs == "/v1/chat/completions?q=kept"
    assert_never_sent_a_proxy_key(keyed, secret)


async def test_a_proxy_key_on_a_passthrough_request_is_stripped_too(keyed):
    """The caller's own key passes through; a proxy key anywhere else on the request does not."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            keyed.proxy.base("openai") + "/v1/chat/completions",
            params={"KEY": "mf-" + "x" * 43},
            data=b"{}",
            headers={
                "Authorization": "Bearer sk-callers-own",
                "Sec-WebSocket-Protocol": "openai-insecure-api-key.mf-" + "y" * 43,
                "Content-Type": "application/json",
            },
        ) as response,
    ):
        assert response.status == 200
    [received] = keyed.proxy.upstream.received
    assert received.headers["Authorization"] == "Bearer sk-callers-own"
    assert_never_sent_a_proxy_key(keyed)
    assert (await keyed.proxy.record())["key_name"] == "passthrough"


@pytest.mark.parametrize(
    ("own", "proxy_key_in"),
    [
        ({"Authorization": "Bearer sk-callers-own"}, "x-api-key"),
        ({"x-api-key": "sk-ant-callers-own"}, "authorization"),
        ({"x-goog-api-key": "AIza-callers-own", "api-key": "azure-own"}, "authorization"),
        ({"Authorization": "Bearer sk-callers-own"}, "query"),
    ],
)
async def test_with_a_proxy_key_every_other_credential_is_dropped(keyed, own, proxy_key_in):
    """Finding 9 (issue 12): the caller's own key beside a proxy key does not reach the
    provider; only the provider key does, where the proxy key was."""
    secret = keyed.mint("mixed", providers=("anthropic",))
    headers = {**own, "Content-Type": "application/json", "anthropic-version": "2023-06-01"}
    params = {"key": "AIza-callers-own-query"}
    if proxy_key_in == "authorization":
        headers["Authorization"] = f"Bearer {secret}"
    elif proxy_key_in == "query":
        params["key"] = secret
    else:
        headers[proxy_key_in] = secret
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            keyed.proxy.base("anthropic") + "/v1/messages",
            params=params,
            data=b"{}",
            headers=headers,
        ) as response,
    ):
        assert response.status == 200
    [received] = keyed.proxy.upstream.received
    location = assert_got_only(keyed, received, "anthropic")
    assert location == {"query": "?key"}.get(proxy_key_in, proxy_key_in)
    blob = json.dumps(received.headers) + received.path_qs
    assert "callers-own" not in blob and "azure-own" not in blob
    assert_never_sent_a_proxy_key(keyed, secret)
    assert (await keyed.proxy.record())["key_name"] == "mixed"


# --- refusals ---------------------------------------------------------------------------------


async def test_an_unknown_proxy_key_is_refused_in_the_providers_shape(keyed):
    client = keyed.proxy.track(
        openai.AsyncOpenAI(
            base_url=keyed.proxy.base("openai") + "/v1",
            api_key="mf-never-minted-0000000000000000000000000000",
        )
    )
    with pytest.raises(openai.AuthenticationError) as caught:
        await client.chat.completions.create(model="m", messages=[])
    assert caught.value.status_code == 401
    assert "unknown proxy key" in caught.value.message
    assert keyed.proxy.upstream.received == []
    # Refusals are final: the SDK did not retry (x-should-retry: false). They are counted,
    # not recorded.
    assert (await health(keyed.proxy))["refused"] == {"invalid_proxy_key": 1}
    assert read_records(keyed.proxy.db_path) == []


async def test_a_key_for_one_provider_is_refused_for_another(keyed):
    secret = keyed.mint("openai-only", providers=("openai",))
    client = keyed.proxy.track(
        anthropic.AsyncAnthropic(base_url=keyed.proxy.base("anthropic"), api_key=secret)
    )
    with pytest.raises(anthropic.AuthenticationError, match="may not call anthropic"):
        await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert keyed.proxy.upstream.received == []


async def test_a_revoked_key_is_refused_within_a_second_and_never_reaches_upstream(keyed):
    secret = keyed.mint("doomed")
    client = keyed.proxy.track(
        openai.AsyncOpenAI(
            base_url=keyed.proxy.base("openai") + "/v1", api_key=secret, max_retries=0
        )
    )
    ask = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    await client.chat.completions.create(**ask)
    other = connect(resolve_paths().database)  # `keys revoke` in another process, in effect
    revoke_key(other, "doomed")
    other.close()
    revoked_at = time.monotonic()
    forwarded = len(keyed.proxy.upstream.received)
    while True:
        assert time.monotonic() - revoked_at < 1.0, "still accepted a second after revocation"
        try:
            await client.chat.completions.create(**ask)
            forwarded += 1
        except openai.AuthenticationError as exc:
            assert "'doomed' was revoked" in exc.message
            break
        await asyncio.sleep(0.02)
    assert len(keyed.proxy.upstream.received) == forwarded
    for _ in range(3):
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(**ask)
    assert len(keyed.proxy.upstream.received) == forwarded


async def test_a_budget_is_enforced_with_429(keyed):
    """OpenRouter reports each call's cost ($0.40 here); at $1.00/day the fourth call is
    refused, in OpenAI's error shape, without reaching the upstream."""
    keyed.proxy.upstream.reply = Reply(
        json_body=chat(
            "openai/gpt-4o-mini",
            {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12, "cost": 0.40},
        )
    )
    secret = keyed.mint("capped", budget=parse_budget("1/day"))
    client = keyed.proxy.track(
        openai.AsyncOpenAI(base_url=keyed.proxy.base("openrouter") + "/v1", api_key=secret)
    )
    ask = dict(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    accepted = 0
    while True:
        assert accepted < 10, "the budget was never enforced"
        try:
            await client.chat.completions.create(**ask)
            accepted += 1
        except openai.RateLimitError as exc:
            refusal = exc
            break
        # Once the cost is committed, the proxy's spend catches up within a second (requests
        # sent in that window can overshoot; docs/security.md says by how much).
        await keyed.proxy.records(accepted)
        seen = time.monotonic()
        while keyed.authorizer.snapshot.spend.get("capped", 0) < accepted * 400_000_000:
            assert time.monotonic() - seen < 1.0, "the spend took over a second to catch up"
            await asyncio.sleep(0.01)
    assert accepted == 3  # $0.40, $0.80, $1.20: the fourth call finds the budget spent
    assert refusal.status_code == 429
    assert "'capped'" in refusal.message and "$1.00/day" in refusal.message
    assert len(keyed.proxy.upstream.received) == accepted
    assert (await health(keyed.proxy))["refused"] == {"budget_exceeded": 1}, "SDK retried"
    assert len(await keyed.proxy.records(accepted)) == accepted  # refusals are not recorded


async def test_passthrough_is_recorded_as_passthrough(keyed):
    client = keyed.proxy.track(
        openai.AsyncOpenAI(
            base_url=keyed.proxy.base("openai") + "/v1", api_key="sk-callers-own", max_retries=0
        )
    )
    await client.chat.completions.create(model="m", messages=[])
    [received] = keyed.proxy.upstream.received
    assert received.headers["Authorization"] == "Bearer sk-callers-own"
    assert (await keyed.proxy.record())["key_name"] == "passthrough"


async def test_require_proxy_key_refuses_passthrough(keyed):
    keyed.authorizer.require_proxy_key = True
    client = keyed.proxy.track(
        openai.AsyncOpenAI(
            base_url=keyed.proxy.base("openai") + "/v1", api_key="sk-callers-own", max_retries=0
        )
    )
    with pytest.raises(openai.AuthenticationError, match="only accepts MeterFox proxy keys"):
        await client.chat.completions.create(model="m", messages=[])
    assert keyed.proxy.upstream.received == []
    secret = keyed.mint("ok")
    client.api_key = secret
    await client.chat.completions.create(model="m", messages=[])
    assert len(keyed.proxy.upstream.received) == 1


async def test_google_genai_sees_a_refusal_as_a_client_error(keyed):
    secret = keyed.mint("revoked-gemini")
    revoke_key(keyed.conn, "revoked-gemini")
    client = genai.Client(
        api_key=secret,
        http_options=genai_types.HttpOptions(
            base_url=keyed.proxy.base("gemini"),
            retry_options=genai_types.HttpRetryOptions(attempts=1),
        ),
    )
    aio = keyed.proxy.track(client.aio)
    deadline = time.monotonic() + 1
    while True:
        try:
            await aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
        except genai_errors.ClientError as exc:
            assert exc.code == 401
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_no_key_reaches_the_logs(keyed, caplog):
    caplog.set_level(logging.DEBUG)
    good, gone = keyed.mint("good"), keyed.mint("gone")
    revoke_key(keyed.conn, "gone")
    await asyncio.sleep(0.5)  # let the daemon see the revocation
    async with aiohttp.ClientSession() as session:
        for secret in (good, gone, "mf-unknown-xyz", "sk-passthrough-secret"):
            async with session.post(
                keyed.proxy.base("openai") + "/v1/chat/completions?key=" + secret,
                json={"model": "m", "messages": []},
                headers={"Authorization": f"Bearer {secret}"},
            ) as response:
                await response.read()
    # The fake upstream's own access log is the provider's business; MeterFox logs no access.
    assert not any(
        "/openai/" in r.getMessage() for r in caplog.records if r.name == "aiohttp.access"
    )
    text = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    for secret in (good, gone, "mf-unknown-xyz", *PROVIDER_KEYS.values()):
        assert secret not in text


async def test_records_never_hold_a_key(keyed):
    secret = keyed.mint("app")
    async with aiohttp.ClientSession() as session:
        for url_key in (secret, "mf-unknown-abc"):
            async with session.post(
                keyed.proxy.base("gemini") + "/v1beta/models/g:generateContent",
                params={"key": url_key},
                json={},
            ) as response:
                await response.read()
    await keyed.proxy.records(1)  # the refused one is counted, not recorded
    for record in read_records(keyed.proxy.db_path):
        blob = json.dumps(dict(record))
        assert "mf-" not in blob and not any(k in blob for k in PROVIDER_KEYS.values())


async def test_a_provider_key_goes_only_to_its_own_upstream(upstream_server, plaintext_keyring):
    """Two upstreams: each provider's key reaches only its own, never the other's, not even
    through a redirect or a path crafted to change the host."""
    from aiohttp.test_utils import TestServer

    from tests.fakes.upstream import FakeUpstream

    fake, server = upstream_server
    other = FakeUpstream()
    other_server = TestServer(other.app(), host="127.0.0.1")
    await other_server.start_server()
    other_url = str(other_server.make_url("")).rstrip("/")
    paths = resolve_paths()
    paths.ensure()
    conn = connect(paths.database)
    choice = choose_store(paths.data_dir, env_passphrase())
    ProviderKeys(conn, choice).set("openai", PROVIDER_KEYS["openai"])
    ProviderKeys(conn, choice).set("other", "sk-other-TESTONLY-0005")
    secret = create_key(conn, KeySpec("app")).secret
    proxy, proxy_server = await start_proxy(
        fake,
        server,
        authorizer=KeyAuthorizer(paths.database, choice),
        extra_providers=(ProviderConfig("other", other_url, "openai"),),
    )
    headers = {"Authorization": f"Bearer {secret}"}
    try:
        async with aiohttp.ClientSession() as session:

            async def post(path: str) -> int:
                async with session.post(
                    proxy.url + path, json={}, headers=headers, allow_redirects=False
                ) as response:
                    await response.read()
                    return response.status

            assert await post("/openai/v1/chat/completions") == 200
            assert await post("/other/v1/chat/completions") == 200
            fake.reply = Reply(status=307, headers={"Location": other_url + "/v1/steal"})
            assert await post("/openai/v1/chat/completions") == 307
            for crafted in (
                f"/openai@{other_url[7:]}/v1/chat/completions",
                "/openai/..%2F..%2Fother/v1/chat/completions",
                f"/openai/{other_url}/v1",
            ):
                await post(crafted)
    finally:
        await proxy_server.close()
        await other_server.close()
        conn.close()
    to_openai = [r.headers.get("Authorization") for r in fake.received]
    to_other = [r.headers.get("Authorization") for r in other.received]
    assert set(to_openai) == {f"Bearer {PROVIDER_KEYS['openai']}"}
    assert to_other == ["Bearer sk-other-TESTONLY-0005"]
    assert [r.path_qs for r in other.received] == ["/v1/chat/completions"]
