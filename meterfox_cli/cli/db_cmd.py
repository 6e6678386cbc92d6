"""`meterfox db migrate`: bring the ledger's schema (SQLite or PostgreSQL) up to this version;
`meterfox db copy`: move a ledger's records to another store; `meterfox db backup`: a consistent
copy of the SQLite file, even while `serve` writes."""

from __future__ import annotations

import os
from pathlib import Path

import click

from meterfox_cli.cli.common import current_ledger


@click.group()
def db() -> None:
    """The ledger's database: its schema, copies and backups."""


@db.command()
def migrate() -> None:
    """Apply every migration the ledger lacks (METERFOX_DATABASE_URL or [store] url for a
    PostgreSQL ledger, else the local SQLite file); `serve` refuses a ledger behind or ahead."""
    from meterfox_cli.errors import StoreError
    from meterfox_cli.store.backend import schema_problem

    ledger = current_ledger()
    _, unknown = ledger.pending()
    if unknown:
        raise StoreError(schema_problem(ledger.describe(), [], unknown))
    applied = ledger.migrate()
    for name in applied:
        click.echo(f"applied {name}")
    click.echo(f"{ledger.describe()}: schema up to date ({len(applied)} migrations applied)")


@db.command()
@click.option(
    "--to",
    "to",
    required=True,
    metavar="postgresql://…|sqlite:PATH",
    help="The store to copy into (migrated first if blank).",
)
def copy(to: str) -> None:
    """Copy every recorded request (with its tags) and every proxy key (its hash, budget and
    revocation; never a secret) from the ledger into another store. Idempotent: copying twice
    leaves one copy of each record and key. A key the target holds changed is kept as the
    target has it; a live key under a name the target's live key has is refused."""
    from pathlib import Path

    from meterfox_cli.errors import StoreError
    from meterfox_cli.store.backend import ledger_at
    from meterfox_cli.store.copy import copy_ledger

    if to.startswith("sqlite:"):
        target = ledger_at(None, Path(to.removeprefix("sqlite:")).expanduser())
    elif to.startswith(("postgresql://", "postgres://")):
        target = ledger_at(to, Path())
    else:
        raise StoreError(f"--to takes postgresql://… or sqlite:PATH, not {to.split(':')[0]!r}")
    source = current_ledger()
    copied = copy_ledger(source, target)
    click.echo(
        f"copied {copied.read:,} records from {source.describe()} to {target.describe()}: "
        f"{copied.added:,} new, {copied.read - copied.added:,} already there"
    )
    click.echo(
        f"copied {copied.keys_read:,} proxy keys: {copied.keys_added:,} new, "
        f"{copied.keys_read - copied.keys_added:,} already there"
    )
    if copied.keys_kept:
        click.echo(
            f"kept the target's own version of {', '.join(copied.keys_kept)} (changed there "
            "since: its budget, expiry or revocation wins; change it with `meterfox keys`)"
        )


@db.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
def backup(path: Path, force: bool) -> None:
    """Copy the SQLite ledger to PATH (owner-only), consistent even while `serve` writes; the
    copy holds every record committed before it began. `doctor` says when the last one was."""
    from meterfox_cli.cli.common import load_settings
    from meterfox_cli.config import ledger_url, masked_url
    from meterfox_cli.errors import StoreError
    from meterfox_cli.store.backup import backup_sqlite, record_backup

    settings = load_settings()
    url = ledger_url(settings.config, os.environ)
    if url is not None:
        raise StoreError(
            f"the ledger is the PostgreSQL database {masked_url(url)}: back it up with pg_dump"
        )
    made = backup_sqlite(settings.paths.database, path.expanduser(), force=force)
    record_backup(settings.paths.state_dir, made)
    size_mb = made.size_bytes / 1_000_000
    click.echo(f"backed up {made.records:,} records to {made.path} ({size_mb:.1f} MB)")


COMMANDS = [db]
