"""Where an alert goes: the daemon's log (always), webhooks (a Slack-compatible `{"text": …}`
body or a generic JSON body with every figure) and the desktop (`notify-send` / `osascript`).

`send` never blocks its caller: a webhook or the desktop has its own thread and a bounded
queue, and each delivery a timeout and a bounded number of attempts, so a receiver that hangs
or fails delays only its own later alerts, never the alert thread or the proxy. `deliver` is
the same delivery, blocking, for `meterfox alerts test`: it says how it went."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from meterfox_cli import __version__
from meterfox_cli.config import AlertsConfig, Webhook

if TYPE_CHECKING:
    from meterfox_cli.alerts.rules import Alert

log = logging.getLogger("meterfox.alerts")

WEBHOOK_TIMEOUT_S = 5.0  # per attempt: connecting, sending and reading the answer
WEBHOOK_ATTEMPTS = 3  # a connection error, a timeout, a 429 or a 5xx is tried again...
RETRY_BACKOFF_S = (1.0, 2.0)  # ...after these pauses
DESKTOP_TIMEOUT_S = 5.0
QUEUE_SIZE = 100  # alerts waiting for one channel; beyond that they are dropped (and logged)
CLOSE_WAIT_S = 2.0  # at shutdown, how long queued alerts may take to go out


class DeliveryError(Exception):
    """A channel could not deliver: why, in a phrase."""


class Channel(Protocol):
    name: str

    def send(self, alert: Alert) -> None:
        """Deliver in the background (never blocks, never raises)."""
        ...

    def deliver(self, alert: Alert) -> str:
        """Deliver now; what happened (DeliveryError when it failed)."""
        ...

    def close(self) -> None: ...


class LogChannel:
    """The daemon's log: every alert, always."""

    name = "log"

    def send(self, alert: Alert) -> None:
        log.warning("%s", alert.text)

    def deliver(self, alert: Alert) -> str:
        self.send(alert)
        return "written to the log"

    def close(self) -> None:
        pass


class _Courier:
    """One channel's thread and bounded queue: `deliver` runs there, one alert at a time."""

    def __init__(self, name: str, deliver: Callable[[Alert], str]) -> None:
        self._name = name
        self._deliver = deliver
        self._queue: queue.Queue[Alert | None] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="meterfox-alert-channel", daemon=True
                )
                self._thread.start()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            log.warning("alert to %s dropped: %d alerts already waiting", self._name, QUEUE_SIZE)

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(wait_s)  # a daemon thread: one still delivering ends with the process

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            try:
                self._deliver(alert)
            except DeliveryError as exc:
                log.warning("alert to %s not delivered: %s", self._name, exc)
            except Exception:  # nothing a channel meets may end its thread
                log.exception("alert to %s failed", self._name)


def slack_body(alert: Alert) -> dict[str, object]:
    """Slack's incoming-webhook body (Discord's /slack URLs and Teams connectors take it too)."""
    return {"text": alert.text}


def json_body(alert: Alert) -> dict[str, object]:
    """Every figure of the alert, for a receiver of one's own."""
    return {"source": "meterfox", **alert.figures()}


BODIES = {"slack": slack_body, "json": json_body}


def shown_url(url: str) -> str:
    """A webhook URL fit for the log: its origin only (a Slack URL's path is its secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.path.strip("/") else url


class WebhookChannel:
    """POSTs each alert to one URL, in its `format`, with a timeout and bounded retries."""

    def __init__(
        self,
        hook: Webhook,
        *,
        timeout_s: float = WEBHOOK_TIMEOUT_S,
        attempts: int = WEBHOOK_ATTEMPTS,
        backoff_s: Sequence[float] = RETRY_BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.hook = hook
        self.name = f"webhook {shown_url(hook.url)} ({hook.format})"
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._courier = _Courier(self.name, self.deliver)

    def send(self, alert: Alert) -> None:
        self._courier.send(alert)

    def close(self) -> None:
        self._courier.close()

    def deliver(self, alert: Alert) -> str:
        body = json.dumps(BODIES[self.hook.format](alert)).encode()
        failure = ""
        for attempt in range(1, self._attempts + 1):
            if attempt > 1:
                self._sleep(self._backoff_s[min(attempt - 2, len(self._backoff_s) - 1)])
            try:
                status = self._post(body)
            except _Retry as exc:
                failure = str(exc)
                continue
            return f"HTTP {status}"
        raise DeliveryError(f"{failure} ({self._attempts} attempts)")

    def _post(self, body: bytes) -> int:
        request = urllib.request.Request(
            self.hook.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": f"meterfox/{__version__}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _Retry(f"HTTP {exc.code}") from exc
            raise DeliveryError(f"HTTP {exc.code} (not retried)") from exc
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
            reason = getattr(exc, "reason", exc)
            raise _Retry(f"no answer: {reason}") from exc


class _Retry(Exception):
    """This attempt failed in a way another may not."""


def desktop_command(
    text: str,
    *,
    platform: str | None = None,
    environ: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] = shutil.which,
) -> tuple[list[str] | None, str]:
    """The command that shows `text` on this desktop, or None and why there is none."""
    title = "MeterFox alert"
    platform = sys.platform if platform is None else platform
    environ = os.environ if environ is None else environ
    if platform == "darwin":
        if which("osascript") is None:
            return None, "no osascript"
        script = f"display notification {_applescript(text)} with title {_applescript(title)}"
        return ["osascript", "-e", script], "osascript"
    if not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        return None, "no desktop session (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    found = which("notify-send")
    if found is None:
        return None, "no notify-send (libnotify-bin)"
    return [found, "--app-name=MeterFox", title, text], "notify-send"


def _applescript(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DesktopChannel:
    """A notification on the desktop of the session serve runs in."""

    name = "desktop"

    def __init__(self) -> None:
        self._courier = _Courier(self.name, self.deliver)

    def send(self, alert: Alert) -> None:
        self._courier.send(alert)

    def close(self) -> None:
        self._courier.close()

    def deliver(self, alert: Alert) -> str:
        command, how = desktop_command(alert.text)
        if command is None:
            raise DeliveryError(how)
        try:
            done = subprocess.run(
                command, capture_output=True, timeout=DESKTOP_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DeliveryError(f"{how} failed: {exc}") from exc
        if done.returncode != 0:
            why = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
            raise DeliveryError(f"{how} failed: {why}")
        return f"shown ({how})"


def channels_for(config: AlertsConfig) -> tuple[list[Channel], list[str]]:
    """The channels `config` asks for, and a line for each one skipped (said once, at start)."""
    chosen: list[Channel] = [LogChannel()]
    skipped = []
    chosen.extend(WebhookChannel(hook) for hook in config.webhooks)
    if config.desktop:
        command, why = desktop_command("")
        if command is None:
            skipped.append(f"desktop notifications skipped: {why}")
        else:
            chosen.append(DesktopChannel())
    return chosen, skipped
