"""`meterfox keys …` and `meterfox doctor`, through click's runner against a temp home."""

from __future__ import annotations

import json
import os

import click
import pytest
from click.testing import CliRunner, Result

from meterfox_cli.cli import main
from meterfox_cli.cli.keys_cmd import SectionedGroup
from meterfox_cli.keys.proxy_keys import all_keys, hash_secret
from meterfox_cli.paths import resolve_paths
from meterfox_cli.store.db import connect
from tests.conftest import NULL_KEYRING, PLAINTEXT_KEYRING

OPENAI_KEY = "sk-proj-TESTONLY-cli-41c0"


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def ok(*args: str, input: str | None = None) -> Result:
    result = run(*args, input=input)
    assert result.exit_code == 0, result.output
    return result


def fails(*args: str, input: str | None = None, code: int = 2) -> str:
    """The one-line error a failing command prints; it must say what to do next."""
    result = run(*args, input=input)
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meterfox: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_set_reads_the_key_from_stdin_and_providers_never_shows_it(plaintext_keyring):
    result = ok("keys", "set", "OpenAI", input=OPENAI_KEY + "\n")
    assert f"OS keyring ({PLAINTEXT_KEYRING})" in result.stdout
    assert OPENAI_KEY not in result.output
    listed = ok("keys", "providers")
    assert listed.stdout.startswith("openai ") and OPENAI_KEY not in listed.output
    ok("keys", "unset", "openai")
    assert "No provider keys stored" in ok("keys", "providers").stdout
    assert "no openai key is stored" in fails("keys", "unset", "openai")


@pytest.mark.parametrize(
    ("args", "stdin", "words"),
    [
        (("keys", "set", "nope"), "x", "meterfox providers"),
        (("keys", "set", "openai"), "mf-abc", "not a openai key"),
        (("keys", "set", "openai"), "", "pipe it in"),
        (("keys", "create", "app", "--budget", "lots"), None, "25/month"),
        (("keys", "create", "app", "--expires", "soon"), None, "30d"),
        (("keys", "create", "app", "--provider", "nope"), None, "meterfox providers"),
        (("keys", "create", "app", "--tag", "oops"), None, "NAME=VALUE"),
        (("keys", "create", "bad name"), None, "letters, digits"),
        (("keys", "revoke", "ghost"), None, "keys list"),
        (("keys", "rotate", "ghost"), None, "keys list"),
        (("keys", "budget", "ghost", "5/day"), None, "keys list"),
    ],
)
def test_every_failure_says_what_to_do_next(plaintext_keyring, args, stdin, words):
    assert words in fails(*args, input=stdin)


def test_without_a_keyring_or_passphrase_set_says_how_to_give_one(monkeypatch):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NULL_KEYRING)
    assert "set METERFOX_PASSPHRASE" in fails("keys", "set", "openai", input=OPENAI_KEY)


def test_set_without_a_keyring_uses_the_encrypted_file(encrypted_file_store):
    result = ok("keys", "set", "openai", input=OPENAI_KEY)
    assert "encrypted file" in result.stdout
    path = resolve_paths().data_dir / "provider-keys.enc"
    assert path.exists() and OPENAI_KEY.encode() not in path.read_bytes()


def test_create_prints_the_key_once_and_list_never_does(plaintext_keyring):
    result = ok(
        "keys", "create", "web", "--provider", "openai", "--budget", "25/month", "--tag", "t=1"
    )
    secret = result.stdout.strip()
    assert result.stdout == secret + "\n" and secret.startswith("mf-")
    assert "shown only this once" in result.stderr
    conn = connect(resolve_paths().database)
    [key] = all_keys(conn)
    conn.close()
    assert key.key_hash == hash_secret(secret) and key.tags == (("t", "1"),)
    table = ok("keys", "list").stdout
    assert "web" in table and key.prefix in table and "$25.00/month" in table
    assert secret not in table and secret[11:] not in table
    [row] = json.loads(ok("keys", "list", "--format", "json").stdout)
    assert row["status"] == "active" and row["prefix"] == key.prefix
    assert row["providers"] == ["openai"] and row["budget_usd"] == "25.000000000"
    assert secret not in json.dumps(row)


def test_revoke_rotate_and_budget(plaintext_keyring):
    first = ok("keys", "create", "bot", "--expires", "7d").stdout.strip()
    ok("keys", "revoke", "bot")
    [row] = json.loads(ok("keys", "list", "--format", "json").stdout)
    assert row["status"] == "revoked"
    second = ok("keys", "rotate", "bot").stdout.strip()
    assert second.startswith("mf-") and second != first
    [row] = json.loads(ok("keys", "list", "--format", "json").stdout)
    assert row["status"] == "active" and row["expires_at"] is not None
    assert "budget $3.00/day" in ok("keys", "budget", "bot", "3/day").stdout
    assert "budget none" in ok("keys", "budget", "bot", "none").stdout


def test_a_budgeted_key_refuses_unpriced_requests_unless_told_otherwise(plaintext_keyring):
    created = ok("keys", "create", "strict", "--budget", "2/day")
    assert "unpriced requests refused" in created.stderr
    created = ok("keys", "create", "lax", "--budget", "2/day", "--allow-unpriced")
    assert "unpriced requests allowed" in created.stderr
    rows = {r["name"]: r for r in json.loads(ok("keys", "list", "--format", "json").stdout)}
    assert (rows["strict"]["allow_unpriced"], rows["lax"]["allow_unpriced"]) == (False, True)
    assert "allowed" in ok("keys", "budget", "strict", "3/day", "--allow-unpriced").stdout
    assert "allowed" in ok("keys", "budget", "strict", "4/day").stdout  # kept as it was
    assert "unpriced requests allowed" in ok("keys", "rotate", "strict").stderr  # kept
    assert "refused" in ok("keys", "budget", "strict", "4/day", "--refuse-unpriced").stdout


def test_doctor_names_the_keyring_and_why(plaintext_keyring):
    ok("keys", "set", "openai", input=OPENAI_KEY)
    out = ok("doctor").stdout
    assert f"PYTHON_KEYRING_BACKEND={PLAINTEXT_KEYRING}" in out
    assert "clear text" in out  # an explicitly chosen plaintext keyring is flagged
    assert "meterfox.db: ok" in out and "stored: openai" in out
    assert OPENAI_KEY not in out


def test_doctor_without_a_keyring_explains_the_encrypted_file(encrypted_file_store):
    ok("keys", "set", "openai", input=OPENAI_KEY)
    out = ok("doctor").stdout
    assert "encrypted file" in out and NULL_KEYRING in out
    assert "opens with METERFOX_PASSPHRASE: 1 keys" in out


def test_doctor_fails_on_a_wrong_passphrase_and_flags_loose_permissions(
    encrypted_file_store, monkeypatch
):
    ok("keys", "set", "openai", input=OPENAI_KEY)
    os.chmod(resolve_paths().database, 0o644)
    monkeypatch.setenv("METERFOX_PASSPHRASE", "a different passphrase")
    result = run("doctor")
    assert result.exit_code == 1
    assert "passphrase does not open" in result.stdout
    assert "readable by others (mode 644)" in result.stdout and "chmod 600" in result.stdout


def test_doctor_fails_on_an_unloadable_backend(monkeypatch):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "no.such.Backend")
    result = run("doctor")
    assert result.exit_code == 1 and "fix the class name or unset it" in result.stdout


# --- the help: two kinds of key, told apart --------------------------------------------------


def help_sections(text: str) -> dict[str, list[str]]:
    """A `--help` page as {heading: the names its entries start with}, in the order shown."""
    sections: dict[str, list[str]] = {}
    entries = None
    for line in text.splitlines():
        if line[:1].strip() and line.endswith(":"):
            entries = sections.setdefault(line[:-1], [])
        elif entries is not None and line.startswith("  ") and line[2:3].strip():
            entries.append(line.split()[0])
    return sections


def test_keys_help_shows_provider_keys_and_proxy_keys_as_two_titled_sets():
    sections = help_sections(ok("keys", "--help").stdout)
    options, provider_keys, proxy_keys = sections  # and no catch-all "Commands" list
    assert options == "Options"
    assert provider_keys.startswith("Provider keys (")
    assert sections[provider_keys] == ["set", "unset", "providers"]
    assert proxy_keys.startswith("Proxy keys (")
    assert sections[proxy_keys] == ["create", "list", "revoke", "rotate", "budget"]


def test_a_command_added_without_a_section_is_still_listed():
    group = SectionedGroup("group")
    group.command("first", section="Sectioned")(lambda: None)
    group.add_command(click.Command("second", help="Added without a section."))
    shown = help_sections(CliRunner().invoke(group, ["--help"]).stdout)
    assert shown == {"Options": ["--help"], "Sectioned": ["first"], "Other commands": ["second"]}
