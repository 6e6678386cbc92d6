"""`meterfox service install|uninstall|status|logs`: MeterFox as a per-user service that starts
at login (a systemd user unit, a launchd agent); `meterfox status`: is a daemon answering here,
which version, since when, how many records today, or how to start one."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meterfox_cli.cli.common import Settings, default_base, load_settings

if TYPE_CHECKING:
    from meterfox_cli.service.manager import Manager
    from meterfox_cli.service.probe import Health

START_HINT = "start one with `meterfox serve` (foreground) or `meterfox service install` (at login)"
_READY_WAIT_S = 10.0


@click.command("status")
def status() -> None:
    """Whether a MeterFox daemon answers on the configured port: its version, since when, and
    the records of today; or how to start one (exit 1)."""
    from meterfox_cli.service.probe import probe

    settings = load_settings()
    base = default_base(settings)
    health = probe(base)
    if health is None:
        click.echo(f"No MeterFox answers at {base}: {START_HINT}.")
        raise SystemExit(1)
    for line in _health_lines(health, settings):
        click.echo(line)


@click.group()
def service() -> None:
    """Run MeterFox at login as a per-user service (systemd on Linux, launchd on macOS)."""


@service.command()
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Serve on N (default: config)."
)
def install(port: int | None) -> None:
    """Write and enable the service: it runs this meterfox (`serve`), with your METERFOX_HOME,
    at every login, and again after a crash. Never writes a passphrase into it."""
    from meterfox_cli.service.manager import prepare_log, this_machine, write_definition
    from meterfox_cli.service.units import by_hand, serve_spec, this_meterfox

    settings = load_settings()
    spec = serve_spec(this_meterfox(), port, os.environ, settings.paths.log_file)
    for line in _environment_notes(settings):
        click.echo(line, err=True)
    manager = this_machine()
    if manager is None:
        prepare_log(spec.log_file)
        click.echo("Neither systemd's user manager nor launchd is here: start MeterFox by hand:")
        click.echo(f"  {by_hand(spec)}")
        return
    write_definition(manager, spec)
    click.echo(f"wrote {manager.definition}")
    if not manager.answers():
        click.echo(f"No {manager.name} manager answers for this user, so it is not enabled yet.")
        click.echo(f"Once one runs:  {manager.enable_line()}")
        click.echo(f"Meanwhile, start MeterFox by hand:\n  {by_hand(spec)}")
        return
    manager.enable()  # a failure is a ManagerError: one line, exit 2
    base = _base(settings, port)
    answered = _wait_for(base)
    state = "answers" if answered else "does not answer yet (see `meterfox service logs`)"
    click.echo(f"MeterFox starts at every login ({manager.name}) and {state} at {base}.")


@service.command()
def uninstall() -> None:
    """Stop the service and remove it (the database and config stay)."""
    from meterfox_cli.service.manager import this_machine

    manager = this_machine()
    if manager is None or not manager.definition.exists():
        click.echo("No MeterFox service is installed here.")
        return
    if manager.answers():
        manager.disable()
    manager.definition.unlink()
    manager.forget()
    click.echo(f"removed {manager.definition}; the database and config stay")


@service.command("status")
@click.option("-n", "lines", default=5, show_default=True, help="Log lines to show.")
def service_status(lines: int) -> None:
    """The service: installed or not, running or not and since when, its port, the records of
    today, and the last lines of its log."""
    from meterfox_cli.service.logfile import last_lines
    from meterfox_cli.service.manager import this_machine
    from meterfox_cli.service.probe import probe
    from meterfox_cli.service.units import port_of

    settings = load_settings()
    manager = this_machine()
    argv = manager.installed_argv() if manager is not None else None
    click.echo(_installed_line(manager, argv is not None))
    if manager is not None and argv is not None:
        click.echo(_manager_line(manager))
    base = _base(settings, port_of(argv or []))
    health = probe(base)
    if health is None:
        click.echo(f"port       nothing answers at {base}")
    else:
        for line in _health_lines(health, settings):
            click.echo(line)
    log = settings.paths.log_file
    click.echo(f"log        {log}")
    for line in last_lines(log, lines):
        click.echo(f"  {line}")


@service.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing lines as they come (Ctrl-C).")
@click.option("-n", "lines", default=50, show_default=True, help="Lines to show first.")
def logs(follow: bool, lines: int) -> None:
    """The service's log (what `serve` prints, credentials redacted)."""
    from meterfox_cli.service.logfile import follow as follow_log
    from meterfox_cli.service.logfile import last_lines

    log = load_settings().paths.log_file
    if not log.exists() and not follow:
        click.echo(f"No log yet at {log}: `meterfox service install` starts one.")
        return
    for line in last_lines(log, lines):
        click.echo(line)
    if follow:
        try:
            for line in follow_log(log):
                click.echo(line)
        except KeyboardInterrupt:
            pass


def _base(settings: Settings, port: int | None) -> str:
    base = default_base(settings)
    return base if port is None else f"{base.rpartition(':')[0]}:{port}"


def _wait_for(base: str) -> bool:
    from meterfox_cli.service.probe import probe

    deadline = time.monotonic() + _READY_WAIT_S
    while time.monotonic() < deadline:
        if probe(base, timeout_s=1.0) is not None:
            return True
        time.sleep(0.25)
    return False


def _health_lines(health: Health, settings: Settings) -> list[str]:
    from meterfox_cli.report.cells import elapsed

    since = ""
    if health.started_at is not None:
        since = f" since {time.strftime('%Y-%m-%d %H:%M', time.localtime(health.started_at))}"
    state = "" if health.status == "ok" else f" ({health.status}: see `meterfox service logs`)"
    return [
        f"MeterFox {health.version} answers at {health.base_url}{state}",
        f"  up       {elapsed(health.uptime_s)}{since}",
        f"  today    {_records_today(settings)}",
    ]


def _records_today(settings: Settings) -> str:
    from meterfox_cli.cli.common import current_ledger
    from meterfox_cli.errors import MeterFoxError
    from meterfox_cli.store.queries import read_report
    from meterfox_cli.timewindow import parse_window

    try:
        report = read_report(
            current_ledger(settings), (), parse_window("today", None), latency=False
        )
    except MeterFoxError as exc:
        return f"records unknown: {exc}"
    count = report.total.requests if report is not None else 0
    return f"{count:,} records"


def _installed_line(manager: Manager | None, installed: bool) -> str:
    if manager is None:
        return "service    none: neither systemd's user manager nor launchd is here"
    if not installed:
        return "service    not installed: `meterfox service install`"
    return f"service    {manager.definition} ({manager.name})"


def _manager_line(manager: Manager) -> str:
    from meterfox_cli.service.manager import ManagerError

    if not manager.answers():
        return f"running    unknown: no {manager.name} manager answers for this user"
    try:
        running = manager.running()
    except ManagerError as exc:
        return f"running    unknown: {exc}"
    pid = f", PID {running.pid}" if running.pid else ""
    return f"running    {running.detail}{pid}"


def _environment_notes(settings: Settings) -> list[str]:
    """What the service will and will not take from this shell: the passphrase choice when the
    provider keys are in the encrypted file (never the passphrase itself), and no ledger URL
    (it may hold a password: `[store] url` in the config is read by the service)."""
    from meterfox_cli.keys.provider_keys import (
        KEY_FILE_NAME,
        PASSPHRASE_ENV,
        PASSPHRASE_FILE_ENV,
        read_passphrase_file,
    )

    notes = []
    if os.environ.get("METERFOX_DATABASE_URL"):
        notes.append(
            "METERFOX_DATABASE_URL is not written into the service (it may hold a password): "
            "put the ledger in `[store] url` of the config, which the service reads."
        )
    key_file = settings.paths.data_dir / KEY_FILE_NAME
    if not key_file.exists():
        return notes
    named = os.environ.get(PASSPHRASE_FILE_ENV)
    if named:
        read_passphrase_file(Path(named))  # refused now, not at login
        notes.append(
            f"The service reads the key file's passphrase from {named} ({PASSPHRASE_FILE_ENV}); "
            "the unit names that file, never the passphrase."
        )
        return notes
    suggested = settings.paths.config_dir / "passphrase"
    ignored = ""
    if os.environ.get(PASSPHRASE_ENV):
        ignored = f" {PASSPHRASE_ENV} is set here but is never written into the service."
    notes += [
        f"Your provider keys are in the encrypted file {key_file}, and a service cannot type "
        f"its passphrase.{ignored} Choose one:",
        "  - the OS keyring, where this machine has one (docs/security.md, 'Key stores'); or",
        f"  - a passphrase file only you can read, named by {PASSPHRASE_FILE_ENV}:",
        f"      (umask 077; cat > {suggested})   # type the passphrase, then Ctrl-D",
        f"      {PASSPHRASE_FILE_ENV}={suggested} meterfox service install",
        "Until then the service runs without the provider keys in that file.",
    ]
    return notes


COMMANDS = [status, service]
