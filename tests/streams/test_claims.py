"""streams/claims.py on the real broker and Redis: a worker that takes over partitions a dead
worker never released marks the answers that may repeat, and only those."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaProducer, TopicPartition

from control.embedded import Service
from control.registry import Registry
from streams.messages import Envelope
from tests.streams._loops import TOPICS, loops, read_all, run_until, send_rows


async def test_a_worker_taking_over_from_a_dead_one_marks_what_may_repeat_and_nothing_else(
    broker: str, kafka_service: Service, redis_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    """A worker died holding every partition of the group (claimed, never released). The next
    one marks the answers to what the input held when it took over, and not what came
    after. Stopped cleanly, it releases its partitions: the worker after it
    marks nothing, though it finds records waiting too."""
    bootstrap, name = kafka_service.address, f"claims-{broker}"  # one Redis for both legs
    group, registry = f"weir.ws.{name}", Registry(redis_service.address)
    source = TOPICS.input("ws", name)
    partitions = {TopicPartition(source.name, p) for p in range(source.partitions)}
    output, source = TOPICS.output("ws", name).name, source.name
    x = np.random.default_rng(2).random((30, 10), dtype=np.float32)
    [first] = await loops(bootstrap, name, tmp_path, diabetes_onnx, claims=registry)
    assert registry.claim_partitions(group, "dead-worker", partitions) == set()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await send_rows(producer, source, x[:10], partitions=4)  # there before the takeover

        async def then_more() -> None:
            assert len(await read_all(bootstrap, output, 10)) == 10
            await send_rows(producer, source, x[10:20], partitions=4, first=10)
            assert len(await read_all(bootstrap, output, 20)) == 20

        await run_until(first, asyncio.ensure_future(then_more()))
        await send_rows(producer, source, x[20:], partitions=4, first=20)  # waiting, then
        [second] = await loops(bootstrap, name, tmp_path, diabetes_onnx, claims=registry)
        await run_until(second, asyncio.ensure_future(read_all(bootstrap, output, 30)))
    finally:
        await producer.stop()

    answers = [Envelope.parse(a.headers) for a in await read_all(bootstrap, output, 31, 3.0)]
    assert sorted(a.request_id for a in answers) == sorted(f"r{i}" for i in range(30))
    assert {a.request_id for a in answers if a.redelivered} == {f"r{i}" for i in range(10)}
    assert second._counters.processed == 10  # it ran the waiting ones
    assert registry.claim_partitions(group, "probe", partitions) == set()  # all released


async def test_a_worker_that_leaves_before_reaching_what_may_repeat_leaves_it_claimed(
    broker: str, kafka_service: Service, redis_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    """The worker that takes over from a dead one is told to drain before it read any input
    (it holds the input topic): it stops without releasing the input's partitions, so the
    worker after it still marks the records that may repeat."""
    bootstrap, name = kafka_service.address, f"claims-left-{broker}"
    group, registry = f"weir.ws.{name}", Registry(redis_service.address)
    source = TOPICS.input("ws", name)
    output = TOPICS.output("ws", name).name
    registry.claim_partitions(
        group, "dead-worker", {TopicPartition(source.name, p) for p in range(source.partitions)}
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        [first] = await loops(bootstrap, name, tmp_path, diabetes_onnx, claims=registry)
        await send_rows(producer, source.name, np.ones((8, 10), np.float32), partitions=4)
        first.hold(source.name)
        await run_until(first, asyncio.ensure_future(asyncio.sleep(3)))
        assert first._counters.processed == 0
        [second] = await loops(bootstrap, name, tmp_path, diabetes_onnx, claims=registry)
        await run_until(second, asyncio.ensure_future(read_all(bootstrap, output, 8)))
    finally:
        await producer.stop()
    answers = [Envelope.parse(a.headers) for a in await read_all(bootstrap, output, 9, 3.0)]
    assert len(answers) == 8 and all(a.redelivered for a in answers)
