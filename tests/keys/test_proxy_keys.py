"""Proxy keys: minted with enough randomness, stored only as a hash, revoked and rotated."""

from __future__ import annotations

import base64
import time

import pytest

from meterfox_cli.errors import KeyError_
from meterfox_cli.keys.budget import Budget, Period
from meterfox_cli.keys.proxy_keys import (
    KeySpec,
    KeyStatus,
    all_keys,
    create_key,
    hash_secret,
    list_keys,
    mint_secret,
    parse_duration,
    parse_tags,
    resolve_providers,
    revoke_key,
    rotate_key,
    set_budget,
)
from meterfox_cli.paths import resolve_paths
from meterfox_cli.providers.registry import build_registry
from tests.keys.support import add_request


def test_a_minted_key_is_mf_and_256_random_bits():
    secrets_ = {mint_secret() for _ in range(1000)}
    assert len(secrets_) == 1000
    for secret in secrets_:
        assert secret.startswith("mf-")
        raw = base64.urlsafe_b64decode(secret[3:] + "=")
        assert len(raw) * 8 >= 128 and len(raw) == 32


def test_only_a_hash_of_the_key_is_stored(conn):
    new = create_key(conn, KeySpec("app"))
    conn.close()
    db = resolve_paths().database
    stored = b"".join(p.read_bytes() for p in db.parent.glob("meterfox.db*"))
    assert new.secret.encode() not in stored
    assert new.secret[3:].encode() not in stored
    assert hash_secret(new.secret) in stored
    assert new.key.prefix == new.secret[:11] and len(new.key.prefix) < len(new.secret) // 3


def test_a_name_has_one_live_key(conn):
    create_key(conn, KeySpec("app"))
    with pytest.raises(KeyError_, match="keys rotate app"):
        create_key(conn, KeySpec("app"))
    revoke_key(conn, "app")
    create_key(conn, KeySpec("app"))
    assert [k.status(time.time()) for k in all_keys(conn)] == [
        KeyStatus.REVOKED,
        KeyStatus.ACTIVE,
    ]


def test_status_is_active_then_expired(conn):
    now = 1_800_000_000.0
    key = create_key(conn, KeySpec("app", expires_in_s=3600), now=now).key
    assert key.status(now + 3599) is KeyStatus.ACTIVE
    assert key.status(now + 3600) is KeyStatus.EXPIRED


def test_revoking_a_key_that_is_not_live_says_where_to_look(conn):
    with pytest.raises(KeyError_, match="keys list"):
        revoke_key(conn, "nobody")


def test_rotate_mints_a_new_key_with_the_same_rules_and_revokes_the_old(conn):
    spec = KeySpec(
        "app",
        providers=("openai",),
        expires_in_s=86400,
        budget=Budget(5_000_000_000, Period.WEEK),
        tags=(("team", "search"),),
    )
    old = create_key(conn, spec, now=1000.0)
    new = rotate_key(conn, "app", now=2000.0)
    assert new.secret != old.secret
    keys = {k.id: k for k in all_keys(conn)}
    assert keys[old.key.id].revoked_at == 2000.0
    fresh = keys[new.key.id]
    assert fresh.revoked_at is None and fresh.name == "app"
    assert (fresh.providers, fresh.budget, fresh.tags) == (spec.providers, spec.budget, spec.tags)
    assert fresh.expires_at == 2000.0 + 86400


def test_a_revoked_key_can_be_rotated_back(conn):
    create_key(conn, KeySpec("app"))
    revoke_key(conn, "app")
    new = rotate_key(conn, "app")
    assert new.key.status(time.time()) is KeyStatus.ACTIVE


def test_list_shows_the_newest_key_per_name_with_spend_and_last_use(conn):
    now = time.time()
    create_key(conn, KeySpec("app", budget=Budget(10**9, Period.DAY)))
    rotate_key(conn, "app")
    create_key(conn, KeySpec("bot"))
    add_request(conn, "app", 250_000_000, now - 2)
    add_request(conn, "app", 250_000_000, now - 1)
    listings = {item.key.name: item for item in list_keys(conn)}
    assert set(listings) == {"app", "bot"}
    app = listings["app"]
    assert app.status is KeyStatus.ACTIVE
    assert app.spend_nanousd == 500_000_000 and app.spend_period is Period.DAY
    assert app.last_used == pytest.approx(now - 1)
    assert listings["bot"].last_used is None and listings["bot"].spend_period is Period.MONTH


def test_budget_can_be_changed_and_removed(conn):
    create_key(conn, KeySpec("app"))
    assert set_budget(conn, "app", Budget(1, Period.DAY)).budget == Budget(1, Period.DAY)
    assert set_budget(conn, "app", None).budget is None


@pytest.mark.parametrize("name", ["", "-x", "a b", "passthrough", "x" * 65, "näme", "a/b"])
def test_names_are_plain(conn, name):
    with pytest.raises(KeyError_, match="key name"):
        create_key(conn, KeySpec(name))


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("2w", 1209600), ("90s", 90)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "0d", "d", "1y", "-1d"])
def test_unreadable_durations(text):
    with pytest.raises(KeyError_, match="30d"):
        parse_duration(text)


def test_tags_and_providers_are_normalised():
    assert parse_tags(["Team=search", "env = prod", "team=ads"]) == (
        ("env", "prod"),
        ("team", "ads"),
    )
    with pytest.raises(KeyError_, match="NAME=VALUE"):
        parse_tags(["oops"])
    registry = build_registry()
    assert resolve_providers(registry, ["OpenAI", "groq", "openai"]) == ("groq", "openai")
    with pytest.raises(KeyError_, match="meterfox providers"):
        resolve_providers(registry, ["nope"])
