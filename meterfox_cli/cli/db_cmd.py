"""`meterfox db migrate`: bring the ledger's schema (SQLite or PostgreSQL) up to this version."""

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


COMMANDS = [db]
