"""`meterfox alerts test` through each channel, with a line per channel, and `meterfox report
--fail-over` for CI: real processes against receivers on 127.0.0.1."""

from __future__ import annotations

import os
import time

from meterfox_cli.alerts.channels import WEBHOOK_ATTEMPTS
from meterfox_cli.paths import resolve_paths
from tests.alerts.test_channels import fake_notify_send
from tests.cli.conftest import run_meterfox
from tests.fakes.records import Req, record_to
from tests.fakes.webhooks import webhook_receiver


def write_config(text: str) -> None:
    paths = resolve_paths()
    paths.ensure()
    paths.config_file.write_text(text)


async def test_alerts_test_sends_through_each_channel_and_says_how_each_went(tmp_path):
    shown = fake_notify_send(tmp_path)
    async with (
        webhook_receiver() as generic,
        webhook_receiver() as slack,
        webhook_receiver(status=500) as failing,
    ):
        write_config(
            "[alerts]\n"
            f'webhooks = [{{ url = "{generic.url}", format = "json" }}, "{slack.url}", '
            f'"{failing.url}"]\n'
        )
        done = await run_meterfox(
            "alerts",
            "test",
            env={"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "DISPLAY": ":99"},
        )
        origins = [hook.url.removesuffix("/hook") for hook in (generic, slack, failing)]
    assert done.stdout.splitlines() == [
        "log: ok, written to the log",
        f"webhook {origins[0]}/… (json): ok, HTTP 200",
        f"webhook {origins[1]}/… (slack): ok, HTTP 200",
        f"webhook {origins[2]}/… (slack): FAILED, HTTP 500 ({WEBHOOK_ATTEMPTS} attempts)",
        "desktop: ok, shown (notify-send)",
    ]
    assert done.returncode == 1
    assert "a test alert from `meterfox alerts test`" in done.stderr  # the log channel
    assert generic.bodies[0]["event"] == "test"
    assert slack.bodies == [{"text": generic.bodies[0]["text"]}]
    assert len(failing.bodies) == WEBHOOK_ATTEMPTS
    assert "a test alert" in shown.read_text()


async def test_alerts_test_without_a_desktop_session_skips_it_in_one_line():
    done = await run_meterfox("alerts", "test", env={"DISPLAY": None, "WAYLAND_DISPLAY": None})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "log: ok, written to the log",
        "desktop: skipped: no desktop session (neither DISPLAY nor WAYLAND_DISPLAY is set)",
    ]


async def test_alerts_lists_the_budgets_and_the_rules_before_anything_fired():
    write_config(
        "[budget]\nmonthly = 200\n[budget.providers]\nopenai = 50\n[alerts]\n"
        "thresholds = [90]\nspike_factor = 4\ndesktop = false\n"
    )
    record_to(resolve_paths().database, Req(ts=time.time(), cost_nano=5 * 10**9))
    done = await run_meterfox("alerts")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Thresholds: 90% of each budget"
    monthly = next(line for line in lines if line.strip().startswith("monthly "))
    assert "$200.00/month" in monthly and "spent $5.00 (2.5%)" in monthly
    openai = next(line for line in lines if "provider:openai" in line)
    assert "spent $5.00 (10.0%)" in openai and "--provider openai" in openai
    assert any("spike rule: today over 4x the daily average: today $5.00" in line for line in lines)
    assert lines[-2:] == ["Fired:", "  nothing yet"]


async def test_alerts_lists_a_configured_budget_before_anything_is_recorded():
    write_config("[budget]\nmonthly = 200\n[alerts]\ndesktop = false\n")
    done = await run_meterfox("alerts")
    assert done.returncode == 0, done.stderr
    monthly = next(line for line in done.stdout.splitlines() if line.strip().startswith("monthly "))
    assert "$200.00/month" in monthly and "spent $0.00 (0.0%)" in monthly
    assert "none: `meterfox keys budget" not in done.stdout


async def test_report_fail_over_exits_1_with_one_line_when_the_spend_is_over():
    record_to(resolve_paths().database, Req(ts=time.time(), cost_nano=30 * 10**9))
    over = await run_meterfox("report", "--fail-over", "25")
    assert over.returncode == 1
    assert over.stdout == ""
    [line] = over.stderr.splitlines()
    assert line.startswith("meterfox: spend $30.00 is over --fail-over $25 (")
    under = await run_meterfox("report", "--fail-over", "30")  # at the limit is not over
    assert under.returncode == 0, under.stderr
    assert "$30.00" in under.stdout and "gpt-4o" in under.stdout
    filtered = await run_meterfox("report", "--fail-over", "1", "--provider", "anthropic")
    assert filtered.returncode == 0  # the window and filters are the report's own
    bad = await run_meterfox("report", "--fail-over", "lots")
    assert bad.returncode == 2
    assert "--fail-over" in bad.stderr and "expected USD" in bad.stderr
