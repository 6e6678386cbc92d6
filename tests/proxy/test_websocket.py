"""WebSocket sessions through the proxy (issue 13): the real `openai` SDK's
`client.realtime.connect()` to a fake Realtime server on loopback; records per response with
exact usage and cost; a client that leaves mid-response; proxy keys in the subprotocol; a key
revoked while its socket is open."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import genai_prices
import openai
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from meterfox_cli.keys.authorizer import KeyAuthorizer
from meterfox_cli.keys.budget import parse_budget
from meterfox_cli.keys.provider_keys import ProviderKeys, choose_store, env_passphrase
from meterfox_cli.keys.proxy_keys import KeySpec, create_key, revoke_key
from meterfox_cli.money import to_nanousd
from meterfox_cli.paths import resolve_paths
from meterfox_cli.proxy.headers import upstream_request_headers
from meterfox_cli.proxy.websocket import HANDSHAKE_HEADERS, _code
from meterfox_cli.store.db import connect
from tests.conftest import Proxy, start_proxy
from tests.fakes.sockets import REALTIME_PATH, FakeSockets

OPENAI_KEY = "sk-proj-TESTONLY-openai-0001"
USAGES = [
    {
        "total_tokens": 1500,
        "input_tokens": 1000,
        "output_tokens": 500,
        "input_token_details": {
            "text_tokens": 400,
            "audio_tokens": 600,
            "image_tokens": 0,
            "cached_tokens": 300,
            "cached_tokens_details": {"text_tokens": 200, "audio_tokens": 100, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": 100, "audio_tokens": 400},
    },
    {
        "total_tokens": 2300,
        "input_tokens": 1800,
        "output_tokens": 500,
        "input_token_details": {
            "text_tokens": 700,
            "audio_tokens": 1100,
            "cached_tokens": 1000,
            "cached_tokens_details": {"text_tokens": 400, "audio_tokens": 600},
        },
        "output_token_details": {"text_tokens": 200, "audio_tokens": 300},
    },
]


def expected_cost(usage: dict) -> int:
    """genai-prices' own price of a response.done usage, split into its audio parts."""
    details = usage["input_token_details"]
    priced = genai_prices.Usage(
        input_tokens=usage["input_tokens"],
        cache_read_tokens=details["cached_tokens"],
        input_audio_tokens=details["audio_tokens"],
        cache_audio_read_tokens=details["cached_tokens_details"]["audio_tokens"],
        output_tokens=usage["output_tokens"],
        output_audio_tokens=usage["output_token_details"]["audio_tokens"],
    )
    return to_nanousd(
        genai_prices.calc_price(priced, "gpt-realtime", provider_id="openai").total_price
    )


@pytest.fixture
async def sockets() -> AsyncIterator[tuple[FakeSockets, TestServer]]:
    fake = FakeSockets(realtime_usages=list(USAGES))
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, server
    await server.close()


@pytest.fixture
async def proxy(sockets) -> AsyncIterator[Proxy]:
    fake, server = sockets
    proxy, proxy_server = await start_proxy(fake, server)
    yield proxy
    await proxy.close_clients()
    await proxy_server.close()


def realtime_client(proxy: Proxy, api_key: str = "sk-caller-own") -> openai.AsyncOpenAI:
    return proxy.track(
        openai.AsyncOpenAI(base_url=proxy.base("openai") + "/v1", api_key=api_key, max_retries=0)
    )


async def until(connection, kind: str) -> object:
    async with asyncio.timeout(5):
        async for event in connection:
            if event.type == kind:
                return event
    raise AssertionError(f"the socket closed before {kind}")


async def test_a_realtime_session_with_two_responses_records_two_priced_records(proxy):
    fake: FakeSockets = proxy.upstream
    client = realtime_client(proxy)
    async with client.realtime.connect(model="gpt-realtime") as connection:
        created = await until(connection, "session.created")
        assert created.session.model == fake.session_model
        dones = []
        for _ in USAGES:
            await connection.response.create()
            dones.append(await until(connection, "response.done"))
    # Frames reached the SDK unaltered: it parsed every one into its typed event.
    assert [d.response.usage.input_tokens for d in dones] == [1000, 1800]
    [handshake] = fake.handshakes
    assert handshake.path_qs == f"{REALTIME_PATH}?model=gpt-realtime"
    assert handshake.headers["Authorization"] == "Bearer sk-caller-own"
    assert [json.loads(m)["type"] for m in fake.received] == ["response.create"] * 2
    rows = await proxy.records(2)
    assert len(rows) == 2
    for row, usage in zip(rows, USAGES, strict=True):
        details = usage["input_token_details"]
        assert row["provider"] == "openai" and row["endpoint"] == "/v1/realtime"
        assert row["model"] == fake.session_model and row["outcome"] == "ok"
        assert row["streamed"] == 1 and row["status"] == 101
        assert (row["input_tokens"], row["cached_tokens"], row["output_tokens"]) == (
            usage["input_tokens"],
            details["cached_tokens"],
            usage["output_tokens"],
        )
        assert json.loads(row["units"]) == {
            "input_audio_tokens": details["audio_tokens"],
            "cache_audio_read_tokens": details["cached_tokens_details"]["audio_tokens"],
            "output_audio_tokens": usage["output_token_details"]["audio_tokens"],
        }
        assert row["cost_nanousd"] == expected_cost(usage) and row["cost_source"] == "computed"
    # Audio is priced at audio rates: the same tokens as text would cost far less.
    text_only = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1000, cache_read_tokens=300, output_tokens=500),
        "gpt-realtime",
        provider_id="openai",
    ).total_price
    assert rows[0]["cost_nanousd"] > to_nanousd(text_only) * 2


async def test_a_client_that_leaves_mid_response_still_gets_its_record(proxy):
    fake: FakeSockets = proxy.upstream
    fake.hold = True
    client = realtime_client(proxy)
    async with client.realtime.connect(model="gpt-realtime") as connection:
        await until(connection, "session.created")
        await connection.response.create()
        await until(connection, "response.output_text.delta")
    async with asyncio.timeout(5):
        await fake.closed.wait()  # the proxy closed the upstream when the client left
    row = await proxy.record()
    assert row["outcome"] == "client_closed" and row["usage_known"] == 0
    assert row["model"] == fake.session_model and row["endpoint"] == "/v1/realtime"


async def test_a_model_from_the_url_alone_when_the_session_names_none(proxy):
    fake: FakeSockets = proxy.upstream
    fake.session_model = ""
    client = realtime_client(proxy)
    async with client.realtime.connect(model="gpt-realtime-mini") as connection:
        await until(connection, "session.created")
        await connection.response.create()
        await until(connection, "response.done")
    row = await proxy.record()
    assert row["model"] == "gpt-realtime-mini" and row["input_tokens"] == 1000


# --- keys -------------------------------------------------------------------------------------


@pytest.fixture
async def keyed(sockets, plaintext_keyring):
    fake, server = sockets
    paths = resolve_paths()
    paths.ensure()
    conn = connect(paths.database)
    choice = choose_store(paths.data_dir, env_passphrase())
    ProviderKeys(conn, choice).set("openai", OPENAI_KEY)
    authorizer = KeyAuthorizer(paths.database, choice)
    proxy, proxy_server = await start_proxy(fake, server, authorizer=authorizer)

    def mint(name: str, **rules) -> str:
        new = create_key(conn, KeySpec(name, **rules))
        deadline = time.monotonic() + 1
        while new.key.key_hash not in authorizer.snapshot.keys:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return new.secret

    yield proxy, conn, mint
    await proxy.close_clients()
    await proxy_server.close()
    conn.close()


def ws_url(proxy: Proxy) -> str:
    return proxy.base("openai").replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"


async def test_a_proxy_key_in_the_subprotocol_is_swapped_and_never_forwarded(keyed):
    proxy, _, mint = keyed
    secret = mint("browser-app")
    protocols = ("realtime", f"openai-insecure-api-key.{secret}", "openai-beta.realtime-v1")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(proxy), protocols=protocols) as ws,
    ):
        assert ws.protocol == "realtime"  # the negotiated subprotocol, echoed
        first = json.loads((await ws.receive(timeout=5)).data)
        assert first["type"] == "session.created"
        await ws.send_str(json.dumps({"type": "response.create"}))
        while json.loads((await ws.receive(timeout=5)).data)["type"] != "response.done":
            pass
    [handshake] = proxy.upstream.handshakes
    assert handshake.protocols == [
        "realtime",
        f"openai-insecure-api-key.{OPENAI_KEY}",
        "openai-beta.realtime-v1",
    ]
    blob = json.dumps(handshake.headers) + handshake.path_qs
    assert "mf-" not in blob and secret[3:] not in blob
    row = await proxy.record()
    assert row["key_name"] == "browser-app" and row["input_tokens"] == 1000


async def test_a_proxy_key_through_the_sdk_reaches_the_upstream_as_the_provider_key(keyed):
    proxy, _, mint = keyed
    secret = mint("voice-app")
    client = realtime_client(proxy, api_key=secret)
    async with client.realtime.connect(model="gpt-realtime") as connection:
        await until(connection, "session.created")
    [handshake] = proxy.upstream.handshakes
    assert handshake.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert secret[3:] not in json.dumps(handshake.headers)


async def test_an_unknown_proxy_key_is_refused_before_the_upgrade(keyed):
    proxy, _, _ = keyed
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(ws_url(proxy), headers={"Authorization": "Bearer mf-" + "x" * 43})
    assert refused.value.status == 401
    assert proxy.upstream.handshakes == []


async def test_a_revoked_key_closes_its_socket_within_a_second(keyed):
    proxy, conn, mint = keyed
    secret = mint("to-revoke")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(proxy), headers={"Authorization": f"Bearer {secret}"}) as ws,
    ):
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "session.created"
        revoke_key(conn, "to-revoke")
        revoked = time.monotonic()
        message = await ws.receive(timeout=3)  # the client sends nothing: the timer must act
        elapsed = time.monotonic() - revoked
    assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1008
    assert elapsed < 1.0, f"closed {elapsed:.2f} s after the revocation"
    async with asyncio.timeout(5):
        await proxy.upstream.closed.wait()


async def test_a_shutdown_closes_open_sockets_and_records_their_open_responses(sockets):
    fake, server = sockets
    fake.hold = True
    proxy, proxy_server = await start_proxy(fake, server)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(proxy)) as ws,
    ):
        await ws.receive(timeout=5)
        await ws.send_str(json.dumps({"type": "response.create"}))
        while (
            json.loads((await ws.receive(timeout=5)).data)["type"] != "response.output_text.delta"
        ):
            pass
        started = time.monotonic()
        await proxy_server.close()  # the app's shutdown, then its writer drains
        assert time.monotonic() - started < 5
        message = await ws.receive(timeout=5)
        assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1001
    rows = await proxy.records(1)
    assert [(r["outcome"], r["usage_known"]) for r in rows] == [("client_closed", 0)]


async def test_an_upstream_that_refuses_the_upgrade_answers_its_status_and_is_recorded(proxy):
    url = proxy.base("openai").replace("http://", "ws://") + "/v1/no-such-socket"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
    assert refused.value.status == 404
    row = await proxy.record()
    assert row["outcome"] == "upstream_error" and row["status"] == 404
    assert row["endpoint"] == "/v1/no-such-socket"


async def test_a_budgeted_key_that_cannot_price_a_session_is_refused_before_the_upgrade(keyed):
    proxy, _, mint = keyed
    secret = mint("capped", budget=parse_budget("5/day"))
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(ws_url(proxy), headers={"Authorization": f"Bearer {secret}"})
    assert refused.value.status == 403
    assert proxy.upstream.handshakes == []


async def test_a_budget_spent_by_one_response_ends_the_session_before_the_next(keyed):
    proxy, _, mint = keyed
    secret = mint("tiny", budget=parse_budget("0.01/day"), allow_unpriced=True)
    assert expected_cost(USAGES[0]) > 10_000_000  # the first response alone passes $0.01
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(proxy), headers={"Authorization": f"Bearer {secret}"}) as ws,
    ):
        await ws.receive(timeout=5)
        await ws.send_str(json.dumps({"type": "response.create"}))
        while json.loads((await ws.receive(timeout=5)).data)["type"] != "response.done":
            pass
        await ws.send_str(json.dumps({"type": "response.create"}))
        message = await ws.receive(timeout=5)
        while message.type is aiohttp.WSMsgType.TEXT:
            message = await ws.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1008
    # The spent key is refused on the client's next frame: the second response never starts.
    assert [json.loads(m)["type"] for m in proxy.upstream.received] == ["response.create"]
    [row] = await proxy.records(1)
    assert row["outcome"] == "ok" and row["cost_nanousd"] == expected_cost(USAGES[0])


def test_close_codes_that_may_not_be_sent_on_become_1000():
    assert [_code(c) for c in (1000, 1001, 1008, 1011, 4000, 3001)] == [
        1000,
        1001,
        1008,
        1011,
        4000,
        3001,
    ]
    assert [_code(c) for c in (0, 1004, 1005, 1006, 1015, 2999, 5000, None)] == [1000] * 8


@pytest.mark.parametrize("name", sorted(HANDSHAKE_HEADERS))
def test_each_handshake_header_is_negotiated_per_hop_not_forwarded(name):
    incoming = CIMultiDict({name.title(): "client-value", "Upgrade": "websocket", "X-Keep": "1"})
    assert dict(upstream_request_headers(incoming, drop=HANDSHAKE_HEADERS)) == {"X-Keep": "1"}
