"""Moving a ledger from one store to another (`meterfox db copy`): every request with its tags,
in batches, idempotent on the record id (copying twice leaves one copy of each record), through
the writer's own insert (store/rows.insert_rows), so the target's rollups follow. And every
proxy key with its budget and revocation, idempotent on the key's hash (each store numbers its
keys itself): a key the target already holds is kept as the target has it, and a live key
under a name the target gives another live key is refused before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

from meterfox_cli.errors import StoreError
from meterfox_cli.store.backend import Ledger, schema_problem
from meterfox_cli.store.dialect import LedgerConnection
from meterfox_cli.store.rows import REQUEST_COLUMNS, TAG_COLUMNS, insert_rows

BATCH = 1000  # records per read and per target transaction (their ids are one IN list)


# The proxy keys' columns but the id (the same on both stores: migrations 003/005, pg 006);
# `key_hash` is the key's identity, the SHA-256 of a secret neither store holds.
KEY_COLUMNS = (
    "key_hash", "name", "prefix", "providers", "tags", "created_at", "expires_at",
    "revoked_at", "budget_nanousd", "budget_period", "allow_unpriced",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Copied:
    read: int  # records in the source
    added: int  # records the target did not have
    keys_read: int = 0  # proxy keys in the source, revoked ones included
    keys_added: int = 0  # keys the target did not have
    keys_kept: tuple[str, ...] = ()  # names of keys the target holds changed: kept as they are


def copy_ledger(source: Ledger, target: Ledger, batch: int = BATCH) -> Copied:
    """Copy every record of `source` into `target` (migrated first: a blank one gets the
    schema; one ahead of this version is refused)."""
    _, unknown = target.pending()
    if unknown:
        raise StoreError(schema_problem(target.describe(), [], unknown))
    target.migrate()
    reader = source.read_connection()  # keys may be there before any record
    if reader is None:
        return Copied(0, 0)
    writer = target.open_writer(5000)
    try:
        keys = _plan_keys(_keys(reader), _keys(writer))
        before = _count(writer)
        read = 0
        for requests, tags in _batches(reader, batch):
            with target.transaction(writer):
                insert_rows(
                    writer, [dict(zip(REQUEST_COLUMNS, row, strict=True)) for row in requests], tags
                )
            read += len(requests)
        with target.transaction(writer):
            writer.executemany(
                f"INSERT INTO proxy_keys ({', '.join(KEY_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(KEY_COLUMNS))})",
                keys.new,
            )
        return Copied(read, _count(writer) - before, keys.read, len(keys.new), keys.kept)
    finally:
        reader.close()
        writer.close()


@dataclass(frozen=True, slots=True)
class _KeyPlan:
    read: int
    new: list[tuple]  # rows to insert, in the source's order (a rotated name's newest last)
    kept: tuple[str, ...]


def _keys(conn: LedgerConnection) -> list[tuple]:
    """Every proxy key's row (KEY_COLUMNS), oldest first, the hash as bytes on both stores."""
    rows = conn.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM proxy_keys ORDER BY id")
    return [(bytes(row[0]), *row[1:]) for row in rows]


def _plan_keys(source: list[tuple], target: list[tuple]) -> _KeyPlan:
    """Which source keys the target lacks; StoreError when one of them is live under a name
    a different live key of the target has (one live key per name: one would shadow the other)."""
    held = {row[0]: row for row in target}
    live_names = {row[1] for row in target if row[7] is None}
    new = [row for row in source if row[0] not in held]
    for row in new:
        if row[7] is None and row[1] in live_names:
            raise StoreError(
                f"the target already has a live proxy key named {row[1]!r} (a different key): "
                "revoke or rotate one of them, then copy again (nothing was copied)"
            )
    kept = sorted({row[1] for row in source if row[0] in held and held[row[0]] != row})
    return _KeyPlan(len(source), new, tuple(kept))


def _batches(conn: LedgerConnection, size: int):
    """(request rows, their tag rows), `size` requests at a time in recording order (keyset
    paging on the rowid, the same on both backends)."""
    columns = ", ".join(REQUEST_COLUMNS)
    last = -1
    while True:
        rows = conn.execute(
            f"SELECT rowid, {columns} FROM requests WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (last, size),
        ).fetchall()
        if not rows:
            return
        last = rows[-1][0]
        requests = [tuple(row[1:]) for row in rows]
        ids = [row[0] for row in requests]
        marks = ", ".join("?" * len(ids))
        tags = conn.execute(
            f"SELECT {', '.join(TAG_COLUMNS)} FROM request_tags WHERE request_id IN ({marks})",
            ids,
        ).fetchall()
        yield requests, [tuple(tag) for tag in tags]


def _count(conn: LedgerConnection) -> int:
    return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])
