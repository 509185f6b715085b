"""The first pipeline end to end on the real embedded stack: HTTP, bare Kafka, logs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from control.errors import InferenceError, NotDeployedError
from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from engine import codecs
from engine.errors import CodecError
from streams.aiokafka_internals import topic_partitions
from streams.messages import ERROR
from tests.integration._streams import kafka_round_trip

pytestmark = pytest.mark.slow

X = np.random.default_rng(7).random((6, 10), dtype=np.float32)


def expected(model: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(model)).run(None, {"float_input": x})[0]


@pytest.fixture(scope="module")
def pipeline(client: Client, diabetes_onnx: Path) -> Pipeline:
    model = client.upload_model("diabetes", diabetes_onnx).configure("onnx")
    pipeline = client.build_pipeline("e2e-diabetes").add_model_step(model)
    return pipeline.deploy(quiet=True)


def test_health_needs_no_token_and_everything_else_does(stack: dict[str, Any]) -> None:
    url = stack["server_url"]
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/readyz").status_code == 200
    for method, path in [
        ("GET", "/pipelines"),
        ("GET", "/models"),
        ("POST", "/pipelines/e2e-diabetes"),
    ]:
        response = httpx.request(method, f"{url}{path}")
        assert response.status_code == 401, path
        assert "bearer token" in response.json()["message"]
    wrong = httpx.get(f"{url}/pipelines", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_stack_file_is_owner_only(stack_home: Path) -> None:
    assert (stack_home / "stack.json").stat().st_mode & 0o077 == 0


def test_deploy_reports_running_with_model_statuses(pipeline: Pipeline) -> None:
    status = pipeline.status()
    assert status["status"] == "Running"
    models = status["engines"][0]["model_statuses"]["models"]
    assert [(m["name"], m["status"]) for m in models] == [("diabetes", "Running")]
    assert len(models[0]["sha"]) == 64


def test_sdk_infer_matches_onnxruntime(pipeline: Pipeline, diabetes_onnx: Path) -> None:
    frame = pd.DataFrame({"tensor": [row.tolist() for row in X]})
    result = pipeline.infer(frame)
    assert {"time", "in.tensor", "out.variable", "check_failures"} <= set(result.columns)
    got = np.stack(result["out.variable"].to_numpy())
    np.testing.assert_allclose(got, expected(diabetes_onnx, X), rtol=1e-5)
    table = pipeline.infer(pa.table({"tensor": [row.tolist() for row in X]}))
    assert isinstance(table, pa.Table) and table.num_rows == len(X)


def test_http_pandas_records_in_and_out(
    stack: dict[str, Any], pipeline: Pipeline, diabetes_onnx: Path
) -> None:
    records = [{"tensor": row.tolist()} for row in X[:2]]
    response = httpx.post(
        pipeline.url(),
        content=json.dumps(records),
        timeout=30,
        headers={
            "Authorization": f"Bearer {stack['token']}",
            "Content-Type": codecs.PANDAS_RECORDS,
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    rows = response.json()
    assert [len(r["in.tensor"]) for r in rows] == [10, 10]
    np.testing.assert_allclose(
        [r["out.variable"] for r in rows], expected(diabetes_onnx, X[:2]), rtol=1e-5
    )


def test_http_arrow_file_in_and_out(stack: dict[str, Any], pipeline: Pipeline) -> None:
    batch = codecs.batch_from_arrays({"tensor": X})
    response = httpx.post(
        pipeline.url(),
        content=codecs.encode(batch, codecs.ARROW_FILE),
        timeout=30,
        headers={"Authorization": f"Bearer {stack['token']}", "Content-Type": codecs.ARROW_FILE},
    )
    assert response.status_code == 200
    assert codecs.decode(response.content, codecs.ARROW_FILE).num_rows == len(X)


def test_an_http_arrow_stream_goes_to_the_pipeline_as_it_came(
    stack: dict[str, Any], pipeline: Pipeline, diabetes_onnx: Path
) -> None:
    """The gateway checks an Arrow stream body and sends those very bytes as the request's
    record, not an encoding of its own: here a stream of two batches, which the worker
    joins as the gateway did."""
    halves = [codecs.batch_from_arrays({"tensor": x}) for x in (X[:2], X[2:])]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, halves[0].schema) as writer:
        for half in halves:
            writer.write_batch(half)
    body = sink.getvalue().to_pybytes()
    response = httpx.post(
        pipeline.url(),
        content=body,
        timeout=30,
        headers={"Authorization": f"Bearer {stack['token']}", "Content-Type": codecs.ARROW_STREAM},
    )
    assert response.status_code == 200, response.text
    answer = codecs.decode(response.content, codecs.ARROW_STREAM)
    np.testing.assert_allclose(
        answer.column("out.variable").to_pylist(), expected(diabetes_onnx, X), rtol=1e-5
    )
    values = asyncio.run(_values_in(stack["kafka_bootstrap"], pipeline.topics()["input"]))
    assert body in values


def test_bare_kafka_producer_and_consumer(
    stack: dict[str, Any], pipeline: Pipeline, diabetes_onnx: Path
) -> None:
    topics = pipeline.topics()
    assert set(topics) >= {"input", "output", "logs"}
    arrow = codecs.encode(codecs.batch_from_arrays({"tensor": X}), codecs.ARROW_STREAM)
    records = json.dumps([{"tensor": row.tolist()} for row in X[:3]]).encode()
    answers = asyncio.run(
        kafka_round_trip(
            stack["kafka_bootstrap"],
            topics,
            [(codecs.ARROW_STREAM, arrow), (codecs.PANDAS_RECORDS, records)],
        )
    )
    assert sorted(a.batch.num_rows for a in answers.values()) == [3, len(X)]
    for _, batch in answers.values():
        n = batch.num_rows
        np.testing.assert_allclose(
            codecs.column_to_ndarray(batch.column("out.variable")),
            expected(diabetes_onnx, X[:n]),
            rtol=1e-5,
        )
    logs = pipeline.logs(limit=1000)
    for request_id, (_, batch) in answers.items():
        rows = logs[logs["request_id"] == request_id]
        assert sorted(rows["row"]) == list(range(batch.num_rows))


def test_a_failed_kafka_request_is_answered_with_its_input_and_logged(
    stack: dict[str, Any], pipeline: Pipeline
) -> None:
    topics = pipeline.topics()
    misshaped = codecs.encode(codecs.batch_from_arrays({"tensor": X[:2, :3]}), codecs.ARROW_STREAM)
    answers = asyncio.run(
        kafka_round_trip(stack["kafka_bootstrap"], topics, [(codecs.ARROW_STREAM, misshaped)])
    )
    ((request_id, (headers, carried)),) = answers.items()
    assert b"dimension 1 is 3, must be 10" in headers[ERROR]
    np.testing.assert_allclose(codecs.column_to_ndarray(carried.column("in.tensor")), X[:2, :3])
    failed = pipeline.logs(limit=1000, valid=False)
    assert sorted(failed[failed["request_id"] == request_id]["row"]) == [0, 1]


def test_answers_are_logged_off_the_result_topic_so_the_log_topic_stays_empty(
    stack: dict[str, Any], pipeline: Pipeline
) -> None:
    pipeline.infer(pd.DataFrame({"tensor": [X[0].tolist()]}))
    assert len(pipeline.logs(limit=1)) == 1
    assert asyncio.run(_records_in(stack["kafka_bootstrap"], pipeline.topics()["logs"])) == 0


async def _records_in(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


async def _values_in(bootstrap: str, topic: str) -> list[bytes | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        values: list[bytes | None] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                values += [r.value for r in records]
        return values
    finally:
        await consumer.stop()


def test_logs_newest_first_with_guide_columns(pipeline: Pipeline) -> None:
    marker = X.copy()
    marker[:, 0] = 0.123
    pipeline.infer(pd.DataFrame({"tensor": [row.tolist() for row in marker[:2]]}))
    logs = pipeline.logs(limit=5)
    assert {
        "time",
        "in.tensor",
        "out.variable",
        "check_failures",
        "metadata.pipeline_version",
        "metadata.elapsed_ns",
    } <= set(logs.columns)
    assert list(logs["time"]) == sorted(logs["time"], reverse=True)
    assert pytest.approx(logs["in.tensor"].iloc[0][0], rel=1e-6) == 0.123  # seen at once


def test_malformed_and_misshaped_data_get_clear_errors(
    stack: dict[str, Any], pipeline: Pipeline
) -> None:
    headers = {"Authorization": f"Bearer {stack['token']}", "Content-Type": "application/json"}
    bad = httpx.post(pipeline.url(), content=b"{not json", headers=headers, timeout=30)
    assert bad.status_code == 400
    assert bad.json()["error"] == CodecError.__name__
    with pytest.raises(InferenceError, match=r"float_input.*dimension 1 is 3, must be 10"):
        pipeline.infer(pd.DataFrame({"tensor": [[1.0, 2.0, 3.0]]}))
    # The worker kept running: the next request is answered.
    assert len(pipeline.infer(pd.DataFrame({"tensor": [X[0].tolist()]}))) == 1


def test_inference_on_an_undeployed_pipeline_says_deploy_first(client: Client) -> None:
    idle = client.build_pipeline("e2e-idle")
    assert idle.status() == {"status": "Pipeline e2e-idle is not deployed"}
    with pytest.raises(NotDeployedError, match="deploy"):
        idle.infer(pd.DataFrame({"tensor": [X[0].tolist()]}))


def test_undeploy_stops_workers(client: Client, diabetes_onnx: Path) -> None:
    model = client.get_model("diabetes")
    pipeline = client.build_pipeline("e2e-short").add_model_step(model).deploy(quiet=True)
    pids = [e["pid"] for e in pipeline.status()["engines"]]
    assert pids and all(_alive(pid) for pid in pids)
    pipeline.undeploy()
    assert pipeline.status() == {"status": "Pipeline e2e-short is not deployed"}
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_open_inference_protocol_v2(
    stack: dict[str, Any], pipeline: Pipeline, diabetes_onnx: Path
) -> None:
    url, headers = stack["server_url"], {"Authorization": f"Bearer {stack['token']}"}
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    body = {
        "id": "r1",
        "inputs": [
            {
                "name": "tensor",
                "shape": [2, 10],
                "datatype": "FP32",
                "data": X[:2].reshape(-1).tolist(),
            }
        ],
    }
    response = httpx.post(
        f"{url}/v2/models/e2e-diabetes/infer", json=body, headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert list(outputs) == ["variable"] and outputs["variable"]["shape"] == [2, 1]
    np.testing.assert_allclose(
        outputs["variable"]["data"], expected(diabetes_onnx, X[:2]).reshape(-1), rtol=1e-5
    )
    meta = httpx.get(f"{url}/v2/models/e2e-diabetes", headers=headers).json()
    assert meta["inputs"] == [{"name": "float_input", "datatype": "FP32", "shape": [-1, 10]}]


def test_metrics_need_the_token_and_count_requests(
    stack: dict[str, Any], pipeline: Pipeline
) -> None:
    url = f"{stack['server_url']}/metrics"
    assert httpx.get(url).status_code == 401
    pipeline.infer(pd.DataFrame({"tensor": [X[0].tolist()]}))
    text = httpx.get(url, headers={"Authorization": f"Bearer {stack['token']}"}).text
    samples = {f.name: f.samples for f in text_string_to_metric_families(text)}
    assert any(
        s.labels
        == {
            "method": "POST",
            "path": "/pipelines/{name}",
            "pipeline": "e2e-diabetes",
            "status": "200",
        }
        and s.value >= 1
        for s in samples["weir_http_requests"]
    )
    assert "weir_deployed_pipelines" in samples
    assert any(
        s.labels["pipeline"] == "e2e-diabetes" and s.value == 1
        for s in samples["weir_worker_running"]
    )
