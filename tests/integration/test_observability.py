"""Metrics, trace context and the console's JSON on the real stack: a two-step pipeline (a
Python step, then the diabetes model) answering over HTTP and over Kafka."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from streams.messages import REQUEST_ID

pytestmark = pytest.mark.slow

NAME = "observed"
HALVE = """
import numpy as np
def process_data(input_data):
    return {"float_input": (input_data["tensor"] * 0.5).astype(np.float32)}
"""
X = np.random.default_rng(3).random((100, 10), dtype=np.float32)
ROWS = pd.DataFrame({"tensor": [row.tolist() for row in X]})


def _trace() -> str:
    return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"


@pytest.fixture(scope="module")
def observed(
    client: Client, diabetes_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    halve = tmp_path_factory.mktemp("observed") / "halve.py"
    halve.write_text(HALVE)
    pipeline = (
        client.build_pipeline(NAME)
        .add_model_step(client.upload_model("obs-halve", halve))
        .add_model_step(client.upload_model("obs-diabetes", diabetes_onnx))
    )
    yield pipeline.deploy(quiet=True)
    pipeline.undeploy()


def _get(stack: dict[str, Any], path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{stack['server_url']}{path}",
        params=params,
        timeout=30,
        headers={"Authorization": f"Bearer {stack['token']}"},
    )


def _scrape(stack: dict[str, Any]) -> dict[str, list[Any]]:
    response = _get(stack, "/metrics")
    assert response.status_code == 200
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def _mine(samples: list[Any], **labels: str) -> list[Any]:
    return [s for s in samples if {"pipeline": NAME, **labels}.items() <= s.labels.items()]


def test_metrics_need_the_token_and_cover_the_pipeline(
    stack: dict[str, Any], observed: Pipeline
) -> None:
    assert httpx.get(f"{stack['server_url']}/metrics").status_code == 401
    observed.infer(ROWS)
    observed.logs(limit=1)  # the log store holds the answer now
    families = _scrape(stack)
    http = _mine(families["weir_http_requests"], path="/pipelines/{name}", status="200")
    assert http and http[0].value >= 1
    lag = _mine(families["weir_consumer_lag"], topic=f"default.{NAME}.in")
    assert sorted(int(s.labels["partition"]) for s in lag) == [0, 1, 2, 3]
    assert {s.labels["group"] for s in lag} == {f"weir.default.{NAME}"}
    rows = _mine(families["weir_logstore_rows"], challenger="")
    assert rows and rows[0].value >= len(ROWS)
    assert _mine(families["weir_logstore_bytes"])[0].value > 0
    running = _mine(families["weir_worker_running"])
    assert [s.value for s in running] == [1.0]
    restarts = _mine(families["weir_worker_restarts"])
    assert [s.value for s in restarts] == [0.0]
    assert _mine(families["weir_request_seconds"], le="+Inf")


def _rows_in(stack: dict[str, Any]) -> float:
    return float(sum(s.value for s in _mine(_scrape(stack)["weir_step_rows_in"])))


def _rows_in_settled(stack: dict[str, Any]) -> float:
    """The rows the pipeline's steps read, once the workers' heartbeats (every second) have
    reported those of earlier tests: the same figure twice, 2.5 s apart."""
    last, deadline = _rows_in(stack), time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(2.5)
        now = _rows_in(stack)
        if now == last:
            return now
        last = now
    raise AssertionError("the workers' row counts kept changing with no traffic")


def test_workers_count_rows_per_step(stack: dict[str, Any], observed: Pipeline) -> None:
    before = _rows_in_settled(stack)
    observed.infer(ROWS)
    deadline, after = time.monotonic() + 10, before
    while after - before < 2 * len(ROWS) and time.monotonic() < deadline:  # the workers'
        time.sleep(0.2)  # counts come with their heartbeats
        after = _rows_in(stack)
    assert after - before == 2 * len(ROWS)  # both steps read every row


def test_a_traceparent_over_http_reaches_the_log_row(
    stack: dict[str, Any], observed: Pipeline
) -> None:
    trace = _trace()
    response = httpx.post(
        f"{stack['server_url']}/pipelines/{NAME}",
        content=ROWS.head(3).to_json(orient="records"),
        timeout=30,
        headers={
            "Authorization": f"Bearer {stack['token']}",
            "Content-Type": "application/json",
            "traceparent": trace,
        },
    )
    assert response.status_code == 200, response.text
    logged = observed.logs(limit=1000)
    assert (logged["metadata.traceparent"] == trace).sum() == 3


async def test_a_traceparent_on_kafka_reaches_the_result_record_and_the_log_row(
    stack: dict[str, Any], observed: Pipeline
) -> None:
    topics = observed.topics()
    trace, request_id = _trace(), uuid.uuid4().hex
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack["kafka_bootstrap"], enable_auto_commit=False
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=stack["kafka_bootstrap"])
    await producer.start()
    try:
        tps = [
            TopicPartition(topics["output"], p)
            for p in sorted(consumer.partitions_for_topic(topics["output"]) or range(4))
        ]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        await producer.send_and_wait(
            topics["input"],
            json.dumps([{"tensor": X[0].tolist()}]).encode(),
            headers=[
                ("content-type", b"application/json; format=pandas-records"),
                (REQUEST_ID, request_id.encode()),
                ("traceparent", trace.encode()),
            ],
        )
        headers = await _answer(consumer, request_id)
    finally:
        await producer.stop()
        await consumer.stop()
    assert headers.get("traceparent") == trace.encode()
    logged = observed.logs(limit=1000)
    assert logged.loc[logged["metadata.traceparent"] == trace, "request_id"].tolist() == [
        request_id
    ]


def _rows_in_last_minute(stack: dict[str, Any]) -> float:
    """Rows the series shows in its last minute of 1 s buckets, once the bucket of the
    request before has closed (about a second)."""
    rows = 0.0
    for _ in range(20):
        series = _get(stack, f"/pipelines/{NAME}/series", minutes=1, bucket_s=1).json()
        assert len(series["time"]) == len(series["p99_ms"]) == 60
        rows = sum(series["rows_per_s"])
        if rows:
            return rows
        time.sleep(0.5)
    return rows


async def _answer(consumer: AIOKafkaConsumer, request_id: str) -> dict[str, bytes]:
    """The headers of the result record answering `request_id`."""
    for _ in range(150):
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                headers = dict(record.headers)
                if headers.get(REQUEST_ID) == request_id.encode():
                    return headers
    raise AssertionError(f"no answer to request {request_id} within 30s")


def test_console_json_and_page(stack: dict[str, Any], observed: Pipeline) -> None:
    observed.infer(ROWS)
    url = stack["server_url"]
    assert httpx.get(f"{url}/console/pipelines").status_code == 401
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "weir console" in page.text  # no token: the login page
    assert httpx.get(f"{url}/static/js/app.js").status_code == 200
    assert httpx.get(f"{url}/static/vendor/uplot/LICENSE").status_code == 200
    row = next(r for r in _get(stack, "/console/pipelines").json() if r["name"] == NAME)
    assert row["replicas"] == 1 and row["deployed_version"] == observed.status()["version"]
    assert [e["role"] for e in row["engines"]] == ["main"]
    assert _rows_in_last_minute(stack) >= len(ROWS)
    lag = _get(stack, f"/pipelines/{NAME}/lag").json()
    assert {p["topic"] for p in lag} >= {f"default.{NAME}.in"}
    assert all(p["lag"] >= 0 for p in lag)
    assert _get(stack, "/pipelines/nope/lag").status_code == 404
