"""What MeterFox leaves on disk: no key, no prompt, nothing readable by anyone else.

Keys are set and minted through the CLI, requests go through the proxy with the real openai
SDK (JSON and streamed, accepted and refused), then every file under METERFOX_HOME is read
byte by byte.
"""

from __future__ import annotations

import base64

import openai
import pytest
from click.testing import CliRunner

from meterfox_cli.cli import main
from meterfox_cli.keys.authorizer import KeyAuthorizer
from meterfox_cli.keys.provider_keys import choose_store, env_passphrase
from meterfox_cli.paths import resolve_paths
from tests.conftest import start_proxy
from tests.fakes.upstream import Received, Reply, sse
from tests.fixtures.openai_style import chat, chat_stream_chunks
from tests.keys.support import dirs_under, files_under, mode

OPENAI_KEY = "sk-proj-TESTONLY-at-rest-7f3a9c"
CALLERS_OWN_KEY = "sk-callers-own-TESTONLY-51d2"
PROMPT = "PROMPT-MARKER the purple elephant sings at midnight"
ANSWER = "ANSWER-MARKER"


def cli(*args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def reply(received: Received) -> Reply:
    if received.json().get("stream"):
        usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        chunks = chat_stream_chunks("gpt-4o-mini", [ANSWER], usage)
        return Reply(chunks=sse(*chunks), content_type="text/event-stream")
    body = chat("gpt-4o-mini", {"prompt_tokens": 5, "completion_tokens": 1})
    body["choices"][0]["message"]["content"] = ANSWER
    return Reply(json_body=body)


def forms(secret: str) -> list[bytes]:
    """A secret as it could sit on disk in clear: raw, without its prefix, or base64."""
    raw = secret.encode()
    return [raw, raw.split(b"-", 1)[-1], base64.b64encode(raw), base64.urlsafe_b64encode(raw)]


@pytest.mark.parametrize("store", ["encrypted_file_store", "plaintext_keyring"])
async def test_nothing_secret_is_left_in_clear_and_every_file_is_owner_only(
    store, request, upstream_server, meterfox_home
):
    request.getfixturevalue(store)
    cli("keys", "set", "openai", input=OPENAI_KEY + "\n")
    live = cli("keys", "create", "app", "--provider", "openai", "--tag", "team=x").strip()
    doomed = cli("keys", "create", "doomed").strip()
    cli("keys", "revoke", "doomed")

    fake, server = upstream_server
    fake.reply = reply
    paths = resolve_paths()
    authorizer = KeyAuthorizer(paths.database, choose_store(paths.data_dir, env_passphrase()))
    proxy, proxy_server = await start_proxy(fake, server, authorizer=authorizer)
    base = proxy.base("openai") + "/v1"
    messages = [{"role": "user", "content": PROMPT}]
    try:
        for api_key in (live, CALLERS_OWN_KEY):
            client = proxy.track(openai.AsyncOpenAI(base_url=base, api_key=api_key))
            done = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            assert done.choices[0].message.content == ANSWER
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True
            )
            assert ANSWER in "".join([c.choices[0].delta.content or "" async for c in stream])
        for api_key in (doomed, "mf-unknown-TESTONLY-key"):
            client = proxy.track(openai.AsyncOpenAI(base_url=base, api_key=api_key))
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert len(await proxy.records(4)) == 4  # refusals are counted, not recorded
        assert fake.received[0].headers["Authorization"] == f"Bearer {OPENAI_KEY}"
        # While the daemon runs, SQLite's -wal and -shm exist: owner-only too.
        running = {path.name: mode(path) for path in files_under(meterfox_home)}
        assert {"meterfox.db-wal", "meterfox.db-shm"} <= set(running)
        assert set(running.values()) == {0o600}, running
    finally:
        await proxy.close_clients()
        await proxy_server.close()
    cli("keys", "list")
    cli("keys", "providers")

    files = files_under(meterfox_home)
    assert any(f.name == "meterfox.db" for f in files)
    if store == "encrypted_file_store":
        assert any(f.name == "provider-keys.enc" for f in files)
    secrets_ = [OPENAI_KEY, CALLERS_OWN_KEY, live, doomed, "mf-unknown-TESTONLY-key"]
    needles = [form for secret in secrets_ for form in forms(secret)]
    needles += [PROMPT.encode(), b"purple elephant", ANSWER.encode()]
    for path in files:
        data = path.read_bytes()
        found = [needle for needle in needles if needle in data]
        assert found == [], f"{path.name} holds {found}"
        assert mode(path) == 0o600, f"{path} is {mode(path):o}"
    for directory in dirs_under(meterfox_home):
        assert mode(directory) == 0o700, f"{directory} is {mode(directory):o}"
