"""OpenRouter's Activity API (a management key): per UTC day and model, what was spent (`usage`,
USD), how many requests, and the tokens. It covers the last 30 complete UTC days, asked one day
at a time (`date=YYYY-MM-DD`); today is not in it yet."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from meterfox_cli.money import to_nanousd
from meterfox_cli.store.billed import ACTIVITY, BilledBucket
from meterfox_cli.sync.buckets import BucketSums, PriceFn, text
from meterfox_cli.sync.http import AdminClient
from meterfox_cli.sync.pages import DAY, OnPage, malformed, pages, utc_day
from meterfox_cli.usage import Usage, as_int

NAME = "openrouter"
KEY_NAME = "openrouter-admin"
KEY_ENV = "OPENROUTER_MANAGEMENT_KEY"
REFUSED_HINT = (
    "`meterfox sync openrouter` needs a management (provisioning) key, not an inference API "
    "key; create one at https://openrouter.ai/settings/provisioning-keys"
)
HISTORY_DAYS = 30  # the last 30 complete UTC days
COMPLETE_DAYS_ONLY = True


def client(base_url: str, key: str) -> AdminClient:
    return AdminClient(NAME, base_url, {"Authorization": f"Bearer {key}"}, REFUSED_HINT)


def fetch(
    api: AdminClient, start: int, end: int, on_page: OnPage, price: PriceFn | None
) -> list[BilledBucket]:
    sums = BucketSums(NAME)
    path = "/v1/activity"
    day = start - start % DAY
    while day < end:
        if day >= start:
            for data in pages(api, path, [("date", utc_day(day))], on_page):
                for row in data:
                    _add(api, path, sums, day, row)
        day += DAY
    return sums.finish(ACTIVITY, price)


def _add(api: AdminClient, path: str, sums: BucketSums, day: int, row: object) -> None:
    if not isinstance(row, dict) or not isinstance(row.get("date"), str):
        raise malformed(api, path, "a row without a date")
    if row["date"][:10] != utc_day(day):
        return  # not the day asked for
    usage = Usage(
        input_tokens=as_int(row.get("prompt_tokens")),
        output_tokens=as_int(row.get("completion_tokens")),
        reasoning_tokens=min(
            as_int(row.get("reasoning_tokens")), as_int(row.get("completion_tokens"))
        ),
    )
    model = text(row.get("model"))
    sums.add_usage(day, day + DAY, model, usage, as_int(row.get("requests")))
    spent = row.get("usage")
    if isinstance(spent, bool) or not isinstance(spent, int | float | str):
        raise malformed(api, path, "a row without `usage` (USD)")
    try:
        sums.add_cost(day, day + DAY, model, to_nanousd(Decimal(str(spent))))
    except InvalidOperation:
        raise malformed(api, path, f"usage {spent!r} is not a number") from None
