"""`meterfox keys set` and `serve` at a real terminal (a pseudo-terminal): hidden prompts, nothing
echoed; `serve` asks before it listens."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import pytest

from meterfox_cli.keys.provider_keys import EncryptedFileStore
from meterfox_cli.paths import resolve_paths
from tests.cli.conftest import free_port, meterfox_command, meterfox_env, run_meterfox
from tests.conftest import NULL_KEYRING
from tests.fakes.upstream import Reply

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")

SECRET = "sk-proj-TESTONLY-typed-at-a-tty"
PASSPHRASE = "typed passphrase 123"


class Terminal:
    """`meterfox` on a pseudo-terminal: read what it shows, type answers."""

    def __init__(self, *args: str) -> None:
        """Run `meterfox ARGS` with the test's environment."""
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            meterfox_command(*args),
            env=meterfox_env(),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
            start_new_session=True,
        )
        os.close(slave)
        self.shown = b""

    def expect(self, text: bytes, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.shown:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {text!r}; saw {self.shown!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"the terminal closed before {text!r}; saw {self.shown!r}"
                self.shown += chunk

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        while select.select([self.master], [], [], 0.1)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.shown += chunk
        os.close(self.master)
        return code


def test_set_at_a_terminal_hides_the_key_and_asks_for_a_new_passphrase_twice(monkeypatch):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NULL_KEYRING)
    terminal = Terminal("keys", "set", "openai")
    terminal.expect(b"openai API key:")
    terminal.type(SECRET)
    terminal.expect(b"(new):")
    terminal.type(PASSPHRASE)
    terminal.expect(b"confirmation:")
    terminal.type(PASSPHRASE)
    assert terminal.finish() == 0, terminal.shown
    assert b"Stored the openai key in the encrypted file" in terminal.shown
    assert SECRET.encode() not in terminal.shown and PASSPHRASE.encode() not in terminal.shown
    store = EncryptedFileStore(
        resolve_paths().data_dir / "provider-keys.enc", lambda new: PASSPHRASE
    )
    assert store.get("openai") == SECRET


async def test_serve_at_a_terminal_asks_for_the_passphrase_before_it_listens(
    upstream_server, monkeypatch
):
    """The passphrase is asked for first (the key file is then opened beside the start-up):
    nothing listens until it is typed, and a proxy key's first request uses the key it opens."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NULL_KEYRING)
    fake, server = upstream_server
    fake.reply = Reply(json_body={"id": "c1", "model": "gpt-4o", "usage": {"prompt_tokens": 1}})
    typed = {"METERFOX_PASSPHRASE": PASSPHRASE}
    assert (await run_meterfox("keys", "set", "openai", input=SECRET, env=typed)).returncode == 0
    created = await run_meterfox("keys", "create", "app", "--provider", "openai", env=typed)
    proxy_key = created.stdout.split()[0]
    port = free_port()
    upstream = f"openai=http://127.0.0.1:{server.port}"
    terminal = Terminal("serve", "--port", str(port), "--upstream", upstream)
    try:
        await asyncio.to_thread(terminal.expect, b"Passphrase for the MeterFox key file:")
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0  # not listening while it asks
        terminal.type(PASSPHRASE)
        await asyncio.to_thread(terminal.expect, f"MeterFox http://127.0.0.1:{port} ".encode())
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"http://127.0.0.1:{port}/openai/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {proxy_key}"},
            ) as response:
                assert response.status == 200, await response.text()
    finally:
        terminal.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(terminal.finish) == 0, terminal.shown
    assert fake.received[-1].headers["Authorization"] == f"Bearer {SECRET}"
    assert PASSPHRASE.encode() not in terminal.shown and SECRET.encode() not in terminal.shown
