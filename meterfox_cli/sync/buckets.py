"""Adding up what an API gave into billed buckets: usage results and cost lines for one
(bucket, model, grouping ids) meet in one BilledBucket, whatever order the pages came in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from meterfox_cli.store.billed import COMPUTED, NO_COST, BilledBucket
from meterfox_cli.usage import Usage

# (provider, model, bucket start, usage) → our computed cost in nano-USD, or None.
PriceFn = Callable[[str, str, int, Usage], int | None]


@dataclass
class _Sums:
    bucket: BilledBucket
    has_usage: bool = False
    cost_nanousd: int | None = None


class BucketSums:
    """Buckets of one provider, summed by key: usage from usage endpoints, money from cost
    endpoints. `finish` prices the ones the cost side said nothing about."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._sums: dict[tuple[object, ...], _Sums] = {}

    def _entry(self, start: int, end: int, model: str, **ids: str) -> _Sums:
        bucket = BilledBucket(self.provider, start, end, model or "", **ids)
        entry = self._sums.get(bucket.key)
        if entry is None:
            entry = self._sums[bucket.key] = _Sums(bucket)
        return entry

    def add_usage(
        self,
        start: int,
        end: int,
        model: str,
        usage: Usage,
        requests: int | None,
        **ids: str,
    ) -> None:
        entry = self._entry(start, end, model, **ids)
        b = entry.bucket
        entry.has_usage = True
        entry.bucket = replace(
            b,
            requests=None if requests is None else (b.requests or 0) + requests,
            input_tokens=b.input_tokens + usage.input_tokens,
            cached_tokens=b.cached_tokens + usage.cached_tokens,
            cache_write_tokens=b.cache_write_tokens + usage.cache_write_tokens,
            cache_write_1h_tokens=b.cache_write_1h_tokens + usage.cache_write_1h_tokens,
            output_tokens=b.output_tokens + usage.output_tokens,
            reasoning_tokens=b.reasoning_tokens + usage.reasoning_tokens,
        )

    def add_cost(self, start: int, end: int, model: str, nanousd: int, **ids: str) -> None:
        entry = self._entry(start, end, model, **ids)
        entry.cost_nanousd = (entry.cost_nanousd or 0) + nanousd

    def finish(self, source: str, price: PriceFn | None) -> list[BilledBucket]:
        """The buckets: a cost the API gave is marked `source`; usage without one is priced by
        us (`computed`) where we can, else has no cost."""
        out = []
        for entry in self._sums.values():
            b = entry.bucket
            if entry.cost_nanousd is not None:
                out.append(replace(b, cost_nanousd=entry.cost_nanousd, cost_source=source))
                continue
            computed = price(self.provider, b.model, b.bucket_start, _usage(b)) if price else None
            if computed is None:
                out.append(replace(b, cost_nanousd=None, cost_source=NO_COST))
            else:
                out.append(replace(b, cost_nanousd=computed, cost_source=COMPUTED))
        return sorted(out, key=lambda b: b.key)


def _usage(b: BilledBucket) -> Usage:
    return Usage(
        input_tokens=b.input_tokens,
        cached_tokens=b.cached_tokens,
        cache_write_tokens=b.cache_write_tokens,
        cache_write_1h_tokens=b.cache_write_1h_tokens,
        output_tokens=b.output_tokens,
        reasoning_tokens=b.reasoning_tokens,
    )


def text(value: object) -> str:
    """A grouping id or model as the API gave it ('' for null / absent)."""
    return value if isinstance(value, str) else ""
