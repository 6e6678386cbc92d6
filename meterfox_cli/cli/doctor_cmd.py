"""`meterfox doctor`: runs the checks of doctor.py and prints one line per check."""

from __future__ import annotations

import click

_MARKS = {"ok": "ok  ", "info": "--  ", "warn": "WARN", "fail": "FAIL"}


@click.command()
def doctor() -> None:
    """Check MeterFox's setup: paths and permissions, the database, and which key store
    (OS keyring or encrypted file) is in use and why. Never prints a key."""
    from meterfox_cli.doctor import Level, run_checks

    checks = run_checks()
    for check in checks:
        line = f"{_MARKS[check.level]} {check.name:<14} {check.detail}"
        if check.hint:
            line += f"\n{'':<20}→ {check.hint}"
        click.echo(line)
    if any(check.level is Level.FAIL for check in checks):
        raise SystemExit(1)


COMMANDS = [doctor]
