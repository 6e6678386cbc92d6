"""Provider keys: which store is chosen and why, and what each store keeps at rest.

Real keyring backends only: keyrings.alt's file backend and keyring's null backend, selected the
way users select them (PYTHON_KEYRING_BACKEND, keyring's config file), in the test's own dirs.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path

import keyring.backend
import pytest
from keyring.backends import fail
from keyrings.alt.file import PlaintextKeyring

from meterfox_cli.errors import KeyError_
from meterfox_cli.keys.provider_keys import (
    KEY_FILE_NAME,
    EncryptedFileStore,
    KeyringStore,
    ProviderKeys,
    _detected,
    choose_store,
    env_passphrase,
    stored_keys,
)
from meterfox_cli.paths import resolve_paths
from tests.conftest import NULL_KEYRING, PLAINTEXT_KEYRING, TEST_PASSPHRASE
from tests.keys.support import mode

OPENAI_KEY = "sk-proj-TESTONLY-0123456789abcdef"
FAST_N = 2**14  # scrypt cost for tests that open many files; real files use 2**17
SLOW_N = 2**16  # long enough (a quarter-second) to do something while it runs


def data_dir() -> Path:
    paths = resolve_paths()
    paths.ensure()
    return paths.data_dir


def key_state_version(conn) -> int:
    return conn.execute("SELECT version FROM key_state").fetchone()[0]


# --- choosing ---------------------------------------------------------------------------------


def test_python_keyring_backend_is_honoured(plaintext_keyring):
    choice = choose_store(data_dir(), env_passphrase())
    assert isinstance(choice.store, KeyringStore)
    assert choice.store.id == f"keyring:{PLAINTEXT_KEYRING}"
    assert f"PYTHON_KEYRING_BACKEND={PLAINTEXT_KEYRING}" in choice.reason
    assert "clear text" in (choice.warning or "")


def test_a_keyring_that_stores_nothing_selects_the_encrypted_file(encrypted_file_store):
    choice = choose_store(data_dir(), env_passphrase())
    assert isinstance(choice.store, EncryptedFileStore)
    assert NULL_KEYRING in choice.reason and "encrypted file" in choice.reason
    assert choice.store.path == data_dir() / KEY_FILE_NAME


def test_keyrings_config_file_is_honoured(tmp_path):
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "python_keyring" / "keyringrc.cfg"
    config.parent.mkdir(parents=True)
    config.write_text(f"[backend]\ndefault-keyring={PLAINTEXT_KEYRING}\n")
    choice = choose_store(data_dir(), env_passphrase())
    assert choice.store.id == f"keyring:{PLAINTEXT_KEYRING}"
    assert str(config) in choice.reason


def test_an_unloadable_backend_name_says_what_to_fix(monkeypatch):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.NoSuch.Keyring")
    with pytest.raises(KeyError_, match="fix the class name or unset it"):
        choose_store(data_dir(), env_passphrase())


@pytest.mark.parametrize(
    "backends", [[], [fail.Keyring()], [PlaintextKeyring()]], ids=["none", "fail", "plaintext"]
)
def test_without_a_recommended_keyring_the_file_is_used(backends):
    """Headless Linux and CI: keyring finds nothing, or only a backend it does not recommend
    (an auto-detected plaintext file is no place for a provider key)."""
    file_store = EncryptedFileStore(data_dir() / KEY_FILE_NAME, env_passphrase())
    choice = _detected(backends, file_store)
    assert choice.store is file_store
    assert "encrypted file" in choice.reason


def test_auto_detection_here_matches_keyrings_own_recommendation():
    best = max(keyring.backend.get_all_keyring(), key=keyring.backend.by_priority, default=None)
    choice = choose_store(data_dir(), env_passphrase())
    expect_file = best is None or best.priority < 1
    assert isinstance(choice.store, EncryptedFileStore) is expect_file


# --- the keyring store ------------------------------------------------------------------------


def test_keyring_store_round_trip_lands_in_the_keyring_not_in_meterfox_home(
    plaintext_keyring, conn, meterfox_home
):
    keys = ProviderKeys(conn, choose_store(data_dir(), env_passphrase()))
    before = key_state_version(conn)
    keys.set("openai", f"  {OPENAI_KEY}\n")
    [entry] = stored_keys(conn)
    assert (entry.provider, entry.store) == ("openai", f"keyring:{PLAINTEXT_KEYRING}")
    assert key_state_version(conn) > before
    assert keys.read(entry) == OPENAI_KEY
    # In keyring's own storage (service "meterfox"), outside MeterFox's home.
    assert PlaintextKeyring().get_password("meterfox", "openai") == OPENAI_KEY
    assert not Path(PlaintextKeyring().file_path).is_relative_to(meterfox_home)
    assert keys.unset("openai") and stored_keys(conn) == []
    assert PlaintextKeyring().get_password("meterfox", "openai") is None
    assert not keys.unset("openai")


# --- the encrypted file -----------------------------------------------------------------------


def file_store(passphrase: str = TEST_PASSPHRASE) -> EncryptedFileStore:
    return EncryptedFileStore(data_dir() / KEY_FILE_NAME, lambda new: passphrase, scrypt_n=FAST_N)


def test_file_store_keeps_keys_encrypted_and_owner_only():
    store = file_store()
    store.set("openai", OPENAI_KEY)
    store.set("groq", "gsk_TESTONLY")
    raw = store.path.read_bytes()
    assert OPENAI_KEY.encode() not in raw and b"openai" not in raw and b"groq" not in raw
    assert mode(store.path) == 0o600 and mode(store.path.parent) == 0o700
    header = json.loads(raw)["header"]
    assert header["cipher"] == "AES-256-GCM"
    assert header["kdf"]["name"] == "scrypt" and header["kdf"]["n"] == FAST_N
    reopened = file_store()
    assert reopened.get("openai") == OPENAI_KEY and reopened.providers() == ["groq", "openai"]
    reopened.delete("groq")
    assert file_store().providers() == ["openai"]


def test_each_write_uses_a_fresh_nonce():
    store = file_store()
    store.set("openai", OPENAI_KEY)
    first = json.loads(store.path.read_bytes())
    store.set("openai", OPENAI_KEY)
    second = json.loads(store.path.read_bytes())
    assert first["header"] == second["header"]
    assert first["nonce"] != second["nonce"] and first["ciphertext"] != second["ciphertext"]


def test_a_wrong_passphrase_is_refused_with_what_to_do():
    file_store().set("openai", OPENAI_KEY)
    with pytest.raises(KeyError_, match=r"passphrase does not open .* check METERFOX_PASSPHRASE"):
        file_store("not the passphrase").get("openai")


def test_a_read_while_the_file_opens_in_the_background_waits_for_that_derivation():
    """`unlock_soon` (serve's start): the passphrase is asked for at the call, in the caller's
    thread; scrypt runs in another; a key read meanwhile waits for that derivation instead of
    running its own (this thread's CPU time says which)."""
    path = data_dir() / KEY_FILE_NAME
    EncryptedFileStore(path, lambda new: TEST_PASSPHRASE, scrypt_n=SLOW_N).set("openai", OPENAI_KEY)
    asked_in: list[threading.Thread] = []

    def passphrase(new: bool) -> str:
        asked_in.append(threading.current_thread())
        return TEST_PASSPHRASE

    store = EncryptedFileStore(path, env_passphrase({}))  # its own source would refuse
    opening = store.unlock_soon(passphrase)
    assert asked_in == [threading.current_thread()]
    deadline = time.monotonic() + 10
    while not store._deriving.locked():  # the thread is deriving (a quarter-second at least)
        assert not opening.done() and time.monotonic() < deadline
        time.sleep(0.001)
    began = time.thread_time()
    assert store.get("openai") == OPENAI_KEY
    assert time.thread_time() - began < 0.05  # deriving here would cost ~0.2 s of CPU
    assert opening.result(timeout=30) is None


def test_opening_in_the_background_holds_what_went_wrong():
    file_store().set("openai", OPENAI_KEY)
    wrong = file_store().unlock_soon(lambda new: "not the passphrase")
    with pytest.raises(KeyError_, match="passphrase does not open"):
        wrong.result(timeout=30)
    missing = file_store().unlock_soon(env_passphrase({}))
    assert missing.done()  # no passphrase: nothing to derive, no thread
    with pytest.raises(KeyError_, match="set METERFOX_PASSPHRASE"):
        missing.result()


def test_no_passphrase_says_to_set_one(encrypted_file_store, monkeypatch):
    monkeypatch.delenv("METERFOX_PASSPHRASE")
    store = choose_store(data_dir(), env_passphrase()).store
    with pytest.raises(KeyError_, match="set METERFOX_PASSPHRASE"):
        store.set("openai", OPENAI_KEY)


def test_a_new_file_needs_a_passphrase_of_some_length():
    with pytest.raises(KeyError_, match="at least 8 characters"):
        file_store("short").set("openai", OPENAI_KEY)


@pytest.mark.parametrize("part", ["header", "ciphertext"])
def test_tampering_is_detected(part):
    store = file_store()
    store.set("openai", OPENAI_KEY)
    document = json.loads(store.path.read_bytes())
    if part == "header":
        document["header"]["kdf"]["p"] = 2
    else:
        blob = bytearray(base64.b64decode(document["ciphertext"]))
        blob[0] ^= 1
        document["ciphertext"] = base64.b64encode(bytes(blob)).decode()
    store.path.write_text(json.dumps(document))
    with pytest.raises(KeyError_):
        file_store().get("openai")


def test_a_damaged_file_says_to_move_it_aside():
    store = file_store()
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text("not json")
    with pytest.raises(KeyError_, match="move it aside"):
        store.get("openai")


def test_concurrent_writers_lose_no_key():
    """Two `keys set` at once (separate store objects, separate locks): both keys survive."""
    file_store().set("seed", "x-seed-key")
    errors: list[BaseException] = []

    def put(provider: str) -> None:
        try:
            file_store().set(provider, f"key-for-{provider}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(f"p{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert file_store().providers() == sorted(["seed", *(f"p{i}" for i in range(6))])


def test_file_store_through_provider_keys(encrypted_file_store, conn):
    keys = ProviderKeys(conn, choose_store(data_dir(), env_passphrase()))
    keys.set("openai", OPENAI_KEY)
    [entry] = stored_keys(conn)
    assert entry.store == "file"
    assert keys.read(entry) == OPENAI_KEY


def test_moving_stores_deletes_the_key_from_the_old_one(encrypted_file_store, conn, monkeypatch):
    ProviderKeys(conn, choose_store(data_dir(), env_passphrase())).set("openai", OPENAI_KEY)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", PLAINTEXT_KEYRING)
    keys = ProviderKeys(conn, choose_store(data_dir(), env_passphrase()))
    keys.set("openai", OPENAI_KEY + "-new")
    [entry] = stored_keys(conn)
    assert entry.store == f"keyring:{PLAINTEXT_KEYRING}"
    assert keys.choice.file_store.providers() == []


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("", "no key given"),
        ("   \n", "no key given"),
        ("sk-a sk-b", "whitespace"),
        ("line1\nline2", "whitespace"),
        ("mf-abcdef", "proxy key"),
    ],
)
def test_implausible_provider_keys_are_refused(plaintext_keyring, conn, secret, message):
    keys = ProviderKeys(conn, choose_store(data_dir(), env_passphrase()))
    with pytest.raises(KeyError_, match=message):
        keys.set("openai", secret)
    assert stored_keys(conn) == []
