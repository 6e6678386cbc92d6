"""`meterfox serve --tls-cert … --tls-key …`: the daemon speaks HTTPS and wss:// (issue 13).

google-genai's Live client only speaks `wss://` (it rewrites the base URL's scheme), so a Live
session reaches the proxy only over TLS. Here the real SDK talks to a real `meterfox serve` on
HTTPS, trusting a throwaway loopback certificate; the proxy talks plain ws:// to the fake
upstream. A session with two turns is two records with exact usage and cost; a client that
leaves mid-turn still gets its record.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import genai_prices
import httpx
import openai
import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner
from google import genai
from google.genai import types

from meterfox_cli.cli import main
from meterfox_cli.money import to_nanousd
from tests.cli.conftest import launch_serve, run_meterfox
from tests.conftest import read_records
from tests.fakes.sockets import FakeSockets
from tests.fakes.tls import loopback_contexts
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import CASES
from tests.proxy.test_websocket_live import LIVE_USAGES, MODEL, one_turn


@pytest.fixture
async def live() -> AsyncIterator[tuple[FakeSockets, TestServer]]:
    fake = FakeSockets(live_usages=list(LIVE_USAGES))
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, server
    await server.close()


def tls_args(directory: Path) -> tuple[str, ...]:
    return (
        "--tls-cert",
        str(directory / "loopback.pem"),
        "--tls-key",
        str(directory / "loopback.key"),
    )


def live_client(served, client_tls) -> genai.Client:
    return genai.Client(
        api_key="AIza-caller-own",
        http_options=types.HttpOptions(
            base_url=served.base("gemini"), async_client_args={"ssl": client_tls}
        ),
    )


def live_cost(usage: genai_prices.Usage) -> int:
    return to_nanousd(genai_prices.calc_price(usage, MODEL, provider_id="google").total_price)


async def test_google_genai_live_through_serve_on_https(live, meterfox_home, tmp_path):
    fake, server = live
    _, client_tls = loopback_contexts(tmp_path)
    async with launch_serve(
        *tls_args(tmp_path), upstreams={"gemini": server}, tls=client_tls
    ) as served:
        assert served.url.startswith("https://")
        client = live_client(served, client_tls)
        config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            first = await one_turn(session, "hello")
            await one_turn(session, "again")
        fake.hold, fake.closed = True, asyncio.Event()
        async with client.aio.live.connect(model=MODEL) as session:
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text="hi")]),
                turn_complete=True,
            )
            async with asyncio.timeout(5):
                async for message in session.receive():
                    if message.server_content and message.server_content.model_turn:
                        break
        async with asyncio.timeout(5):
            await fake.closed.wait()
        await served.stop(signal.SIGTERM, timeout=15)
    assert served.returncode == 0
    assert first[-1].usage_metadata.prompt_token_count == 120  # frames reached the SDK intact
    assert all(h.headers["x-goog-api-key"] == "AIza-caller-own" for h in fake.handshakes)
    rows = read_records(meterfox_home / "meterfox.db")
    assert [(r["model"], r["outcome"], r["usage_known"]) for r in rows] == [
        (MODEL, "ok", 1),
        (MODEL, "ok", 1),
        (MODEL, "client_closed", 0),
    ]
    first_row, second_row, _ = rows
    assert (first_row["input_tokens"], first_row["output_tokens"]) == (120, 40)
    assert json.loads(first_row["units"]) == {"input_audio_tokens": 100, "output_audio_tokens": 40}
    assert first_row["cost_nanousd"] == live_cost(
        genai_prices.Usage(
            input_tokens=120, input_audio_tokens=100, output_tokens=40, output_audio_tokens=40
        )
    )
    assert (second_row["input_tokens"], second_row["output_tokens"]) == (300, 60)
    assert second_row["reasoning_tokens"] == 10
    assert second_row["cost_nanousd"] == live_cost(
        genai_prices.Usage(input_tokens=300, output_tokens=60, output_reasoning_tokens=10)
    )


async def test_an_https_daemon_serves_the_sdks_json_calls_too(
    upstream_server, meterfox_home, tmp_path
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=CASES[0].body)
    _, client_tls = loopback_contexts(tmp_path)
    async with launch_serve(
        *tls_args(tmp_path), upstreams={"openai": server}, tls=client_tls
    ) as served:
        async with httpx.AsyncClient(verify=client_tls) as http:
            sdk = openai.AsyncOpenAI(
                base_url=served.base("openai") + "/v1", api_key="sk-caller", http_client=http
            )
            reply = await sdk.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
        await served.stop(signal.SIGTERM, timeout=15)
    assert reply.usage is not None
    [row] = read_records(meterfox_home / "meterfox.db")
    assert (row["provider"], row["outcome"]) == ("openai", "ok")
    assert row["input_tokens"] == reply.usage.prompt_tokens


async def test_a_certificate_without_its_key_is_refused_in_one_sentence(meterfox_home, tmp_path):
    loopback_contexts(tmp_path)
    result = await run_meterfox("serve", "--tls-cert", str(tmp_path / "loopback.pem"))
    assert result.returncode != 0
    assert "HTTPS needs both a certificate and its key" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_missing_certificate_file_is_named(meterfox_home, tmp_path):
    result = await run_meterfox(
        "serve", "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(tmp_path / "nope.key")
    )
    assert result.returncode != 0
    assert f"no such file {tmp_path / 'nope.pem'}" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_key_that_does_not_match_the_certificate_is_refused(meterfox_home, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        loopback_contexts(tmp_path / name)
    result = await run_meterfox(
        "serve",
        "--tls-cert",
        str(tmp_path / "a" / "loopback.pem"),
        "--tls-key",
        str(tmp_path / "b" / "loopback.key"),
    )
    assert result.returncode != 0
    assert "cannot serve HTTPS with" in result.stderr and "match the certificate" in result.stderr


def test_env_gives_https_base_urls_when_the_config_serves_tls(meterfox_home, tmp_path):
    meterfox_home.mkdir(parents=True)
    (meterfox_home / "config.toml").write_text(
        f'[server]\ntls_cert = "{tmp_path}/c.pem"\ntls_key = "{tmp_path}/k.pem"\n'
    )
    bash = CliRunner().invoke(main, ["env"]).output
    assert 'export OPENAI_BASE_URL="https://127.0.0.1:8787/openai/v1"' in bash


def test_a_config_with_only_tls_cert_is_an_error(meterfox_home, tmp_path):
    meterfox_home.mkdir(parents=True)
    (meterfox_home / "config.toml").write_text(f'[server]\ntls_cert = "{tmp_path}/c.pem"\n')
    result = CliRunner().invoke(main, ["env"])
    assert result.exit_code != 0
    assert "[server]: HTTPS needs both a certificate and its key" in result.output


async def test_a_tls_config_serves_https_and_the_dashboard_command_finds_it(
    meterfox_home, tmp_path
):
    from tests.web.test_dashboard_cmd import fake_browser

    _, client_tls = loopback_contexts(tmp_path)
    meterfox_home.mkdir(parents=True, exist_ok=True)
    (meterfox_home / "config.toml").write_text(
        f'[server]\ntls_cert = "{tmp_path}/loopback.pem"\ntls_key = "{tmp_path}/loopback.key"\n'
    )
    browser, opened = fake_browser(tmp_path)
    async with launch_serve(tls=client_tls) as served:
        done = await run_meterfox(
            "dashboard", "--port", str(served.port), env={"BROWSER": browser, "DISPLAY": ":0"}
        )
    assert done.returncode == 0, done.stderr
    assert opened.read_text().strip() == f"https://127.0.0.1:{served.port}/_meterfox/"
