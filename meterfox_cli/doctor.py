"""`meterfox doctor`: what MeterFox would use here, and what is wrong with it, as checks.

Never prints a key. Reads the database read-only; reads the encrypted key file only when
METERFOX_PASSPHRASE or METERFOX_PASSPHRASE_FILE is set (it never prompts). Says when the last
`meterfox db backup` was.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from meterfox_cli.config import ledger_url, load_config, masked_url
from meterfox_cli.errors import MeterFoxError
from meterfox_cli.paths import resolve_paths

if TYPE_CHECKING:
    from meterfox_cli.keys.provider_keys import EncryptedFileStore, StoredKey


class Level(StrEnum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: Level
    detail: str
    hint: str | None = None  # what to do next, for WARN and FAIL


def run_checks(environ: Mapping[str, str] | None = None) -> list[Check]:
    env = os.environ if environ is None else environ
    paths = resolve_paths(env)
    try:
        config = load_config(paths.config_file)
    except MeterFoxError as exc:
        return [Check("config", Level.FAIL, str(exc), "fix config.toml, then run doctor again")]
    state = "read" if paths.config_file.exists() else "absent: defaults"
    checks = [
        Check(
            "config", Level.FAIL, f"{paths.config_file}: {unknown}", "fix the name: it is ignored"
        )
        for unknown in config.unknown
    ] or [Check("config", Level.OK, f"{paths.config_file} ({state})")]
    checks += _path_checks([paths.config_dir, paths.data_dir, paths.state_dir])
    checks += _database_checks(paths.database)
    url = ledger_url(config, env)
    if url is not None:
        checks.append(_ledger_check(url))
    elif paths.database.exists():
        checks.append(_backup_check(paths.state_dir, time.time()))
    checks += _outbox_checks(paths.outbox, url)
    checks += _key_store_checks(paths.data_dir, paths.database, env)
    return checks


def _path_checks(directories: list[Path]) -> list[Check]:
    checks = []
    for directory in dict.fromkeys(directories):
        if not directory.exists():
            checks.append(Check("dir", Level.INFO, f"{directory} (not created yet)"))
            continue
        checks.append(_mode_check(directory, 0o700))
        for path in sorted(directory.iterdir()):
            if path.is_file():
                checks.append(_mode_check(path, 0o600))
    return checks


def _mode_check(path: Path, want: int) -> Check:
    mode = stat.S_IMODE(path.stat().st_mode)
    kind = "dir" if path.is_dir() else "file"
    if mode & 0o077:
        return Check(
            kind,
            Level.WARN,
            f"{path} is readable by others (mode {mode:o})",
            f"chmod {want:o} {path}",
        )
    return Check(kind, Level.OK, f"{path} (owner-only)")


def _ledger_check(url: str) -> Check:
    """The PostgreSQL ledger: reachable, its schema current, and the round-trip time."""
    from meterfox_cli.store.backend import ledger_at, schema_problem

    ledger = ledger_at(url, Path())
    where = masked_url(url)
    try:
        started = time.monotonic()
        missing, unknown = ledger.pending()
        elapsed_ms = (time.monotonic() - started) * 1000
    except MeterFoxError as exc:
        return Check("ledger", Level.FAIL, str(exc), "check the URL, the server and its password")
    problem = schema_problem(where, missing, unknown)
    if problem is not None:
        return Check("ledger", Level.FAIL, problem, problem.rpartition(": ")[2])
    return Check(
        "ledger", Level.OK, f"{where}: schema current, connect + query {elapsed_ms:.0f} ms"
    )


def _outbox_checks(path: Path, url: str | None) -> list[Check]:
    """Records waiting in the local outbox for the PostgreSQL ledger (store/outbox.py)."""
    from meterfox_cli.store.outbox import waiting_in

    try:
        waiting = waiting_in(path)
    except sqlite3.Error as exc:
        return [Check("outbox", Level.FAIL, f"{path}: {exc}", "move it aside and tell us")]
    if waiting == 0:
        return [] if url is None else [Check("outbox", Level.OK, f"{path}: empty")]
    detail = f"{waiting} records wait in {path} for the ledger"
    if url is None:
        hint = "no ledger is set: set [store] url (or METERFOX_DATABASE_URL) again to send them"
    else:
        hint = "`meterfox serve` sends them when the ledger answers; see docs/team.md"
    return [Check("outbox", Level.WARN, detail, hint)]


def _database_checks(db_path: Path) -> list[Check]:
    from meterfox_cli.store.migrations import MIGRATIONS

    if not db_path.exists():
        return [
            Check(
                "database",
                Level.INFO,
                f"{db_path} does not exist yet; `meterfox serve` or `meterfox keys` creates it",
            )
        ]
    from meterfox_cli.store.db import open_untouched, refuse_newer

    try:
        refuse_newer(db_path)  # read without writing a byte
    except MeterFoxError as exc:
        return [Check("database", Level.FAIL, str(exc), "upgrade meterfox; the file is untouched")]
    try:
        conn = open_untouched(db_path, timeout_s=5)
        try:
            integrity = conn.execute("PRAGMA quick_check").fetchone()[0]
            applied = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
            records = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
            live = _count_live_keys(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [
            Check(
                "database",
                Level.FAIL,
                f"{db_path} cannot be read: {exc}",
                "move it aside (MeterFox makes a new one); the records in it are lost",
            )
        ]
    if integrity != "ok":
        return [
            Check(
                "database",
                Level.FAIL,
                f"{db_path} is damaged: {integrity}",
                f'try `sqlite3 {db_path} ".recover"` into a new file, or move it aside',
            )
        ]
    pending = [name for name, _ in MIGRATIONS if name not in applied]
    detail = f"{db_path}: ok, {records} records, {live} live proxy keys"
    if pending:
        return [
            Check(
                "database",
                Level.INFO,
                f"{detail}; migrations not applied yet: {', '.join(pending)}",
                "any `meterfox keys` command or `meterfox serve` applies them",
            )
        ]
    return [Check("database", Level.OK, detail)]


BACKUP_STALE_S = 7 * 86400


def _backup_check(state_dir: Path, now: float) -> Check:
    """When the last `meterfox db backup` was: a warning if never, or over a week ago."""
    from meterfox_cli.report.cells import elapsed
    from meterfox_cli.store.backup import last_backup

    last = last_backup(state_dir)
    hint = "meterfox db backup PATH (safe while serve runs)"
    if last is None:
        return Check("backup", Level.WARN, "the database was never backed up", hint)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(last.at))
    detail = f"last {when} ({elapsed(now - last.at)} ago): {last.records:,} records to {last.path}"
    if now - last.at > BACKUP_STALE_S:
        return Check("backup", Level.WARN, detail, hint)
    if not Path(last.path).exists():
        return Check("backup", Level.WARN, f"{detail}, since moved or deleted", hint)
    return Check("backup", Level.OK, detail)


def _count_live_keys(conn: sqlite3.Connection) -> int:
    try:
        return conn.execute("SELECT COUNT(*) FROM proxy_keys WHERE revoked_at IS NULL").fetchone()[
            0
        ]
    except sqlite3.OperationalError:
        return 0  # not migrated yet


def _key_store_checks(data_dir: Path, db_path: Path, env: Mapping[str, str]) -> list[Check]:
    from meterfox_cli.keys.provider_keys import (
        PASSPHRASE_ENV,
        EncryptedFileStore,
        choose_store,
        env_passphrase,
    )

    try:
        choice = choose_store(data_dir, env_passphrase(env), env)
    except MeterFoxError as exc:
        return [Check("key store", Level.FAIL, str(exc), "see docs/security.md, 'Key stores'")]
    checks = [Check("key store", Level.OK, f"{choice.store.label}: {choice.reason}")]
    if choice.warning:
        checks.append(Check("key store", Level.WARN, choice.warning, "see docs/security.md"))
    stored = _stored(db_path)
    file_store = choice.file_store
    uses_file = isinstance(choice.store, EncryptedFileStore) or any(
        entry.store == file_store.id for entry in stored
    )
    if uses_file:
        checks.append(_file_check(file_store, env, PASSPHRASE_ENV))
    names = ", ".join(f"{entry.provider} ({entry.store})" for entry in stored) or "none"
    checks.append(Check("provider keys", Level.INFO, f"stored: {names}"))
    return checks


def _file_check(
    file_store: EncryptedFileStore, env: Mapping[str, str], passphrase_env: str
) -> Check:
    path = file_store.path
    if not path.exists():
        return Check("key file", Level.INFO, f"{path} (created by the first `meterfox keys set`)")
    from meterfox_cli.keys.provider_keys import PASSPHRASE_FILE_ENV, has_env_passphrase

    if not has_env_passphrase(env):
        return Check(
            "key file",
            Level.INFO,
            f"{path} exists; not opened (no {passphrase_env} or {PASSPHRASE_FILE_ENV})",
            f"serve and `keys set` ask for the passphrase, or read {passphrase_env}",
        )
    try:
        count = len(file_store.providers())
    except MeterFoxError as exc:
        return Check("key file", Level.FAIL, str(exc), f"check {passphrase_env}")
    given = passphrase_env if env.get(passphrase_env) else PASSPHRASE_FILE_ENV
    return Check("key file", Level.OK, f"{path} opens with {given}: {count} keys")


def _stored(db_path: Path) -> list[StoredKey]:
    from meterfox_cli.keys.provider_keys import stored_keys
    from meterfox_cli.store.db import open_untouched

    if not db_path.exists():
        return []
    try:
        conn = open_untouched(db_path, timeout_s=5)
        try:
            return stored_keys(conn)
        finally:
            conn.close()
    except sqlite3.Error:
        return []
