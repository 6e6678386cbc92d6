"""Walking a paginated admin API (`has_more` / `next_page`), and the UTC day arithmetic the
providers bucket by. Every page is checked for the documented envelope before it is used."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from meterfox_cli.sync.http import AdminClient, Query, SyncError

DAY = 86400
MAX_PAGES = 10_000  # a server that keeps saying has_more is broken: stop, do not loop forever

OnPage = Callable[[], None]


def pages(client: AdminClient, path: str, query: Query, on_page: OnPage) -> Iterator[list]:
    """The `data` list of each page of `path`, following `next_page` while `has_more`."""
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        page = client.get_json(path, [*query, *([("page", cursor)] if cursor else [])])
        data = page.get("data") if isinstance(page, dict) else None
        if not isinstance(data, list):
            raise malformed(client, path, "no `data` list")
        on_page()
        yield data
        if not page.get("has_more"):
            return
        cursor = page.get("next_page")
        if not isinstance(cursor, str) or not cursor or cursor in seen:
            raise malformed(client, path, "`has_more` without a new `next_page`")
        seen.add(cursor)
    raise malformed(client, path, f"more than {MAX_PAGES} pages")


def malformed(client: AdminClient, path: str, why: str) -> SyncError:
    return SyncError(f"{client.provider}: a malformed page from {path} ({why})")


def day_floor(ts: float) -> int:
    """The UTC midnight at or before `ts`."""
    return int(ts // DAY * DAY)


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def chunks(start: int, end: int, days: int) -> list[tuple[int, int]]:
    """[start, end) cut at UTC midnights into spans of at most `days` days (the commit unit)."""
    spans, cursor = [], start
    while cursor < end:
        stop = min(day_floor(cursor) + days * DAY, end)
        spans.append((cursor, stop))
        cursor = stop
    return spans
