"""`meterfox db migrate`: bring the ledger's schema (SQLite or PostgreSQL) up to this version;
`meterfox db copy`: move a ledger's records to another store."""

from __future__ import annotations

import click

from meterfox_cli.cli.common import current_ledger


@click.group()
def db() -> None:
    """The ledger's database: its schema."""


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
    """Copy every recorded request (with its tags) from the ledger into another store.
    Idempotent: copying twice leaves one copy of each record."""
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


COMMANDS = [db]
