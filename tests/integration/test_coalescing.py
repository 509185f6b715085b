"""Coalesced HTTP requests on the real stack: one Kafka record serves many requests, and
each request still gets its own rows, in input order, and its own rows in the logs.

A stack of its own (broker, Redis, server) coalesces requests (WEIR_COALESCE_REQUESTS=1)
and lets each record wait 300 ms for more, so concurrent requests share records.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from control.settings import Settings
from control.stack import down, up
from engine import codecs
from streams.messages import REQUESTS

pytestmark = pytest.mark.slow

REQUESTS_SENT = 24
TIMES_TWO = """
def process_data(input_data):
    return {"out": input_data["x"] * 2.0}
"""
REFUSES_NEGATIVE = """
def process_data(input_data):
    if (input_data["x"] < 0).any():
        raise ValueError("negative input")
    return {"out": input_data["x"] * 2.0}
"""
TIMES_THREE = """
def process_data(input_data):
    return {"out": input_data["x"] * 3.0}
"""


@pytest.fixture(scope="module")
def coalescing_server(
    broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, Any], Client]]:
    """A stack of its own, with a broker of the leg's kind (its server's settings differ)."""
    home = tmp_path_factory.mktemp("weir-coalescing")
    settings = Settings(home=home, broker=broker)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WEIR_COALESCE_REQUESTS", "1")
        patch.setenv("WEIR_COALESCE_LINGER_MS", "300")
        record = up(settings, detach=True, say=lambda _: None)
    try:
        yield record, Client(settings=Settings.discover(home=home))
    finally:
        down(settings, say=lambda _: None)


@pytest.fixture(scope="module")
def steps(
    coalescing_server: tuple[dict[str, Any], Client], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    _, client = coalescing_server
    root = tmp_path_factory.mktemp("coalesced-steps")
    (root / "two.py").write_text(TIMES_TWO)
    (root / "three.py").write_text(TIMES_THREE)
    (root / "picky.py").write_text(REFUSES_NEGATIVE)
    return {
        name: client.upload_model(name, root / f"{name}.py").configure("python")
        for name in ("two", "three", "picky")
    }


def _requests() -> list[np.ndarray]:
    """Requests of 1 to 5 rows; every value unique, so a row shows which request it is from."""
    return [np.arange(k * 10, k * 10 + 1 + k % 5, dtype=np.float64) for k in range(REQUESTS_SENT)]


async def _post_all(url: str, token: str, requests: list[np.ndarray]) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": codecs.ARROW_FILE}
    async with httpx.AsyncClient(timeout=60) as http:

        async def one(x: np.ndarray) -> httpx.Response:
            body = codecs.encode(codecs.batch_from_arrays({"x": x}), codecs.ARROW_FILE)
            return await http.post(url, content=body, headers=headers)

        return list(await asyncio.gather(*(one(x) for x in requests)))


async def _send_all(url: str, token: str, requests: list[np.ndarray]) -> list[pa.RecordBatch]:
    responses = await _post_all(url, token, requests)
    for response in responses:
        assert response.status_code == 200, response.text
    return [codecs.decode(r.content, codecs.ARROW_FILE) for r in responses]


async def _records_carrying_requests(bootstrap: str, topic: str) -> list[int]:
    """How many requests each record on `topic` carries (1 without the REQUESTS header)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        carried: list[int] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for msg in msgs:
                    header = dict(msg.headers).get(REQUESTS)
                    carried.append(len(json.loads(header)) if header else 1)
        return carried
    finally:
        await consumer.stop()


def _check_own_rows_in_order(
    sent: list[np.ndarray], answers: list[pa.RecordBatch], factors: set[float]
) -> None:
    for x, answer in zip(sent, answers):
        assert answer.column("in.x").to_pylist() == x.tolist()  # its own rows, in order
        assert answer.column("metadata.row").to_pylist() == list(range(len(x)))
        out = np.asarray(answer.column("out.out").to_pylist())
        assert set(np.round(out / np.maximum(x, 1e-9), 6)) <= factors | ({0.0} if 0 in x else set())


def test_concurrent_requests_share_records_and_each_gets_its_own_rows(
    coalescing_server: tuple[dict[str, Any], Client], steps: dict[str, Any]
) -> None:
    record, client = coalescing_server
    pipeline: Pipeline = client.build_pipeline("co-two").add_model_step(steps["two"])
    pipeline.deploy(quiet=True)
    try:
        sent = _requests()
        answers = asyncio.run(_send_all(pipeline.url(), record["token"], sent))
        _check_own_rows_in_order(sent, answers, {2.0})
        carried = asyncio.run(
            _records_carrying_requests(record["kafka_bootstrap"], pipeline.topics()["input"])
        )
        assert sum(carried) == REQUESTS_SENT and len(carried) < REQUESTS_SENT, carried
        # In the logs each request has its own id and its rows numbered from 0.
        logs = pipeline.logs(limit=1000)
        assert logs["request_id"].nunique() == REQUESTS_SENT
        for _, rows in logs.groupby("request_id"):
            rows = rows.sort_values("row")
            assert list(rows["row"]) == list(range(len(rows)))
            first = rows["in.x"].iloc[0]
            assert list(rows["in.x"]) == sent[int(first) // 10].tolist()
    finally:
        pipeline.undeploy()


def test_a_split_pipeline_answers_coalesced_requests_in_input_order(
    coalescing_server: tuple[dict[str, Any], Client], steps: dict[str, Any]
) -> None:
    record, client = coalescing_server
    pipeline = client.build_pipeline("co-split").add_random_split(
        [(1, steps["two"]), (1, steps["three"])]
    )
    pipeline.deploy(quiet=True)
    try:
        sent = _requests()
        answers = asyncio.run(_send_all(pipeline.url(), record["token"], sent))
        _check_own_rows_in_order(sent, answers, {2.0, 3.0})
        used = {
            name for answer in answers for name in answer.column("out._model_split").to_pylist()
        }
        assert any("two" in s for s in used) and any("three" in s for s in used)
    finally:
        pipeline.undeploy()


def test_a_bad_request_coalesced_with_good_ones_fails_alone(
    coalescing_server: tuple[dict[str, Any], Client], steps: dict[str, Any]
) -> None:
    record, client = coalescing_server
    pipeline = client.build_pipeline("co-picky").add_model_step(steps["picky"])
    pipeline.deploy(quiet=True)
    try:
        sent = _requests()
        bad = {3, 11}
        for k in bad:
            sent[k] = -sent[k] - 1.0
        responses = asyncio.run(_post_all(pipeline.url(), record["token"], sent))
        for k, (x, response) in enumerate(zip(sent, responses)):
            if k in bad:
                assert response.status_code == 422, response.text
                assert "negative input" in response.json()["message"]
            else:
                assert response.status_code == 200, response.text
                answer = codecs.decode(response.content, codecs.ARROW_FILE)
                assert answer.column("out.out").to_pylist() == (x * 2.0).tolist()
    finally:
        pipeline.undeploy()
