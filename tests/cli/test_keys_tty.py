"""`meterfox keys set` at a real terminal (a pseudo-terminal): hidden prompts, nothing echoed."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest

from meterfox_cli.keys.provider_keys import EncryptedFileStore
from meterfox_cli.paths import resolve_paths
from tests.cli.conftest import meterfox_command, meterfox_env
from tests.conftest import NULL_KEYRING

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
