"""The alert channels against real receivers on 127.0.0.1: the two webhook bodies, bounded
retries, a timeout on a receiver that never answers, `send` never waiting for any of it; the
desktop command per platform, and `notify-send` run for real (a stand-in script on PATH)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time

import pytest

from meterfox_cli.alerts.channels import (
    DeliveryError,
    DesktopChannel,
    WebhookChannel,
    channels_for,
    desktop_command,
    shown_url,
)
from meterfox_cli.alerts.rules import trial_alert
from meterfox_cli.config import AlertsConfig, Webhook
from tests.fakes.webhooks import webhook_receiver


def channel(url: str, fmt: str = "json", **options) -> WebhookChannel:
    return WebhookChannel(Webhook(url, fmt), backoff_s=(0.0,), **options)


async def test_the_json_body_carries_every_figure_and_the_slack_body_only_text():
    alert = trial_alert(time.time())
    async with webhook_receiver() as generic, webhook_receiver() as slack:
        assert await asyncio.to_thread(channel(generic.url).deliver, alert) == "HTTP 200"
        assert await asyncio.to_thread(channel(slack.url, "slack").deliver, alert) == "HTTP 200"
    assert generic.bodies == [{"source": "meterfox", **alert.figures()}]
    assert set(generic.bodies[0]) == {
        "source", "event", "rule", "subject", "threshold_percent", "percent", "spend_usd",
        "budget_usd", "projected_usd", "period", "period_start", "period_end", "at", "command",
        "text",
    }  # fmt: skip
    assert slack.bodies == [{"text": alert.text}]


async def test_a_5xx_is_retried_a_bounded_number_of_times_and_a_4xx_not_at_all():
    alert = trial_alert(time.time())
    async with webhook_receiver(status=503) as failing, webhook_receiver(status=404) as gone:
        with pytest.raises(DeliveryError, match=r"HTTP 503 \(3 attempts\)"):
            await asyncio.to_thread(channel(failing.url, attempts=3).deliver, alert)
        with pytest.raises(DeliveryError, match=r"HTTP 404 \(not retried\)"):
            await asyncio.to_thread(channel(gone.url, attempts=3).deliver, alert)
    assert len(failing.bodies) == 3
    assert len(gone.bodies) == 1


async def test_a_receiver_that_never_answers_costs_the_timeout_per_attempt_and_no_more():
    alert = trial_alert(time.time())
    async with webhook_receiver(hang=True) as hanging:
        hook = channel(hanging.url, timeout_s=0.3, attempts=2)
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"no answer: .*\(2 attempts\)"):
            await asyncio.to_thread(hook.deliver, alert)
        took = time.monotonic() - started
    assert len(hanging.bodies) == 2
    assert 0.6 <= took < 3.0


async def test_send_returns_at_once_and_a_failure_is_logged_from_the_channels_thread(caplog):
    alert = trial_alert(time.time())
    caplog.set_level(logging.WARNING, "meterfox.alerts")
    async with webhook_receiver(hang=True) as hanging:
        hook = channel(hanging.url, timeout_s=0.3, attempts=1)
        started = time.monotonic()
        for _ in range(3):
            hook.send(alert)
        assert time.monotonic() - started < 0.05
        await hanging.wait_for(1)
        deadline = time.monotonic() + 5
        while "not delivered" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            await asyncio.sleep(0.05)
        await asyncio.to_thread(hook.close)
    assert "http://127.0.0.1:" in caplog.text and "/hook" not in caplog.text


def test_a_webhook_url_is_logged_without_its_path():
    assert shown_url("https://hooks.slack.com/services/T0/B0/secret") == "https://hooks.slack.com/…"
    assert shown_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"


def test_the_desktop_command_per_platform():
    which = {"osascript": "/usr/bin/osascript", "notify-send": "/usr/bin/notify-send"}.get
    command, how = desktop_command('over "80%"', platform="darwin", environ={}, which=which)
    assert how == "osascript"
    assert command == [
        "osascript",
        "-e",
        'display notification "over \\"80%\\"" with title "MeterFox alert"',
    ]
    assert desktop_command("x", platform="linux", environ={}, which=which) == (
        None,
        "no desktop session (neither DISPLAY nor WAYLAND_DISPLAY is set)",
    )
    command, how = desktop_command("x", platform="linux", environ={"DISPLAY": ":0"}, which=which)
    assert how == "notify-send"
    assert command == ["/usr/bin/notify-send", "--app-name=MeterFox", "MeterFox alert", "x"]
    nothing = desktop_command(
        "x", platform="linux", environ={"WAYLAND_DISPLAY": "w"}, which=lambda name: None
    )
    assert nothing == (None, "no notify-send (libnotify-bin)")


def test_without_a_desktop_session_the_channel_is_skipped_with_one_line(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    channels, skipped = channels_for(AlertsConfig(webhooks=(Webhook("http://127.0.0.1:9/"),)))
    assert [c.name for c in channels] == ["log", "webhook http://127.0.0.1:9/ (slack)"]
    assert skipped == [
        "desktop notifications skipped: no desktop session (neither DISPLAY nor "
        "WAYLAND_DISPLAY is set)"
    ]
    assert channels_for(AlertsConfig(desktop=False))[1] == []


def fake_notify_send(directory, exit_code: int = 0):
    """A `notify-send` that writes its arguments to a file (the edge of the machine)."""
    script = directory / "notify-send"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{directory}/shown"\nexit {exit_code}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return directory / "shown"


def test_notify_send_shows_the_alert_on_a_desktop_session(tmp_path, monkeypatch):
    shown = fake_notify_send(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr("sys.platform", "linux")
    alert = trial_alert(time.time())
    assert DesktopChannel().deliver(alert) == "shown (notify-send)"
    assert shown.read_text().splitlines() == ["--app-name=MeterFox", "MeterFox alert", alert.text]
    fake_notify_send(tmp_path, exit_code=1)
    with pytest.raises(DeliveryError, match="notify-send failed: exit 1"):
        DesktopChannel().deliver(alert)
