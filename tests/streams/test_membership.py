"""streams/membership.py: the member id a worker keeps across restarts, the join watch, and
(on the real broker) a group whose member is stuck in a long chunk still settles."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.protocol.admin import DescribeGroupsRequest

from control.embedded import Service
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.pipeline import load_pipeline
from engine.runtimes.base import sha256_file
from streams.admin import ensure_topics
from streams.aiokafka_internals import ask_group_coordinator
from streams.loop import StageLoop
from streams.membership import GroupStuck, JoinWatch, MemberRecord, reset_group
from streams.messages import Envelope
from streams.plan import Layout, worker_stages
from streams.settings import WorkerSettings
from streams.stage import StepCounters
from streams.topics import TopicSpec
from tests.streams._loops import TOPICS, read_all, send_rows

SLOW = """
import time
def process_data(input_data):
    if (input_data["tensor"][:, 0] == 77).any():
        time.sleep(25)
    return {"tensor": input_data["tensor"]}
"""


def test_a_member_record_keeps_each_groups_member_until_it_is_forgotten(tmp_path: Path) -> None:
    record = MemberRecord(tmp_path / "members" / "w-1.json")
    assert record.previous("g") is None
    record.remember("g", "m-1")
    record.remember("g.shadow", "m-2")
    record.remember("g", "m-3")
    again = MemberRecord(tmp_path / "members" / "w-1.json")  # the next process reads it
    assert again.previous("g") == "m-3" and again.previous("g.shadow") == "m-2"
    again.forget("g")
    again.forget("g.shadow")
    assert again.previous("g") is None and not again.path.exists()


def test_an_unreadable_member_record_is_no_member(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text("{not json")
    assert MemberRecord(path).previous("g") is None
    MemberRecord(path).remember("g", "m")  # and it is written over
    assert MemberRecord(path).previous("g") == "m"


def test_the_join_watch_raises_only_past_its_bound() -> None:
    watch = JoinWatch("g", bound_s=0.2)
    watch.check()  # joining, but not for long
    time.sleep(0.25)
    with pytest.raises(GroupStuck, match="no assignment from consumer group g"):
        watch.check()
    watch.joined()
    assert watch.waiting_s is None
    watch.check()
    watch.joining()
    assert watch.waiting_s is not None and watch.waiting_s < 0.2


@pytest.mark.slow
async def test_a_member_stuck_in_a_long_chunk_does_not_hold_up_the_group(
    broker: str, kafka_service: Service, tmp_path: Path
) -> None:
    """A member runs a 25 s chunk when a second one joins: the rebalance waits for the chunk
    only part of the rebalance timeout (5 s), so the group settles and the newcomer gets
    partitions long before the chunk ends (Tansu never evicts a member that does not rejoin:
    a member stuck there kept the whole group from settling)."""
    bootstrap, name = kafka_service.address, f"stuck-chunk-{broker}"
    step = tmp_path / "slow.py"
    step.write_text(SLOW)
    ref = ModelRef(name="slow", version="1", sha=sha256_file(step), runtime="python")
    spec = PipelineSpec(steps=[ModelStep(model=ref)])
    pipeline = load_pipeline("v1", spec, lambda _: step)
    settings = WorkerSettings(kafka_bootstrap=bootstrap)
    await ensure_topics(settings, TOPICS.deployment_topics("ws", name, "d1", spec))
    stages = worker_stages(pipeline, Layout("ws", name, "d1"), TOPICS, "main", settings)
    first, second = (
        StageLoop(
            stages, settings, group_id=f"weir.ws.{name}", client_id=f"w{i}", counters=StepCounters()
        )
        for i in range(2)
    )
    source, output = TOPICS.input("ws", name).name, TOPICS.output("ws", name).name
    x = np.ones((8, 10), np.float32)
    x[0, 0] = 77  # the slow one
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    stop = asyncio.Event()
    await first.start()
    running = [asyncio.create_task(first.run(stop))]
    try:
        await send_rows(producer, source, x[:1], partitions=1)
        while not first.in_flight:  # the slow chunk began
            await asyncio.sleep(0.05)
        await second.start()
        running.append(asyncio.create_task(second.run(stop)))
        joined = time.monotonic()
        while not second._consumer.assignment() and time.monotonic() - joined < 15:
            await asyncio.sleep(0.1)
        assert second._consumer.assignment(), "the group waited for the chunk"
        await send_rows(producer, source, x[1:], partitions=4, first=1)
        expected, answered = {f"r{i}" for i in range(8)}, set()
        deadline = time.monotonic() + 60
        while answered != expected and time.monotonic() < deadline:  # the slow one's answer
            answered = {
                Envelope.parse(r.headers).request_id  # may come twice
                for r in await read_all(bootstrap, output, 9, timeout_s=3)
            }
        assert answered == expected
    finally:
        stop.set()
        await asyncio.gather(*running, return_exceptions=True)
        await producer.stop()
        for loop in (first, second):
            await loop.close()


async def test_resetting_a_group_keeps_its_committed_offsets(
    broker: str, kafka_service: Service
) -> None:
    """Tansu deletes the group (members and all) and the offsets are committed again; Apache
    Kafka refuses to delete a group with members, and nothing changes."""
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    topic, group = f"reset-{broker}", f"weir.reset-{broker}"
    await ensure_topics(settings, [TopicSpec(topic, 2)])
    member = AIOKafkaConsumer(
        bootstrap_servers=kafka_service.address, group_id=group, enable_auto_commit=False
    )
    await member.start()
    try:
        member.subscribe([topic])
        while len(member.assignment()) < 2:
            await member.getmany(timeout_ms=100)
        offsets = {TopicPartition(topic, 0): 3, TopicPartition(topic, 1): 4}
        await member.commit(offsets)
        await reset_group(settings, group, [topic])
        (described,) = (
            await ask_group_coordinator(member, group, DescribeGroupsRequest([group]))
        ).groups
    finally:
        await member.stop()
    members = described[5]
    assert (members == []) == (broker == "tansu")
    probe = AIOKafkaConsumer(
        bootstrap_servers=kafka_service.address, group_id=group, enable_auto_commit=False
    )
    await probe.start()
    try:
        assert {tp: await probe.committed(tp) for tp in offsets} == offsets
    finally:
        await probe.stop()
