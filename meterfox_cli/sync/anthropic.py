"""Anthropic's Admin API usage and cost reports (an `sk-ant-admin…` key): daily message usage
per model, mapped onto our usage shape exactly as the proxy's Anthropic adapter maps a
response (cache reads and writes join the input), and the cost report's money per model.

The cost report's `amount` is a decimal string in CENTS (`"123.45"` is $1.2345). The usage
report has no request counts: a bucket's `requests` stays None.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from meterfox_cli.money import to_nanousd
from meterfox_cli.providers.anthropic import usage_from
from meterfox_cli.store.billed import COST_API, BilledBucket
from meterfox_cli.sync.buckets import BucketSums, PriceFn, text
from meterfox_cli.sync.http import AdminClient
from meterfox_cli.sync.pages import OnPage, malformed, pages, parse_rfc3339, rfc3339

NAME = "anthropic"
KEY_NAME = "anthropic-admin"
KEY_ENV = "ANTHROPIC_ADMIN_KEY"
REFUSED_HINT = (
    "`meterfox sync anthropic` needs an Admin API key (sk-ant-admin…), not a plain API key; "
    "an organization admin creates one at https://console.anthropic.com/settings/admin-keys"
)
API_VERSION = "2023-06-01"
DAYS_PER_PAGE = 31
_CENT = Decimal("0.01")


def client(base_url: str, key: str) -> AdminClient:
    headers = {"x-api-key": key, "anthropic-version": API_VERSION}
    return AdminClient(NAME, base_url, headers, REFUSED_HINT)


def fetch(
    api: AdminClient, start: int, end: int, on_page: OnPage, price: PriceFn | None
) -> list[BilledBucket]:
    sums = BucketSums(NAME)
    days = min(DAYS_PER_PAGE, max(1, -(-(end - start) // 86400)))
    window = [("starting_at", rfc3339(start)), ("ending_at", rfc3339(end)), ("bucket_width", "1d")]
    path = "/v1/organizations/usage_report/messages"
    query = [*window, ("group_by[]", "model"), ("limit", str(days))]
    for data in pages(api, path, query, on_page):
        for bucket_start, bucket_end, result in _results(api, path, data, start, end):
            usage = usage_from(_as_message_usage(result))
            sums.add_usage(bucket_start, bucket_end, text(result.get("model")), usage, None)
    path = "/v1/organizations/cost_report"
    query = [*window, ("group_by[]", "description"), ("limit", str(days))]
    for data in pages(api, path, query, on_page):
        for bucket_start, bucket_end, result in _results(api, path, data, start, end):
            model = text(result.get("model"))
            sums.add_cost(bucket_start, bucket_end, model, _cents(api, path, result))
    return sums.finish(COST_API, price)


def _as_message_usage(result: dict) -> dict[str, object]:
    """A usage report result in the Messages API's `usage` shape, for the adapter's mapping."""
    return {
        "input_tokens": result.get("uncached_input_tokens"),
        "cache_read_input_tokens": result.get("cache_read_input_tokens"),
        "cache_creation": result.get("cache_creation"),
        "output_tokens": result.get("output_tokens"),
        "server_tool_use": result.get("server_tool_use"),
    }


def _results(api: AdminClient, path: str, data: list, start: int, end: int):
    for bucket in data:
        if not isinstance(bucket, dict):
            raise malformed(api, path, "a bucket that is not an object")
        bucket_start = parse_rfc3339(bucket.get("starting_at"))
        bucket_end = parse_rfc3339(bucket.get("ending_at"))
        results = bucket.get("results")
        if bucket_start is None or bucket_end is None:
            raise malformed(api, path, "a bucket without starting_at/ending_at")
        if not isinstance(results, list):
            raise malformed(api, path, "a bucket without results")
        if not start <= bucket_start < end:
            continue
        for result in results:
            if not isinstance(result, dict):
                raise malformed(api, path, "a result that is not an object")
            yield bucket_start, bucket_end, result


def _cents(api: AdminClient, path: str, result: dict) -> int:
    amount = result.get("amount")
    if not isinstance(amount, str):
        raise malformed(api, path, "a cost whose amount is not a decimal string")
    try:
        return to_nanousd(Decimal(amount) * _CENT)
    except InvalidOperation:
        raise malformed(api, path, f"amount {amount!r} is not a decimal") from None
