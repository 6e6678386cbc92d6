"""`meterfox alerts` (thresholds, budgets, what fired when) and `meterfox alerts test` (a test
notification through each configured channel)."""

from __future__ import annotations

import sys

import click


@click.group(invoke_without_command=True)
@click.pass_context
def alerts(ctx: click.Context) -> None:
    """Budget alerts: the thresholds, each budget's spend so far, the channels, what fired when.

    `meterfox serve` checks every budget (each proxy key's, and `[budget]` in config.toml) and
    the spike rule every few seconds and sends each threshold once per period (docs/alerts.md).
    """
    if ctx.invoked_subcommand is not None:
        return
    import time

    from meterfox_cli.alerts.status import read_status
    from meterfox_cli.cli.common import current_ledger, load_settings

    settings = load_settings()
    config = settings.config
    status = read_status(current_ledger(settings), config.budget, time.time())
    for line in _status_lines(status, config):
        click.echo(line)


def _status_lines(status, config) -> list[str]:
    from datetime import datetime

    from meterfox_cli.alerts.channels import channels_for
    from meterfox_cli.money import decimal_text, from_nanousd, human_usd

    def usd(nanousd: int) -> str:
        return human_usd(from_nanousd(nanousd))

    thresholds = ", ".join(f"{t}%" for t in config.alerts.thresholds)
    lines = [f"Thresholds: {thresholds or 'none'} of each budget", "", "Budgets:"]
    for s in status.standings:
        share = s.spend_nanousd * 100 / s.budget_nanousd
        lines.append(
            f"  {s.rule:<24} {usd(s.budget_nanousd) + '/' + s.period:<16} "
            f"spent {usd(s.spend_nanousd)} ({share:.1f}%)  {s.command}"
        )
    if not status.standings:
        lines.append(
            "  none: `meterfox keys budget NAME 25/month`, or [budget] monthly = 200 in config.toml"
        )
    factor = config.alerts.spike_factor
    if factor is None:
        lines.append("  spike rule: off ([alerts] spike_factor = 3 turns it on)")
    else:
        days = status.days
        seen = ""
        if days is not None:
            average = days.trailing_nanousd // days.trailing_days
            seen = f": today {usd(days.today_nanousd)}, {days.trailing_days}-day average {usd(average)}"
        lines.append(f"  spike rule: today over {decimal_text(factor)}x the daily average{seen}")
    lines += ["", "Channels:", "  log: always"]
    channels, skipped = channels_for(config.alerts)
    lines += [f"  {channel.name}" for channel in channels if channel.name != "log"]
    lines += [f"  {line}" for line in skipped]
    lines += ["", "Fired:"]
    for fired in status.fired:
        when = f"{datetime.fromtimestamp(fired.fired_at):%Y-%m-%d %H:%M:%S}"
        what = "spike" if fired.rule == "spike" else f"{fired.threshold}%"
        lines.append(f"  {when}  {fired.rule:<24} {what:>5}  {fired.message}")
    if not status.fired:
        lines.append("  nothing yet")
    return lines


@alerts.command("test")
def alerts_test() -> None:
    """Send a test alert through each configured channel and say how each went (exit 1 if
    any failed)."""
    import time

    from meterfox_cli.alerts.channels import DeliveryError, channels_for
    from meterfox_cli.alerts.rules import trial_alert
    from meterfox_cli.cli.common import load_settings
    from meterfox_cli.logs import configure_logging

    configure_logging()
    config = load_settings().config.alerts
    channels, skipped = channels_for(config)
    alert = trial_alert(time.time())
    failed = False
    for channel in channels:
        try:
            click.echo(f"{channel.name}: ok, {channel.deliver(alert)}")
        except DeliveryError as exc:
            failed = True
            click.echo(f"{channel.name}: FAILED, {exc}")
    for line in skipped:
        click.echo(f"desktop: {line.removeprefix('desktop notifications ')}")
    if not config.desktop:
        click.echo("desktop: off ([alerts] desktop = false)")
    if failed:
        sys.exit(1)


COMMANDS = [alerts]
