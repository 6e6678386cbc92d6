"""Backups of the SQLite ledger: a consistent copy made with SQLite's backup API while `serve`
writes, owner-only, never over an existing file unless asked; and the note of the last one
(a small JSON file in the state dir) that `doctor` reads."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from meterfox_cli.errors import StoreError
from meterfox_cli.store.db import connect

LAST_BACKUP_FILE = "last-backup.json"


@dataclass(frozen=True, slots=True)
class Backup:
    path: str
    at: float  # when the copy's snapshot was taken (Unix time)
    records: int
    size_bytes: int


def backup_sqlite(source: Path, target: Path, *, force: bool = False) -> Backup:
    """Copy the database at `source` to `target` in one read transaction of the backup API:
    the copy holds every record committed before it began, and the writer goes on meanwhile
    (WAL). The copy is written beside `target` and renamed onto it, so `target` is never
    half-written."""
    if not source.exists():
        raise StoreError(f"no database at {source}: nothing to back up yet")
    if target.is_dir():
        raise StoreError(f"{target} is a directory: give the backup's file name")
    if target.exists() and os.path.samefile(source, target):
        raise StoreError(f"{target} is the database itself: back it up to another file")
    if target.exists() and not force:
        raise StoreError(f"{target} exists: pass --force to replace it")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    _create_owner_only(partial)
    try:
        at, records = _copy(source, partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Backup(str(target.absolute()), at, records, target.stat().st_size)


def _copy(source: Path, target: Path) -> tuple[float, int]:
    reader = connect(source, readonly=True)
    try:
        copy = sqlite3.connect(target, isolation_level=None)
        try:
            at = time.time()
            reader.backup(copy)  # pages=-1: every page in one step, one snapshot
            records = copy.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
            copy.execute("PRAGMA journal_mode = DELETE")  # a lone file: no -wal to carry along
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot back up {source} to {target}: {exc}") from exc
    finally:
        reader.close()
    with open(target, "rb+") as written:
        os.fsync(written.fileno())
    return at, records


def _create_owner_only(path: Path) -> None:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from exc


def record_backup(state_dir: Path, backup: Backup) -> None:
    """Note `backup` as the last one (owner-only, replaced atomically)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    note = state_dir / LAST_BACKUP_FILE
    partial = note.with_name(f".{note.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(backup), out)
    os.replace(partial, note)


def last_backup(state_dir: Path) -> Backup | None:
    """The last backup noted in `state_dir`; None if none was (or the note is unreadable)."""
    try:
        data = json.loads((state_dir / LAST_BACKUP_FILE).read_text())
        return Backup(
            str(data["path"]), float(data["at"]), int(data["records"]), int(data["size_bytes"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
