"""Moving a ledger from one store to another (`meterfox db copy`): every request with its tags,
in batches, idempotent on the record id (copying twice leaves one copy of each record); the
target's rollup follows through its own triggers."""

from __future__ import annotations

from dataclasses import dataclass

from meterfox_cli.errors import StoreError
from meterfox_cli.store.backend import Ledger, schema_problem
from meterfox_cli.store.dialect import LedgerConnection, dialect_of
from meterfox_cli.store.rows import REQUEST_COLUMNS, TAG_COLUMNS

BATCH = 1000  # records per read and per target transaction (their ids are one IN list)


@dataclass(frozen=True, slots=True)
class Copied:
    read: int  # records in the source
    added: int  # records the target did not have


def copy_ledger(source: Ledger, target: Ledger, batch: int = BATCH) -> Copied:
    """Copy every record of `source` into `target` (migrated first: a blank one gets the
    schema; one ahead of this version is refused)."""
    _, unknown = target.pending()
    if unknown:
        raise StoreError(schema_problem(target.describe(), [], unknown))
    target.migrate()
    reader = source.open_reader()
    if reader is None:
        return Copied(0, 0)
    writer = target.open_writer(5000)
    try:
        before = _count(writer)
        read = 0
        for requests, tags in _batches(reader, batch):
            with target.transaction(writer):
                _insert(writer, "requests", REQUEST_COLUMNS, requests)
                _insert(writer, "request_tags", TAG_COLUMNS, tags)
            read += len(requests)
        return Copied(read, _count(writer) - before)
    finally:
        reader.close()
        writer.close()


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


def _insert(conn: LedgerConnection, table: str, columns: tuple[str, ...], rows: list) -> None:
    if rows:
        conn.executemany(dialect_of(conn).insert_ignoring(table, columns), rows)


def _count(conn: LedgerConnection) -> int:
    return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])
