"""A real `meterfox serve` process and real `meterfox keys` processes sharing one home.

Revocation and key changes reach the running daemon within a second, with no restart; the
daemon's output never holds a key. Binding policy (when proxy keys are required, the warning
beyond loopback) is checked as functions: tests never bind beyond loopback.
"""

from __future__ import annotations

import time

import openai
import pytest

from meterfox_cli.config import config_from_dict
from meterfox_cli.errors import ConfigError
from meterfox_cli.proxy.server import exposure_warning, is_loopback, requires_proxy_key
from tests.cli.conftest import launch_serve, run_meterfox
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import chat

FIRST_KEY = "sk-proj-TESTONLY-serve-1111"
SECOND_KEY = "sk-proj-TESTONLY-serve-2222"
MINUTE = 60.0


async def meterfox(*args: str, input: str | None = None) -> str:
    """Run the `meterfox` CLI in its own process (the event loop keeps serving meanwhile)."""
    done = await run_meterfox(*args, input=input or "", timeout=MINUTE)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.usefixtures("serve_workers")
async def test_keys_changes_reach_a_running_serve_within_a_second(
    upstream_server, encrypted_file_store
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=chat("gpt-4o-mini", {"prompt_tokens": 3, "completion_tokens": 1}))
    await meterfox("keys", "set", "openai", input=FIRST_KEY)
    secret = (await meterfox("keys", "create", "app", "--provider", "openai")).strip()
    async with launch_serve(upstreams={"openai": server}) as served:
        base_url = served.base("openai") + "/v1"
        client = openai.AsyncOpenAI(base_url=base_url, api_key=secret, max_retries=0)
        ask = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        try:
            await client.chat.completions.create(**ask)
            assert fake.received[-1].headers["Authorization"] == f"Bearer {FIRST_KEY}"

            await meterfox("keys", "set", "openai", input=SECOND_KEY)
            changed = time.monotonic()
            while fake.received[-1].headers["Authorization"] != f"Bearer {SECOND_KEY}":
                assert time.monotonic() - changed < 1.0, "the new provider key took over 1 s"
                await client.chat.completions.create(**ask)

            await meterfox("keys", "revoke", "app")
            revoked = time.monotonic()
            forwarded = len(fake.received)
            while True:
                assert time.monotonic() - revoked < 1.0, "still accepted 1 s after revoke"
                try:
                    await client.chat.completions.create(**ask)
                    forwarded += 1
                except openai.AuthenticationError as exc:
                    assert "'app' was revoked" in exc.message
                    break
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(**ask)
            assert len(fake.received) == forwarded
        finally:
            await client.close()
    assert "MeterFox http://127.0.0.1" in served.output
    for key in (FIRST_KEY, SECOND_KEY, secret, secret[3:]):
        assert key not in served.output


@pytest.mark.usefixtures("serve_workers")
async def test_serve_with_require_proxy_key_refuses_callers_own_keys(
    upstream_server, plaintext_keyring
):
    fake, server = upstream_server
    async with launch_serve("--require-proxy-key", upstreams={"openai": server}) as served:
        client = openai.AsyncOpenAI(
            base_url=served.base("openai") + "/v1", api_key="sk-callers-own", max_retries=0
        )
        try:
            with pytest.raises(openai.AuthenticationError, match="only accepts MeterFox proxy"):
                await client.chat.completions.create(model="m", messages=[])
        finally:
            await client.close()
    assert fake.received == []
    assert "must carry a MeterFox proxy key" in served.output


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("my-box.local", False),  # a name could resolve anywhere: not trusted as loopback
    ],
)
def test_what_counts_as_loopback(host, loopback):
    assert is_loopback(host) is loopback
    assert requires_proxy_key(host, None, None) is (not loopback)
    assert (exposure_warning(host, 8787, True) == []) is loopback


def test_the_flag_then_the_config_decide_over_the_default():
    assert requires_proxy_key("0.0.0.0", False, True) is False
    assert requires_proxy_key("0.0.0.0", None, False) is False
    assert requires_proxy_key("127.0.0.1", None, True) is True
    assert requires_proxy_key("127.0.0.1", True, None) is True


def test_the_warning_beyond_loopback_is_loud_and_says_what_to_do():
    required = "\n".join(exposure_warning("0.0.0.0", 8787, True))
    assert required.startswith("WARNING") and "0.0.0.0:8787" in required
    assert "Only MeterFox proxy keys are accepted" in required
    assert "Bind to 127.0.0.1" in required
    open_relay = "\n".join(exposure_warning("0.0.0.0", 8787, False))
    assert "relay" in open_relay


def test_config_require_proxy_key_is_read_and_must_be_a_boolean():
    assert config_from_dict({"server": {"require_proxy_key": True}}).require_proxy_key is True
    assert config_from_dict({}).require_proxy_key is None
    with pytest.raises(ConfigError, match="true or false"):
        config_from_dict({"server": {"require_proxy_key": "false"}})
