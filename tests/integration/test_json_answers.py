"""Answers in the request's own format, on the real stack: JSON rows produced with a plain
Kafka client (confluent-kafka, as a user's service would) come back as JSON that
`json.loads` reads, Arrow as Arrow, both logged alike; a deployment's
`result_format("arrow")` answers JSON requests in Arrow, and `result_format("json")` Arrow
requests in JSON while HTTP requests still get their answers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest

from control.sdk.client import Client
from control.sdk.config import DeploymentConfigBuilder
from control.sdk.pipeline import Pipeline
from engine import codecs
from streams.messages import CONTENT_TYPE, ERROR
from tests.integration._confluent import Answer, confluent_round_trip
from tests.integration._deployed import one_model_pipeline

pytestmark = pytest.mark.slow

X = np.random.default_rng(29).random((5, 10), dtype=np.float32)
WAIT_S = 30.0


@pytest.fixture(scope="module")
def by_request(client: Client, diabetes_onnx: Path) -> Iterator[Pipeline]:
    with one_model_pipeline(client, "ja-request", diabetes_onnx) as deployed:
        yield deployed


@pytest.fixture(scope="module")
def arrow_only(client: Client, diabetes_onnx: Path) -> Iterator[Pipeline]:
    config = DeploymentConfigBuilder().result_format("arrow").build()
    with one_model_pipeline(client, "ja-arrow", diabetes_onnx, config=config) as deployed:
        yield deployed


def _expected(model: Path) -> list[float]:
    return ort.InferenceSession(str(model)).run(None, {"float_input": X})[0].ravel().tolist()


def _json_rows(x: np.ndarray) -> bytes:
    return json.dumps([{"tensor": row.tolist()} for row in x]).encode()


def _arrow(x: np.ndarray) -> bytes:
    return codecs.encode(codecs.batch_from_arrays({"float_input": x}), codecs.ARROW_STREAM)


def _ask(
    bootstrap: str, pipeline: Pipeline, sent: dict[str, tuple[str, bytes]]
) -> dict[str, Answer]:
    return confluent_round_trip(bootstrap, pipeline.topics(), sent, WAIT_S)


def test_json_requests_get_json_answers_and_arrow_ones_arrow_and_both_are_logged(
    stack: dict[str, Any], by_request: Pipeline, diabetes_onnx: Path
) -> None:
    ids = {kind: f"ja-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("json", "arrow", "bad")}
    answers = _ask(
        stack["kafka_bootstrap"],
        by_request,
        {
            ids["json"]: ("application/json", _json_rows(X)),
            ids["arrow"]: (codecs.ARROW_STREAM, _arrow(X)),
            ids["bad"]: ("application/json", _json_rows(X[:, :3])),  # the model takes 10 values
        },
    )
    expected = _expected(diabetes_onnx)

    headers, value = answers[ids["json"]]
    assert headers[CONTENT_TYPE].decode() == codecs.PANDAS_RECORDS
    rows = json.loads(value)  # what a user's tools read: plain JSON rows
    assert [row["metadata.row"] for row in rows] == [0, 1, 2, 3, 4]
    assert [v for row in rows for v in row["out.variable"]] == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose([row["in.tensor"] for row in rows], X, rtol=1e-6)
    assert {row["metadata.pipeline_version"] for row in rows} != {""}

    headers, value = answers[ids["arrow"]]
    assert headers[CONTENT_TYPE].decode() == codecs.ARROW_STREAM
    batch = codecs.decode(value, codecs.ARROW_STREAM)
    assert codecs.column_to_ndarray(batch.column("out.variable")).ravel().tolist() == pytest.approx(
        expected, rel=1e-5
    )

    headers, value = answers[ids["bad"]]  # an error reply, in the request's format too
    assert ERROR in headers and headers[CONTENT_TYPE].decode() == codecs.PANDAS_RECORDS
    np.testing.assert_allclose([row["in.tensor"] for row in json.loads(value)], X[:, :3], rtol=1e-6)

    logs: pa.Table = by_request.logs(limit=1000, arrow=True)  # type: ignore[assignment]
    logged = {rid: [r for r in logs.to_pylist() if r["request_id"] == rid] for rid in ids.values()}
    json_rows, arrow_rows = logged[ids["json"]], logged[ids["arrow"]]
    assert (
        sorted(r["row"] for r in json_rows)
        == sorted(r["row"] for r in arrow_rows)
        == [0, 1, 2, 3, 4]
    )
    for rows_of in (json_rows, arrow_rows):
        by_row = sorted(rows_of, key=lambda r: r["row"])
        assert [v for r in by_row for v in r["out.variable"]] == pytest.approx(expected, rel=1e-5)
        assert all(r["time"] is not None and r["metadata.model"] for r in by_row)
    assert len(logged[ids["bad"]]) == 5
    assert all(r["anomaly.count"] == 1 and r["metadata.error"] for r in logged[ids["bad"]])


def test_a_deployment_that_answers_in_arrow_answers_json_requests_in_arrow(
    stack: dict[str, Any], arrow_only: Pipeline, diabetes_onnx: Path
) -> None:
    request_id = f"ja-forced-{uuid.uuid4().hex[:8]}"
    answers = _ask(
        stack["kafka_bootstrap"], arrow_only, {request_id: ("application/json", _json_rows(X))}
    )
    headers, value = answers[request_id]
    assert headers[CONTENT_TYPE].decode() == codecs.ARROW_STREAM
    batch = codecs.decode(value, codecs.ARROW_STREAM)
    assert codecs.column_to_ndarray(batch.column("out.variable")).ravel().tolist() == pytest.approx(
        _expected(diabetes_onnx), rel=1e-5
    )


@pytest.fixture(scope="module")
def json_only(client: Client, diabetes_onnx: Path) -> Iterator[Pipeline]:
    config = DeploymentConfigBuilder().result_format("json").build()
    with one_model_pipeline(client, "ja-json", diabetes_onnx, config=config) as deployed:
        yield deployed


def test_a_deployment_that_answers_in_json_answers_arrow_and_http_requests_still_work(
    stack: dict[str, Any], json_only: Pipeline, diabetes_onnx: Path
) -> None:
    request_id = f"ja-json-{uuid.uuid4().hex[:8]}"
    answers = _ask(
        stack["kafka_bootstrap"], json_only, {request_id: (codecs.ARROW_STREAM, _arrow(X))}
    )
    headers, value = answers[request_id]
    assert headers[CONTENT_TYPE].decode() == codecs.PANDAS_RECORDS
    expected = _expected(diabetes_onnx)
    assert [v for row in json.loads(value) for v in row["out.variable"]] == pytest.approx(
        expected, rel=1e-5
    )
    # The HTTP gateway sends Arrow and reads the JSON answer back in its result types.
    result = json_only.infer(pa.table({"tensor": pa.array(X.tolist())}))
    assert result.column("time").type == pa.timestamp("ms", tz="UTC")
    assert codecs.column_to_ndarray(
        result.column("out.variable")
    ).ravel().tolist() == pytest.approx(expected, rel=1e-5)
