"""Micro-batching on the real stack: a burst of single-row records, each answered with its own
row, on the partition its request came on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from aiokafka import AIOKafkaProducer

from control.sdk.client import Client
from engine import codecs
from streams.messages import REQUEST_ID
from tests.integration._streams import Reader, Sent, is_error, numbered_row, produce

pytestmark = pytest.mark.slow


def test_200_single_row_messages_each_get_their_own_answer(
    client: Client, stack: dict[str, Any], diabetes_onnx: Path
) -> None:
    model = client.upload_model("batching", diabetes_onnx).configure("onnx")
    pipeline = client.build_pipeline("micro-batching").add_model_step(model).deploy(quiet=True)
    bootstrap, topics, prefix = stack["kafka_bootstrap"], pipeline.topics(), "mb"
    sent = Sent()

    async def scenario() -> dict[str, Any]:
        reader = Reader(bootstrap, topics["output"], prefix)
        await reader.start()
        try:  # as fast as the producer goes, so the worker sees many at once
            await produce(bootstrap, topics["input"], prefix, 200, per_second=1e9, sent=sent)
            missing = await reader.wait_for(set(sent.where), timeout_s=60)
            assert not missing, sorted(missing)[:5]
            return reader.answers
        finally:
            await reader.stop()

    try:
        answers = asyncio.run(scenario())
        session = ort.InferenceSession(str(diabetes_onnx))
        for rid, (answer,) in answers.items():
            assert not is_error(answer) and answer.batch is not None
            assert answer.batch.num_rows == 1
            x = codecs.decode(numbered_row(int(rid.split("-")[1])), codecs.ARROW_STREAM)
            tensor = codecs.column_to_ndarray(x.column("tensor"))
            np.testing.assert_array_equal(
                codecs.column_to_ndarray(answer.batch.column("in.tensor")), tensor
            )
            np.testing.assert_allclose(
                codecs.column_to_ndarray(answer.batch.column("out.variable")),
                session.run(None, {"float_input": tensor})[0],
                rtol=1e-5,
            )
    finally:
        pipeline.undeploy()


def test_an_answer_comes_on_the_partition_its_request_came_on(
    client: Client, stack: dict[str, Any], diabetes_onnx: Path
) -> None:
    model = client.upload_model("lanes", diabetes_onnx).configure("onnx")
    pipeline = client.build_pipeline("lanes").add_model_step(model).deploy(quiet=True)
    bootstrap, topics = stack["kafka_bootstrap"], pipeline.topics()
    sent_to = {f"lane-{n}": n % 4 for n in range(40)}  # no keys: the partitions are ours

    async def scenario() -> dict[str, Any]:
        reader = Reader(bootstrap, topics["output"], "lane")
        await reader.start()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for rid, partition in sent_to.items():
                await producer.send(
                    topics["input"],
                    numbered_row(0),
                    partition=partition,
                    headers=[(REQUEST_ID, rid.encode())],
                )
            await producer.flush()
            missing = await reader.wait_for(set(sent_to), timeout_s=60)
            assert not missing, sorted(missing)[:5]
            return reader.answers
        finally:
            await producer.stop()
            await reader.stop()

    try:
        answers = asyncio.run(scenario())
        assert {rid: a.partition for rid, (a,) in answers.items()} == sent_to
    finally:
        pipeline.undeploy()
