"""The Replicate predictions API (`/v1/...`): asynchronous predictions, JSON only.

A prediction's usage exists only once it has `status: succeeded`: `metrics.predict_time`
(seconds, the unit community models bill by) and, for official language models,
`metrics.input_token_count` / `output_token_count`. It may be seen on the create call (with
`Prefer: wait`) or on any later `GET /v1/predictions/{id}` poll, and the same succeeded
prediction may be read many times; each Reading names it (`dedupe_key = "replicate:<id>"`)
so the store counts its usage once.

Model: the response's `model` (`owner/name`), else the URL of
`/v1/models/{owner}/{name}/predictions` or `/v1/deployments/{owner}/{name}/predictions`,
else the request body's `version`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from meterfox_cli.providers.base import RequestPlan, StreamReader, WireFormat, dig
from meterfox_cli.providers.sse import SseBlock
from meterfox_cli.usage import Reading, Usage, as_int

_OWNED_PATH = re.compile(r"^/v1/(models|deployments)/([^/]+)/([^/]+)/predictions$")

_TITLES = {
    400: "Bad Request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    413: "Request Entity Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}


class ReplicateFormat(WireFormat):
    name = "replicate"

    def plan(self, path: str, query: Mapping[str, str], body: bytes | None) -> RequestPlan:
        plan = super().plan(path, query, body)
        owned = _OWNED_PATH.match(path)
        model: object = f"{owned.group(2)}/{owned.group(3)}" if owned else None
        if model is None:
            model = dig(plan.request_json, "version")
        # A body `"stream": true` (legacy) asks for a `urls.stream` link: the reply is JSON.
        return RequestPlan(
            model=model if isinstance(model, str) and model else None,
            stream=False,
            body=body,
            request_json=plan.request_json,
        )

    def reads_usage(self, method: str, path: str) -> bool:
        """Every call: only a succeeded prediction has usage, counted once per id whichever
        call (the create, a poll) sees it first."""
        return True

    def read_body(self, data: object, plan: RequestPlan, path: str) -> Reading:
        if not isinstance(data, dict):
            return Reading(model=plan.model)
        model = data.get("model")
        model = model if isinstance(model, str) and model else plan.model
        prediction_id = data.get("id")
        if data.get("status") != "succeeded" or not isinstance(prediction_id, str):
            return Reading(model=model)
        return Reading(
            model=model,
            usage=usage_from(data.get("metrics")),
            dedupe_key=f"replicate:{prediction_id}",
        )

    def stream_reader(self, plan: RequestPlan, path: str) -> StreamReader:
        # Prediction output streams (`urls.stream`) carry no usage; read nothing from them.
        return _NoUsage()

    def error_body(self, status: int, message: str, kind: str) -> dict[str, object]:
        """RFC 7807 problem details, which the replicate SDK reads into ReplicateError."""
        return {"title": _TITLES.get(status, "Error"), "detail": message, "status": status}


class _NoUsage(StreamReader):
    def wants(self, raw: bytes) -> bool:
        return False

    def on_block(self, block: SseBlock) -> bool:
        return True


def usage_from(metrics: object) -> Usage:
    seconds = dig(metrics, "predict_time")
    units = ()
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        units = (("seconds", float(seconds)),)
    return Usage(
        input_tokens=as_int(dig(metrics, "input_token_count")),
        output_tokens=as_int(dig(metrics, "output_token_count")),
        units=units,
    )
