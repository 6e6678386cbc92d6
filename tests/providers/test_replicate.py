"""The Replicate adapter: model from URL or version, usage only from a succeeded prediction."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from meterfox_cli.providers.replicate import ReplicateFormat
from meterfox_cli.usage import Usage
from tests.fixtures import replicate as fx
from tests.providers.taps import cut_points, split, through_tap

WIRE = ReplicateFormat()
JSON = "application/json"


@pytest.mark.parametrize(
    ("path", "body", "model"),
    [
        ("/v1/models/meta/meta-llama-3-8b-instruct/predictions", {"input": {}}, fx.MODEL),
        ("/v1/deployments/acme/my-llama/predictions", {"input": {}}, "acme/my-llama"),
        (
            "/v1/predictions",
            {
                "version": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
                "input": {},
            },
            "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
        ),
        (
            "/v1/predictions",
            {"version": "stability-ai/sdxl:7762fd07", "stream": True},
            "stability-ai/sdxl:7762fd07",
        ),
        ("/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu", None, None),
    ],
)
def test_model_from_url_or_version_and_never_streamed(path, body, model):
    plan = WIRE.plan(path, {}, json.dumps(body).encode() if body else b"")
    assert (plan.model, plan.stream) == (model, False)


def read(body: dict, path: str = "/v1/predictions/x", request: bytes = b""):
    return through_tap(WIRE, path, request, JSON, [json.dumps(body).encode()])[1]


def test_succeeded_prediction_has_tokens_and_seconds_and_a_dedupe_key():
    reading = read(fx.prediction("succeeded"))
    assert reading.model == fx.MODEL
    assert reading.usage == Usage(**fx.EXPECTED, units=(("seconds", fx.SECONDS),))
    assert reading.dedupe_key == f"replicate:{fx.PREDICTION_ID}"


def test_time_billed_model_has_seconds_only():
    reading = read(fx.IMAGE_MODEL_BODY)
    assert reading.model == "stability-ai/sdxl"
    assert reading.usage == Usage(units=(("seconds", 6.8),))


@pytest.mark.parametrize("status", ["starting", "processing", "failed", "canceled", "aborted"])
def test_unfinished_or_unsuccessful_predictions_have_no_usage(status):
    reading = read(fx.prediction(status))
    assert reading.usage is None and reading.dedupe_key is None
    assert reading.model == fx.MODEL


def test_model_falls_back_to_the_url_when_the_response_has_none():
    body = {**fx.prediction("starting"), "model": ""}
    path = "/v1/models/meta/meta-llama-3-8b-instruct/predictions"
    reading = read(body, path, b'{"input": {}}')
    assert reading.model == fx.MODEL


def test_error_body_is_problem_details():
    assert WIRE.error_body(504, "MeterFox: upstream replicate timed out", "upstream_timeout") == {
        "title": "Gateway Timeout",
        "detail": "MeterFox: upstream replicate timed out",
        "status": 504,
    }
    assert read(fx.ERROR_BODY).usage is None


@settings(max_examples=100, deadline=None)
@given(cut_points(json.dumps(fx.prediction("succeeded")).encode()))
def test_body_split_anywhere_gives_same_bytes_and_usage(cuts):
    data = json.dumps(fx.prediction("succeeded")).encode()
    whole = through_tap(WIRE, "/v1/predictions/x", b"", JSON, [data])
    assert whole[0] == data and whole[1].usage is not None
    assert through_tap(WIRE, "/v1/predictions/x", b"", JSON, split(data, cuts)) == whole
