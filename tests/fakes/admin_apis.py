"""Fake admin APIs on 127.0.0.1 for `meterfox sync`: OpenAI's Usage and Costs, Anthropic's
usage and cost reports, OpenRouter's Activity, each in its documented shape (envelopes, field
names, units: OpenAI costs in USD floats, Anthropic's amount a decimal string in cents).

A test fills `ledger` with what was "billed" per UTC day and model, may change it between two
syncs (a revised bucket), sets `page_size` (buckets per page), queues `faults` for a path (a
429 with Retry-After, a 500, a malformed page), and reads `received`. Only `admin_keys` pass.
The server runs on its own thread and loop (`serve`), so blocking clients can call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from aiohttp import web

DAY = 86400
ANTHROPIC_MAX_LIMIT = 31


@dataclass
class Billed:
    """What a provider billed for one model on one UTC day (tokens in OpenAI's sense: input
    includes cache reads and writes)."""

    provider: str
    day: int  # UTC midnight, unix seconds
    model: str
    input_tokens: int
    output_tokens: int
    requests: int
    cost_in: Decimal  # USD for the input side
    cost_out: Decimal  # USD for the output side
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    with_cost: bool = True  # False: the cost API says nothing of it (yet)

    @property
    def cost(self) -> Decimal:
        return self.cost_in + self.cost_out


@dataclass
class Fault:
    status: int
    body: str = '{"error": {"message": "try later"}}'
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]


class FakeAdminAPIs:
    def __init__(self, admin_keys: dict[str, str] | None = None) -> None:
        self.ledger: list[Billed] = []
        self.page_size = 7
        self.admin_keys = admin_keys or {
            "openai": "sk-admin-test",
            "anthropic": "sk-ant-admin01-test",
            "openrouter": "sk-or-v1-mgmt-test",
        }
        self.faults: dict[str, list[Fault]] = {}
        self.received: list[Seen] = []
        self.delay_s = 0.0
        # (path, query) → True: answer that request with a page whose `data` is not a list
        self.malformed: Callable[[str, dict[str, str]], bool] = lambda path, query: False
        self.lock = threading.Lock()

    # --- what tests call --------------------------------------------------------------

    def fail(self, path: str, *faults: Fault) -> None:
        with self.lock:
            self.faults.setdefault(path, []).extend(faults)

    def paths(self) -> list[str]:
        return [seen.path for seen in self.received]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        return app

    # --- the server ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        query = list(request.query.items())
        self.received.append(Seen(path, query, {k.lower(): v for k, v in request.headers.items()}))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        with self.lock:
            queued = self.faults.get(path)
            fault = queued.pop(0) if queued else None
        if fault is not None:
            return web.Response(
                status=fault.status,
                text=fault.body,
                content_type="application/json",
                headers=fault.headers,
            )
        if self.malformed(path, dict(query)):
            return web.Response(
                text='{"object": "page", "data": "oops", "has_more": false}',
                content_type="application/json",
            )
        provider, route = _route(path)
        if provider is None:
            return web.json_response({"error": {"message": "not found"}}, status=404)
        refused = self._refuse(provider, request)
        if refused is not None:
            return refused
        with self.lock:
            body = route(self, dict(query), query)
        return web.Response(text=json.dumps(body), content_type="application/json")

    def _refuse(self, provider: str, request: web.Request) -> web.Response | None:
        if provider == "anthropic":
            key = request.headers.get("x-api-key", "")
            if request.headers.get("anthropic-version") != "2023-06-01":
                return web.json_response(
                    {"type": "error", "error": {"type": "invalid_request_error", "message": "v"}},
                    status=400,
                )
        else:
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if key == self.admin_keys[provider]:
            return None
        if provider == "anthropic":
            body = {"type": "error", "error": {"type": "authentication_error", "message": "x"}}
        else:
            body = {
                "error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}
            }
        return web.json_response(body, status=401)

    # --- OpenAI -------------------------------------------------------------------------

    def openai_usage(self, q: dict[str, str], _all: list) -> dict:
        return self._openai_page(
            q,
            lambda day: [
                {
                    "object": "organization.usage.completions.result",
                    "input_tokens": b.input_tokens,
                    "output_tokens": b.output_tokens,
                    "input_cached_tokens": b.cached_tokens,
                    "input_audio_tokens": 0,
                    "output_audio_tokens": 0,
                    "num_model_requests": b.requests,
                    "project_id": None,
                    "user_id": None,
                    "api_key_id": None,
                    "model": b.model,
                    "batch": None,
                    "service_tier": None,
                }
                for b in self._billed("openai")
                if b.day == day
            ],
        )

    def openai_empty_usage(self, q: dict[str, str], _all: list) -> dict:
        return self._openai_page(q, lambda day: [])

    def openai_costs(self, q: dict[str, str], _all: list) -> dict:
        def results(day: int) -> list[dict]:
            out = []
            for b in self._billed("openai"):
                if b.day == day and b.with_cost:
                    for side, amount in (("input", b.cost_in), ("output", b.cost_out)):
                        out.append(
                            {
                                "object": "organization.costs.result",
                                "amount": {"value": float(amount), "currency": "usd"},
                                "line_item": f"{b.model}, {side}",
                                "project_id": None,
                            }
                        )
            return out

        return self._openai_page(q, results)

    def _openai_page(self, q: dict[str, str], results) -> dict:
        days = _days(int(q["start_time"]), int(q["end_time"]))
        first, size = _cursor(q), min(int(q.get("limit", 7)), self.page_size)
        chosen = days[first : first + size]
        more = first + size < len(days)
        return {
            "object": "page",
            "data": [
                {"object": "bucket", "start_time": d, "end_time": d + DAY, "results": results(d)}
                for d in chosen
            ],
            "has_more": more,
            "next_page": f"page_{first + size}" if more else None,
        }

    # --- Anthropic ----------------------------------------------------------------------

    def anthropic_usage(self, q: dict[str, str], _all: list) -> dict:
        def results(day: int) -> list[dict]:
            return [
                {
                    "uncached_input_tokens": b.input_tokens
                    - b.cached_tokens
                    - b.cache_write_tokens,
                    "cache_read_input_tokens": b.cached_tokens,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": b.cache_write_tokens,
                        "ephemeral_1h_input_tokens": 0,
                    },
                    "output_tokens": b.output_tokens,
                    "server_tool_use": {"web_search_requests": 0},
                    "api_key_id": None,
                    "workspace_id": None,
                    "model": b.model,
                    "service_tier": None,
                    "context_window": None,
                }
                for b in self._billed("anthropic")
                if b.day == day
            ]

        return self._anthropic_page(q, results)

    def anthropic_costs(self, q: dict[str, str], _all: list) -> dict:
        def results(day: int) -> list[dict]:
            out = []
            for b in self._billed("anthropic"):
                if b.day == day and b.with_cost:
                    for token_type, amount in (
                        ("uncached_input_tokens", b.cost_in),
                        ("output_tokens", b.cost_out),
                    ):
                        out.append(
                            {
                                "currency": "USD",
                                "amount": str(amount * 100),  # cents, as a decimal string
                                "workspace_id": None,
                                "description": f"{b.model} {token_type}",
                                "cost_type": "tokens",
                                "context_window": "0-200k",
                                "model": b.model,
                                "service_tier": "standard",
                                "token_type": token_type,
                            }
                        )
            return out

        return self._anthropic_page(q, results)

    def _anthropic_page(self, q: dict[str, str], results) -> dict:
        days = _days(_parse(q["starting_at"]), _parse(q["ending_at"]))
        limit = min(int(q.get("limit", 7)), ANTHROPIC_MAX_LIMIT)
        first, size = _cursor(q), min(limit, self.page_size)
        chosen = days[first : first + size]
        more = first + size < len(days)
        return {
            "data": [
                {"starting_at": _rfc(d), "ending_at": _rfc(d + DAY), "results": results(d)}
                for d in chosen
            ],
            "has_more": more,
            "next_page": f"page_{first + size}" if more else None,
        }

    # --- OpenRouter ---------------------------------------------------------------------

    def openrouter_activity(self, q: dict[str, str], _all: list) -> dict:
        date = q.get("date")
        rows = []
        for b in self._billed("openrouter"):
            day = _day_text(b.day)
            if date is None or date == day:
                rows.append(
                    {
                        "date": day,
                        "model": b.model,
                        "model_permaslug": b.model + "-2024",
                        "endpoint_id": "e1",
                        "provider_name": "OpenAI",
                        "usage": float(b.cost),
                        "byok_usage_inference": 0,
                        "requests": b.requests,
                        "prompt_tokens": b.input_tokens,
                        "completion_tokens": b.output_tokens,
                        "reasoning_tokens": 0,
                    }
                )
        return {"data": rows}

    def _billed(self, provider: str) -> list[Billed]:
        return [b for b in self.ledger if b.provider == provider]


_ROUTES = {
    "/v1/organization/usage/completions": ("openai", FakeAdminAPIs.openai_usage),
    "/v1/organization/costs": ("openai", FakeAdminAPIs.openai_costs),
    "/v1/organizations/usage_report/messages": ("anthropic", FakeAdminAPIs.anthropic_usage),
    "/v1/organizations/cost_report": ("anthropic", FakeAdminAPIs.anthropic_costs),
    "/api/v1/activity": ("openrouter", FakeAdminAPIs.openrouter_activity),
}
for _endpoint in ("embeddings", "moderations", "images", "audio_speeches", "audio_transcriptions"):
    _ROUTES[f"/v1/organization/usage/{_endpoint}"] = ("openai", FakeAdminAPIs.openai_empty_usage)


def _route(path: str):
    return _ROUTES.get(path, (None, None))


def _days(start: int, end: int) -> list[int]:
    day, days = start - start % DAY, []
    while day < end:
        days.append(day)
        day += DAY
    return days


def _cursor(q: dict[str, str]) -> int:
    page = q.get("page")
    return int(page.removeprefix("page_")) if page else 0


def _rfc(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _day_text(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


@contextlib.contextmanager
def serve(fake: FakeAdminAPIs) -> Iterator[str]:
    """Run the fake on 127.0.0.1 on its own thread and loop; yield its origin."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        runner = web.AppRunner(fake.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="fake-admin-apis", daemon=True)
    thread.start()
    assert started.wait(10), "the fake admin APIs did not start"
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        runner = holder["runner"]
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
