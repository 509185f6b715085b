"""streams/claims.py on the real broker and Redis: a worker that takes over partitions a dead
worker never released marks the answers that may repeat, and only those."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.protocol.admin import DeleteGroupsRequest

from control.embedded import Service
from control.registry import Registry
from streams.aiokafka_internals import ask_group_coordinator
from streams.claims import RedeliveryMarks
from streams.membership import reset_group
from streams.messages import Envelope
from streams.settings import WorkerSettings
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


async def test_what_is_read_again_after_a_group_reset_lost_its_offsets_is_marked(
    broker: str, kafka_service: Service, redis_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    """A stuck group's reset (streams.membership.reset_group) deletes the group and commits
    its offsets again, and on Tansu that commit can be refused (a member rejoined first):
    the group's next reader then starts from the beginning. Here the offsets are lost after
    the reset by deleting the group again; every answer read again must carry the mark."""
    bootstrap, name = kafka_service.address, f"claims-reset-{broker}"
    group, registry = f"weir.ws.{name}", Registry(redis_service.address)
    source, output = TOPICS.input("ws", name).name, TOPICS.output("ws", name).name
    settings = WorkerSettings(kafka_bootstrap=bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        [first] = await loops(bootstrap, name, tmp_path, diabetes_onnx, claims=registry)
        await send_rows(producer, source, np.ones((8, 10), np.float32), partitions=4)
        await run_until(first, asyncio.ensure_future(read_all(bootstrap, output, 8)))
        marks = RedeliveryMarks(registry, group, "resetting-worker", settings)
        await reset_group(settings, group, [source], hold=marks.hold_for_reset)
        probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
        await probe.start()
        try:  # the offsets lost
            await ask_group_coordinator(probe, group, DeleteGroupsRequest([group]))
        finally:
            await probe.stop()
        [second] = await loops(bootstrap, name, tmp_path, diabetes_onnx, claims=registry)
        await run_until(second, asyncio.ensure_future(read_all(bootstrap, output, 16)))
    finally:
        await producer.stop()
    answers = [Envelope.parse(a.headers) for a in await read_all(bootstrap, output, 17, 3.0)]
    assert len(answers) == 16 and second._counters.processed == 8  # all read again
    marks_by_request: dict[str, list[bool]] = {}
    for a in answers:  # in each partition's order: the first answer, then the one read again
        marks_by_request.setdefault(a.request_id, []).append(a.redelivered)
    assert marks_by_request == {f"r{i}": [False, True] for i in range(8)}
