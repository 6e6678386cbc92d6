"""METERFOX_PASSPHRASE_FILE: the passphrase of the encrypted key file read from a file only its
owner may read (how a service started at login unlocks the keys); METERFOX_PASSPHRASE wins."""

from __future__ import annotations

import re

import pytest

from meterfox_cli.errors import KeyError_
from meterfox_cli.keys.provider_keys import EncryptedFileStore, env_passphrase
from tests.keys.test_provider_keys import FAST_N


def owner_only(path, text: str):
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_the_first_line_of_an_owner_only_file_is_the_passphrase(tmp_path):
    secret = owner_only(tmp_path / "pass", "correct horse battery staple\n")
    source = env_passphrase({"METERFOX_PASSPHRASE_FILE": str(secret)})
    assert source(False) == "correct horse battery staple"
    both = {"METERFOX_PASSPHRASE": "from the variable", "METERFOX_PASSPHRASE_FILE": str(secret)}
    assert env_passphrase(both)(False) == "from the variable"


@pytest.mark.parametrize(
    ("mode", "text", "says"),
    [
        (0o640, "a passphrase\n", "is readable by others (mode 640): chmod 600"),
        (0o600, "\n", "is empty: put the passphrase in it"),
    ],
)
def test_a_loose_or_empty_file_is_refused(tmp_path, mode, text, says):
    secret = tmp_path / "pass"
    secret.write_text(text)
    secret.chmod(mode)
    with pytest.raises(KeyError_, match=re.escape(says)):
        env_passphrase({"METERFOX_PASSPHRASE_FILE": str(secret)})(False)


def test_a_missing_file_and_no_passphrase_at_all_are_one_line_errors(tmp_path):
    missing = {"METERFOX_PASSPHRASE_FILE": str(tmp_path / "nope")}
    with pytest.raises(KeyError_, match=r"cannot read .*nope: No such file"):
        env_passphrase(missing)(False)
    with pytest.raises(KeyError_, match="set METERFOX_PASSPHRASE or METERFOX_PASSPHRASE_FILE"):
        env_passphrase({})(False)


def test_the_file_opens_the_key_file_a_typed_passphrase_made(tmp_path):
    path = tmp_path / "provider-keys.enc"
    typed = EncryptedFileStore(path, lambda new: "correct horse battery staple", scrypt_n=FAST_N)
    typed.set("openai", "sk-test-0123456789")
    secret = owner_only(tmp_path / "pass", "correct horse battery staple\n")
    passphrase = env_passphrase({"METERFOX_PASSPHRASE_FILE": str(secret)})
    reopened = EncryptedFileStore(path, passphrase, scrypt_n=FAST_N)
    assert reopened.get("openai") == "sk-test-0123456789"
