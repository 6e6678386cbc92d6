"""One small blocking HTTP client for the admin APIs (a CLI command, never on the proxy's event
loop): JSON GETs with bounded retries on 429 and 5xx that honour `Retry-After`, and errors that
say what to do. Headers are never logged, so neither is a key."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode, urlsplit

from meterfox_cli.errors import MeterFoxError

log = logging.getLogger("meterfox.sync")

MAX_ATTEMPTS = 5
MAX_WAIT_S = 60.0
TIMEOUT_S = 60.0
MAX_BODY_BYTES = 64 * 1024 * 1024

Query = Sequence[tuple[str, str]]


class SyncError(MeterFoxError):
    """A sync step failed: the message names the provider and what went wrong."""


class AdminKeyRefused(SyncError):
    """The API answered 401 or 403: the key is missing, wrong, or not an admin key."""


@dataclass
class AdminClient:
    """GETs to one provider's admin API at `base_url`, with the auth headers it needs."""

    provider: str
    base_url: str
    headers: Mapping[str, str]
    refused_hint: str  # one sentence: which key is needed and where to create it
    sleep: Callable[[float], None] = time.sleep
    backoff_s: float = 0.5
    requests_made: int = field(default=0, init=False)

    def get_json(self, path: str, query: Query = ()) -> object:
        url = self.base_url.rstrip("/") + path + (f"?{urlencode(list(query))}" if query else "")
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return self._once(url)
            except _Retry as retry:
                if attempt == MAX_ATTEMPTS:
                    raise SyncError(
                        f"{self.provider}: {path} still answered {retry.status} after "
                        f"{MAX_ATTEMPTS} attempts"
                    ) from None
                wait = retry.wait if retry.wait is not None else self.backoff_s * 2 ** (attempt - 1)
                log.info(
                    "%s %s answered %s; retrying in %.1f s", self.provider, path, retry.status, wait
                )
                self.sleep(min(wait, MAX_WAIT_S))
        raise AssertionError("unreachable")

    def _once(self, url: str) -> object:
        request = urllib.request.Request(
            url, headers={**self.headers, "Accept": "application/json"}
        )
        self.requests_made += 1
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                body = response.read(MAX_BODY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            status = exc.code
            if status in (401, 403):
                raise AdminKeyRefused(
                    f"{self.provider} refused the key ({status}): {self.refused_hint}"
                ) from None
            if status == 429 or status >= 500:
                raise _Retry(status, retry_after(exc.headers.get("Retry-After"))) from None
            raise SyncError(
                f"{self.provider}: {_path(url)} answered {status}: {_snippet(exc)}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SyncError(f"{self.provider}: cannot reach {_origin(url)}: {reason}") from None
        if len(body) > MAX_BODY_BYTES:
            raise SyncError(f"{self.provider}: {_path(url)} answered more than 64 MiB")
        try:
            return json.loads(body)
        except ValueError:
            raise SyncError(f"{self.provider}: {_path(url)} answered something not JSON") from None


class _Retry(Exception):
    def __init__(self, status: int, wait: float | None) -> None:
        self.status = status
        self.wait = wait


def retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds to wait (delta-seconds or an HTTP date), None if absent or odd."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _path(url: str) -> str:
    return urlsplit(url).path


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _snippet(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(300).decode(errors="replace")
    except OSError:
        text = ""
    return " ".join(text.split())[:200] or exc.reason
