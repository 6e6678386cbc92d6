"""Replicate predictions through the proxy, with the real `replicate` SDK as the client.

Usage is billed once per prediction, whether it is seen on the create call (`Prefer: wait`)
or on one of many `GET /v1/predictions/{id}` polls.
"""

from __future__ import annotations

import json

import pytest
import replicate
from replicate.exceptions import ReplicateError

from tests.fakes.upstream import Received, Reply
from tests.fixtures import replicate as fx

CREATE_PATH = f"/v1/models/{fx.MODEL}/predictions"


class Closing:
    def __init__(self, sdk: replicate.Client) -> None:
        self.sdk = sdk

    async def close(self) -> None:
        await self.sdk._async_client.aclose()


def client(proxy) -> replicate.Client:
    sdk = replicate.Client(api_token="r8_caller", base_url=proxy.base("replicate"))
    sdk.poll_interval = 0.01
    proxy.track(Closing(sdk))
    return sdk


def scripted(create_status: str, poll_statuses: list[str]):
    """Create answers `create_status`; each poll answers the next status (the last repeats)."""
    polls = iter(poll_statuses)
    last = {"status": poll_statuses[-1] if poll_statuses else create_status}

    def reply(received: Received) -> Reply:
        if received.method == "POST":
            return Reply(status=201, json_body=fx.prediction(create_status))
        last["status"] = next(polls, last["status"])
        return Reply(json_body=fx.prediction(last["status"]))

    return reply


def with_usage(records) -> list:
    return [r for r in records if r["usage_known"] == 1]


def assert_billed_once(records) -> None:
    billed = with_usage(records)
    assert len(billed) == 1
    row = billed[0]
    assert (row["input_tokens"], row["output_tokens"]) == (12, 2)
    assert json.loads(row["units"]) == {"seconds": fx.SECONDS}
    assert row["dedupe_key"] == f"replicate:{fx.PREDICTION_ID}"
    assert row["model"] == fx.MODEL


async def test_run_polls_until_succeeded_and_bills_once(proxy):
    proxy.upstream.reply = scripted("starting", ["processing", "succeeded"])
    output = await client(proxy).async_run(fx.MODEL, input={"prompt": "hi"})
    assert output == ["Hel", "lo"]
    sent = proxy.upstream.received
    assert [(r.method, r.path_qs) for r in sent] == [
        ("POST", CREATE_PATH),
        ("GET", f"/v1/predictions/{fx.PREDICTION_ID}"),
        ("GET", f"/v1/predictions/{fx.PREDICTION_ID}"),
    ]
    headers = {k.lower(): v for k, v in sent[0].headers.items()}
    assert headers["prefer"] == "wait" and headers["authorization"] == "Bearer r8_caller"
    records = await proxy.records(3)
    assert len(records) == 3
    assert records[0]["endpoint"] == CREATE_PATH and records[0]["model"] == fx.MODEL
    assert all(r["provider"] == "replicate" and r["outcome"] == "ok" for r in records)
    assert_billed_once(records)
    assert records[2]["usage_known"] == 1  # the poll that saw `succeeded`


async def test_succeeded_on_create_then_polled_again_bills_once(proxy):
    proxy.upstream.reply = scripted("succeeded", ["succeeded"])
    sdk = client(proxy)
    prediction = await sdk.models.predictions.async_create(
        model=fx.MODEL, input={"prompt": "hi"}, wait=True
    )
    assert prediction.status == "succeeded" and prediction.metrics["predict_time"] == fx.SECONDS
    for _ in range(2):
        again = await sdk.predictions.async_get(prediction.id)
        assert again.output == ["Hel", "lo"]
    records = await proxy.records(3)
    assert len(records) == 3
    assert_billed_once(records)
    assert records[0]["usage_known"] == 1  # the create call saw it first


async def test_create_by_version_then_wait(proxy):
    proxy.upstream.reply = scripted("starting", ["succeeded"])
    sdk = client(proxy)
    version = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
    prediction = await sdk.predictions.async_create(version=version, input={"prompt": "hi"})
    await prediction.async_wait()
    assert prediction.status == "succeeded"
    assert proxy.upstream.received[0].json()["version"] == version
    records = await proxy.records(2)
    assert records[0]["endpoint"] == "/v1/predictions"
    assert_billed_once(records)


async def test_upstream_error_reaches_the_sdk(proxy):
    proxy.upstream.reply = Reply(status=401, json_body=fx.ERROR_BODY)
    with pytest.raises(ReplicateError) as caught:
        await client(proxy).models.predictions.async_create(model=fx.MODEL, input={})
    assert caught.value.status == 401 and caught.value.detail == fx.ERROR_BODY["detail"]
    record = await proxy.record()
    assert record["outcome"] == "upstream_error" and record["usage_known"] == 0


async def test_proxy_error_is_problem_details(upstream_server):
    from tests.conftest import start_proxy

    fake, server = upstream_server
    proxy, proxy_server = await start_proxy(fake, server)
    await server.close()
    try:
        with pytest.raises(ReplicateError) as caught:
            await client(proxy).models.predictions.async_create(model=fx.MODEL, input={})
        assert caught.value.status == 502
        assert caught.value.title == "Bad Gateway"
        assert caught.value.detail.startswith("MeterFox: upstream replicate")
    finally:
        await proxy.close_clients()
        await proxy_server.close()
