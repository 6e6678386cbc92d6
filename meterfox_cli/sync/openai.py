"""OpenAI's Usage and Costs APIs (an admin key): daily usage per model from every token usage
endpoint, and the money from `/v1/organization/costs` grouped by line item.

Costs' line items read `"<model>, input"` / `"<model>, output"`: the part before the comma is
the model the money goes to. A usage model with no cost line (Costs lags, or names it another
way) is priced by us and marked `computed`. OpenAI says Usage and Costs need not agree exactly.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from meterfox_cli.money import to_nanousd
from meterfox_cli.store.billed import COST_API, BilledBucket
from meterfox_cli.sync.buckets import BucketSums, PriceFn, text
from meterfox_cli.sync.http import AdminClient
from meterfox_cli.sync.pages import OnPage, malformed, pages
from meterfox_cli.usage import Usage, as_int

NAME = "openai"
KEY_NAME = "openai-admin"
KEY_ENV = "OPENAI_ADMIN_KEY"
REFUSED_HINT = (
    "`meterfox sync openai` needs an organization admin key (sk-admin-…), not a project API "
    "key; an organization owner creates one at https://platform.openai.com/settings/organization/admin-keys"
)
USAGE_ENDPOINTS = (
    "completions",
    "embeddings",
    "moderations",
    "images",
    "audio_speeches",
    "audio_transcriptions",
)
DAYS_PER_PAGE = 31  # `limit` for 1d buckets: at most 31


def client(base_url: str, key: str) -> AdminClient:
    return AdminClient(NAME, base_url, {"Authorization": f"Bearer {key}"}, REFUSED_HINT)


def fetch(
    api: AdminClient, start: int, end: int, on_page: OnPage, price: PriceFn | None
) -> list[BilledBucket]:
    """Every bucket starting in [start, end) (UTC day buckets)."""
    sums = BucketSums(NAME)
    days = min(DAYS_PER_PAGE, max(1, -(-(end - start) // 86400)))
    window = [("start_time", str(start)), ("end_time", str(end)), ("bucket_width", "1d")]
    for endpoint in USAGE_ENDPOINTS:
        path = f"/v1/organization/usage/{endpoint}"
        query = [*window, ("group_by", "model"), ("limit", str(days))]
        for data in pages(api, path, query, on_page):
            for bucket_start, bucket_end, result in _results(api, path, data, start, end):
                usage = Usage(
                    input_tokens=as_int(result.get("input_tokens")),
                    cached_tokens=as_int(result.get("input_cached_tokens")),
                    output_tokens=as_int(result.get("output_tokens")),
                )
                requests = as_int(result.get("num_model_requests"))
                sums.add_usage(bucket_start, bucket_end, text(result.get("model")), usage, requests)
    path = "/v1/organization/costs"
    for data in pages(
        api, path, [*window, ("group_by", "line_item"), ("limit", str(days))], on_page
    ):
        for bucket_start, bucket_end, result in _results(api, path, data, start, end):
            model = text(result.get("line_item")).split(",", 1)[0].strip()
            sums.add_cost(bucket_start, bucket_end, model, _amount(api, path, result))
    return sums.finish(COST_API, price)


def _results(api: AdminClient, path: str, data: list, start: int, end: int):
    for bucket in data:
        if not isinstance(bucket, dict):
            raise malformed(api, path, "a bucket that is not an object")
        bucket_start, bucket_end = bucket.get("start_time"), bucket.get("end_time")
        results = bucket.get("results")
        if not isinstance(bucket_start, int) or not isinstance(bucket_end, int):
            raise malformed(api, path, "a bucket without start_time/end_time")
        if not isinstance(results, list):
            raise malformed(api, path, "a bucket without results")
        if not start <= bucket_start < end:
            continue  # outside the window asked for: not ours to replace
        for result in results:
            if not isinstance(result, dict):
                raise malformed(api, path, "a result that is not an object")
            yield bucket_start, bucket_end, result


def _amount(api: AdminClient, path: str, result: dict) -> int:
    amount = result.get("amount")
    value = amount.get("value") if isinstance(amount, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise malformed(api, path, "a cost without amount.value")
    try:
        return to_nanousd(Decimal(str(value)))
    except InvalidOperation:
        raise malformed(api, path, f"amount.value {value!r} is not a number") from None
