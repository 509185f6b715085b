"""Result messages as a one-step diabetes pipeline's worker sends them, for log agent tests:
made, sent, and looked for in a log store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaProducer

from engine import codecs
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.pipeline import CompiledPipeline, load_pipeline
from engine.runtimes.base import sha256_file
from streams.logstore import LogStore
from streams.messages import Envelope


def diabetes_pipeline(diabetes_onnx: Path) -> CompiledPipeline:
    ref = ModelRef(name="diabetes", version="1", sha=sha256_file(diabetes_onnx), runtime="onnx")
    return load_pipeline("v1", PipelineSpec(steps=[ModelStep(model=ref)]), lambda _: diabetes_onnx)


def answers(diabetes_onnx: Path, first: int, count: int) -> list[tuple[str, bytes]]:
    """`count` one-row result messages (request ids r<first>...), as the pipeline's last step
    sends them."""
    pipeline = diabetes_pipeline(diabetes_onnx)
    x = np.random.default_rng(0).random((count, 10), dtype=np.float32)
    out = []
    for i in range(count):
        result = pipeline.run(codecs.batch_from_arrays({"tensor": x[i : i + 1]}))
        out.append((f"r{first + i}", codecs.encode(result, codecs.ARROW_STREAM)))
    return out


async def send_answers(
    bootstrap: str,
    topic: str,
    results: list[tuple[str, bytes]],
    *,
    transactional: bool = False,
    partitions: int | None = None,
) -> None:
    """Answers as a worker sends them, in one transaction if `transactional` (Apache Kafka
    only); the i-th to partition i % `partitions`, or where the producer puts it (None)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id="answers" if transactional else None
    )
    await producer.start()
    try:
        if transactional:
            await producer.begin_transaction()
        for i, (request_id, value) in enumerate(results):
            headers = Envelope(request_id=request_id, version="v1").headers()
            partition = None if partitions is None else i % partitions
            await producer.send_and_wait(topic, value, headers=headers, partition=partition)
        if transactional:
            await producer.commit_transaction()
    finally:
        await producer.stop()


def stored_ids(store: LogStore, pipeline: str) -> list[str]:
    """The request ids of workspace "ws"'s `pipeline` rows in `store`, sorted."""
    return sorted(store.query("ws", pipeline, limit=None).column("request_id").to_pylist())
