"""Proxy keys: what apps hold instead of a provider key. Minted here, stored only as a hash.

A proxy key is `mf-` followed by 43 URL-safe characters: 32 bytes (256 bits) from `secrets`.
With that much randomness a plain SHA-256 is enough to store it (nothing to brute-force), and
lookups are one hash and one dict access. The database keeps the hash, the first characters
for display, and the key's rules (providers, expiry, budget, tags); never the key itself.

One live (unrevoked) key per name: `rotate` revokes the old one and mints a new one under the
same name, so reports by key keep one line per app.

Keys live in the ledger (store/backend.py): the local SQLite file, or the PostgreSQL server a
team shares, where every daemon sees the same keys. The functions here take either's
connection and run the same SQL on both.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from meterfox_cli.errors import KeyError_
from meterfox_cli.keys.budget import Budget, Period, parse_budget, period_start, spend_since
from meterfox_cli.money import from_nanousd
from meterfox_cli.proxy.auth import PROXY_KEY_PREFIX
from meterfox_cli.records import PASSTHROUGH_KEY
from meterfox_cli.store.dialect import LedgerConnection, dialect_of, write_transaction

if TYPE_CHECKING:
    from meterfox_cli.providers.registry import Registry

KEY_BYTES = 32
SHOWN_CHARS = 8  # after the `mf-`: 48 of 256 bits, enough to tell keys apart, useless to guess
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RESERVED_NAMES = frozenset({PASSTHROUGH_KEY})
_DURATION = re.compile(r"^(?P<count>[0-9]+)\s*(?P<unit>s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class KeyStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class ProxyKey:
    """One minted key's record. `providers` empty means every provider."""

    id: int
    name: str
    prefix: str
    key_hash: bytes
    providers: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    budget: Budget | None
    allow_unpriced: bool = False  # with a budget: let through requests nothing can price

    def status(self, now: float) -> KeyStatus:
        if self.revoked_at is not None:
            return KeyStatus.REVOKED
        if self.expires_at is not None and now >= self.expires_at:
            return KeyStatus.EXPIRED
        return KeyStatus.ACTIVE

    def allows(self, provider: str) -> bool:
        return not self.providers or provider in self.providers


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What `keys create` asks for."""

    name: str
    providers: tuple[str, ...] = ()
    expires_in_s: float | None = None
    budget: Budget | None = None
    tags: tuple[tuple[str, str], ...] = ()
    allow_unpriced: bool = False


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly minted key: `secret` exists only here, to be shown once."""

    key: ProxyKey
    secret: str


@dataclass(frozen=True, slots=True)
class KeyListing:
    """One line of `keys list`."""

    key: ProxyKey
    status: KeyStatus
    last_used: float | None
    spend_nanousd: int
    spend_period: Period


def key_spec(
    registry: Registry,
    name: str,
    *,
    providers: Iterable[str] = (),
    expires: str | None = None,
    budget: str | None = None,
    tags: Iterable[str] = (),
    allow_unpriced: bool = False,
) -> KeySpec:
    """A KeySpec from what people type (`keys create` and the dashboard's Keys page alike)."""
    return KeySpec(
        name=name,
        providers=resolve_providers(registry, providers),
        expires_in_s=parse_duration(expires) if expires else None,
        budget=parse_budget(budget) if budget else None,
        tags=parse_tags(tags),
        allow_unpriced=allow_unpriced,
    )


def mint_secret() -> str:
    return PROXY_KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def create_key(conn: LedgerConnection, spec: KeySpec, now: float | None = None) -> NewKey:
    """Mint a key under a name no live key has."""
    check_name(spec.name)
    now = time.time() if now is None else now
    with _writing_keys(conn):
        if _live_key(conn, spec.name) is not None:
            raise KeyError_(
                f"a live proxy key named {spec.name!r} exists: "
                f"`meterfox keys rotate {spec.name}` replaces it, or pick another name"
            )
        return _insert(conn, spec, now)


def revoke_key(conn: LedgerConnection, name: str, now: float | None = None) -> ProxyKey:
    """Revoke the live key of that name. A running daemon refuses it within a second."""
    now = time.time() if now is None else now
    with _writing_keys(conn):
        key = _require_live(conn, name)
        conn.execute("UPDATE proxy_keys SET revoked_at = ? WHERE id = ?", (now, key.id))
    return _by_id(conn, key.id)


def rotate_key(
    conn: LedgerConnection,
    name: str,
    expires_in_s: float | None = None,
    now: float | None = None,
) -> NewKey:
    """A new key with the old one's rules under the same name; the old one is revoked.

    The new key lives as long as the old one was meant to (its lifetime, from now) unless
    `expires_in_s` says otherwise. A revoked or expired key can be rotated back to life.
    """
    now = time.time() if now is None else now
    with _writing_keys(conn):
        old = _live_key(conn, name) or _latest(conn, name)
        if old is None:
            raise KeyError_(f"no proxy key named {name!r}: `meterfox keys list` shows them")
        if old.revoked_at is None:
            conn.execute("UPDATE proxy_keys SET revoked_at = ? WHERE id = ?", (now, old.id))
        lifetime = expires_in_s
        if lifetime is None and old.expires_at is not None:
            lifetime = old.expires_at - old.created_at
        spec = KeySpec(old.name, old.providers, lifetime, old.budget, old.tags, old.allow_unpriced)
        return _insert(conn, spec, now)


def set_budget(
    conn: LedgerConnection,
    name: str,
    budget: Budget | None,
    allow_unpriced: bool | None = None,
) -> ProxyKey:
    """Change (or with None, remove) the live key's budget, and whether it lets unpriced
    requests through (None: as it was); the daemon applies it within 1 s."""
    with _writing_keys(conn):
        key = _require_live(conn, name)
        allow = key.allow_unpriced if allow_unpriced is None else allow_unpriced
        conn.execute(
            "UPDATE proxy_keys SET budget_nanousd = ?, budget_period = ?, allow_unpriced = ? "
            "WHERE id = ?",
            (
                budget.nanousd if budget else None,
                str(budget.period) if budget else None,
                int(allow),
                key.id,
            ),
        )
    return _by_id(conn, key.id)


def key_version(conn: LedgerConnection) -> int:
    """The ledger's key version counter: bumped by a trigger on every change to a proxy or
    provider key, so one indexed read tells a watcher whether to read the keys again."""
    return conn.execute("SELECT version FROM key_state WHERE id = 1").fetchone()[0]


def all_keys(conn: LedgerConnection) -> list[ProxyKey]:
    """Every key ever minted, revoked ones included (the daemon names them when refusing)."""
    return [_key(row) for row in conn.execute(f"SELECT {_COLUMNS} FROM proxy_keys ORDER BY id")]


def list_keys(conn: LedgerConnection, now: float | None = None) -> list[KeyListing]:
    """The newest key of each name, with its last use and spend this period."""
    now = time.time() if now is None else now
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM proxy_keys WHERE id IN "
        "(SELECT MAX(id) FROM proxy_keys GROUP BY name)"
    ).fetchall()
    listings = []
    # Sorted here, by code point: a PostgreSQL collation would order names differently.
    for key in sorted(map(_key, rows), key=lambda key: key.name):
        period = key.budget.period if key.budget else Period.MONTH
        listings.append(
            KeyListing(
                key=key,
                status=key.status(now),
                last_used=last_used(conn, key.name),
                spend_nanousd=spend_since(conn, key.name, period_start(period, now)),
                spend_period=period,
            )
        )
    return listings


def listing_fields(item: KeyListing) -> dict[str, object]:
    """A listing as `keys list --format json` and the dashboard's API give it: the prefix only,
    never the key."""
    key = item.key
    return {
        "name": key.name,
        "prefix": key.prefix,
        "providers": list(key.providers),
        "tags": dict(key.tags),
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "last_used": item.last_used,
        "spend_usd": str(from_nanousd(item.spend_nanousd)),
        "spend_period": str(item.spend_period),
        "budget_usd": str(key.budget.usd) if key.budget else None,
        "budget_period": str(key.budget.period) if key.budget else None,
        "allow_unpriced": key.allow_unpriced,
        "status": str(item.status),
    }


def last_used(conn: LedgerConnection, name: str) -> float | None:
    row = conn.execute("SELECT MAX(ts) FROM requests WHERE key_name = ?", (name,)).fetchone()
    return row[0]


def check_name(name: str) -> None:
    if not _NAME.match(name) or name in _RESERVED_NAMES:
        raise KeyError_(
            f"cannot use {name!r} as a key name: use up to 64 letters, digits, '.', '_' or '-' "
            f"(not {PASSTHROUGH_KEY!r})"
        )


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `12h`, `30d`, `2w` → seconds."""
    match = _DURATION.match(text.strip().lower())
    if match is None or int(match.group("count")) == 0:
        raise KeyError_(f"cannot read duration {text!r}: write e.g. 30d, 12h or 2w")
    return int(match.group("count")) * _UNIT_SECONDS[match.group("unit")]


def parse_tags(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """`--tag team=search` → (("team", "search"),). Names are lower-cased, like header tags."""
    tags: dict[str, str] = {}
    for value in values:
        name, sep, tag_value = value.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise KeyError_(f"cannot read tag {value!r}: write NAME=VALUE, e.g. team=search")
        tags[name] = tag_value.strip()
    return tuple(sorted(tags.items()))


def resolve_providers(registry: Registry, names: Iterable[str]) -> tuple[str, ...]:
    """Provider names (or aliases) → their canonical slugs, each known to the registry."""
    slugs = []
    for name in names:
        provider = registry.get(name.strip().lower())
        if provider is None:
            raise KeyError_(f"no provider named {name!r}: `meterfox providers` lists them")
        slugs.append(provider.slug)
    return tuple(sorted(set(slugs)))


_COLUMNS = (
    "id, name, prefix, key_hash, providers, tags, created_at, expires_at, revoked_at, "
    "budget_nanousd, budget_period, allow_unpriced"
)


def _key(row: tuple) -> ProxyKey:
    (id_, name, prefix, key_hash, providers, tags, created, expires, revoked, nano, period, lax) = (
        row
    )
    return ProxyKey(
        id=id_,
        name=name,
        prefix=prefix,
        key_hash=bytes(key_hash),
        providers=tuple(json.loads(providers)),
        tags=tuple((str(k), str(v)) for k, v in json.loads(tags)),
        created_at=created,
        expires_at=expires,
        revoked_at=revoked,
        budget=Budget(nano, Period(period)) if nano is not None and period else None,
        allow_unpriced=bool(lax),
    )


def _insert(conn: LedgerConnection, spec: KeySpec, now: float) -> NewKey:
    secret = mint_secret()
    expires = now + spec.expires_in_s if spec.expires_in_s is not None else None
    row = conn.execute(
        "INSERT INTO proxy_keys (name, prefix, key_hash, providers, tags, created_at, "
        "expires_at, budget_nanousd, budget_period, allow_unpriced) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            spec.name,
            secret[: len(PROXY_KEY_PREFIX) + SHOWN_CHARS],
            hash_secret(secret),
            json.dumps(list(spec.providers)),
            json.dumps([list(tag) for tag in spec.tags]),
            now,
            expires,
            spec.budget.nanousd if spec.budget else None,
            str(spec.budget.period) if spec.budget else None,
            int(spec.allow_unpriced),
        ),
    ).fetchone()
    return NewKey(_by_id(conn, row[0]), secret)


def _by_id(conn: LedgerConnection, key_id: int) -> ProxyKey:
    return _key(
        conn.execute(f"SELECT {_COLUMNS} FROM proxy_keys WHERE id = ?", (key_id,)).fetchone()
    )


@contextmanager
def _writing_keys(conn: LedgerConnection) -> Iterator[None]:
    """A write transaction in which no other writer of keys runs: the check that a name has no
    live key and the insert hold together on either store."""
    with write_transaction(conn):
        lock = dialect_of(conn).lock_table("proxy_keys")
        if lock is not None:
            conn.execute(lock)
        yield


def _live_key(conn: LedgerConnection, name: str) -> ProxyKey | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM proxy_keys WHERE name = ? AND revoked_at IS NULL", (name,)
    ).fetchone()
    return _key(row) if row else None


def _latest(conn: LedgerConnection, name: str) -> ProxyKey | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM proxy_keys WHERE name = ? ORDER BY id DESC LIMIT 1", (name,)
    ).fetchone()
    return _key(row) if row else None


def _require_live(conn: LedgerConnection, name: str) -> ProxyKey:
    key = _live_key(conn, name)
    if key is None:
        raise KeyError_(f"no live proxy key named {name!r}: `meterfox keys list` shows them")
    return key
