"""streams/handoff.py: records a worker sends to its own next stage run at once, still go on
Kafka, and are committed, not run again, when read back. Bookkeeping without a broker, then a
worker's loop on the real one."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, RecordMetadata

from control.embedded import Service
from streams.admin import end_offsets
from streams.handoff import Handoff
from streams.messages import ERROR, HANDED, SOURCE, Envelope
from tests.streams._loops import TOPICS, loops, read_all, send_rows

TP = TopicPartition("ws.p.s1", 0)


# -- bookkeeping ------------------------------------------------------------------------
def _delivered(offset: int) -> asyncio.Future[RecordMetadata]:
    future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
    future.set_result(RecordMetadata(TP.topic, TP.partition, TP, offset, 0, -1, 0))
    return future


def _handed(handoff: Handoff, offset: int, ran: bool = True) -> tuple[bytes, ConsumerRecord]:
    """Hand a record that lands at `offset`; `ran`: its early run succeeded."""
    headers = handoff.mark([("weir-request-id", f"r{offset}".encode())])
    record = handoff.hand(TP, b"v", headers, _delivered(offset))
    if ran:
        handoff.ran(record, [])
    return headers[-1][1], record


def _read_back(handed: ConsumerRecord, offset: int) -> ConsumerRecord:
    """The handed record as a fetch returns it: the same headers, its real offset."""
    return dataclasses.replace(handed, offset=offset)


async def test_a_record_read_back_is_claimed_once_and_only_by_the_worker_that_ran_it() -> None:
    handoff, other = Handoff(), Handoff()
    _, record = _handed(handoff, 5)
    assert record.offset == -1 and dict(record.headers)[HANDED]
    assert other.claim(_read_back(record, 5)) is None  # another worker's mark: run it
    assert handoff.claim(_read_back(record, 5)) == []  # ran here: only commit it
    assert handoff.claim(_read_back(record, 5)) is None and len(handoff) == 0


async def test_a_record_whose_early_run_failed_or_never_came_runs_when_read_back() -> None:
    handoff = Handoff()
    _, failed = _handed(handoff, 1)
    handoff.forget(failed)
    _, not_run = _handed(handoff, 2, ran=False)  # a rebalance cut the run short
    assert handoff.claim(_read_back(failed, 1)) is None
    assert handoff.claim(_read_back(not_run, 2)) is None


async def test_settle_commits_handed_records_next_to_the_commit_and_stops_at_a_gap() -> None:
    handoff = Handoff()
    for offset in (10, 11, 12, 14):  # 13: another worker's record, not run here
        _handed(handoff, offset)
    _handed(handoff, 15, ran=False)
    assert handoff.settle([TP], {TP: 10}) == {TP: 13}
    assert len(handoff) == 2  # 14 (its next owner runs it again) and 15 are left
    assert handoff.unsettled([TP]) == {TP}  # 14 was answered: its repeat is to be marked
    assert handoff.settle([TP], {TP: 9}) == {}  # 9 was not run here: nothing to commit
    handoff.keep({TopicPartition("ws.p.s1", 1)})
    assert len(handoff) == 0  # TP went elsewhere
    assert handoff.unsettled([TP]) == set()


# -- a worker's loop on the real broker ---------------------------------------------------
async def test_a_worker_runs_its_next_steps_at_once_and_commits_them_when_read_back(
        kafka_service: Service, diabetes_onnx: Path, tmp_path: Path) -> None:
    bootstrap, name, count, poison = kafka_service.address, "handoff", 40, 7
    [loop] = await loops(bootstrap, name, tmp_path, diabetes_onnx)
    steps = [TOPICS.step("ws", name, "v1", i).name for i in (1, 2)]
    counters = loop._counters
    await loop.start()
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        x = np.random.default_rng(0).random((count, 10), dtype=np.float32)
        x[poison] = -1.0
        await send_rows(producer, TOPICS.input("ws", name).name, x, partitions=2)
        answers = await read_all(bootstrap, TOPICS.output("ws", name).name, count)
        await asyncio.sleep(0.5)  # anything run twice would be answered by now
        stop.set()
        await asyncio.wait_for(running, 30)
    finally:
        await producer.stop()
        await loop.close()

    answers = await read_all(bootstrap, TOPICS.output("ws", name).name, count + 1, 3.0)
    ids = [Envelope.parse(a.headers).request_id for a in answers]
    assert sorted(ids) == sorted(f"r{i}" for i in range(count))  # each answered once
    errors = {Envelope.parse(a.headers).request_id: json.loads(dict(a.headers)[ERROR])
              for a in answers if ERROR in dict(a.headers)}
    assert list(errors) == [f"r{poison}"] and errors[f"r{poison}"]["message"].endswith("poison row")
    # Its early run failed, so it ran again from step 1's topic: the dead letter names the record.
    [dead] = await read_all(bootstrap, TOPICS.dead_letter("ws", name).name, 1)
    topic, partition, offset = json.loads(dict(dead.headers)[SOURCE])
    assert topic == steps[0] and offset >= 0
    # Each step ran each message once, and both step topics carry every message, handed.
    assert (counters.processed, counters.failed) == (count + 2 * (count - 1), 1)
    assert counters.retried == 2  # only once read back: the early run tried it once
    for index, topic in enumerate(steps):
        records = await read_all(bootstrap, topic, count - index, 10.0)
        assert len(records) == count - index
        assert all(HANDED in dict(r.headers) for r in records)
    # Read back and committed: the group has nothing left in the step topics.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in steps
               for p in range(TOPICS.step("ws", name, "v1", 1).partitions)]
        committed = await admin.list_consumer_group_offsets(f"weir.ws.{name}", partitions=tps)
        ends = await end_offsets(consumer, tps)
        assert {tp: max(committed[tp].offset, 0) if tp in committed else 0 for tp in tps} == ends
    finally:
        await consumer.stop()
        await admin.close()


@pytest.mark.parametrize("handover", ["a replica joins", "the first one stops"])
async def test_the_next_owner_repeats_nothing_the_first_one_ran_but_had_not_read_back(
        handover: str, kafka_service: Service, diabetes_onnx: Path, tmp_path: Path) -> None:
    """The first replica runs every record through all steps but is kept from reading its
    handed records back. Then a second replica joins, and the rebalance moves half of the step
    topics' partitions to it, or the first one stops and the second takes them all: either way
    the first one commits its handed records before they move, and the new owner runs none of
    them again."""
    bootstrap, name, count = kafka_service.address, f"handoff-{handover[-5:]}", 40
    replicas = await loops(bootstrap, name, tmp_path, diabetes_onnx, count=2)
    steps = {TOPICS.step("ws", name, "v1", i).name for i in (1, 2)}
    stops = [asyncio.Event(), asyncio.Event()]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    await replicas[0].start()
    running = [asyncio.create_task(replicas[0].run(stops[0]))]
    try:
        first = replicas[0]._consumer
        assert first is not None
        while len(first.assignment()) < 4 * 3:
            await asyncio.sleep(0.1)
        first.pause(*[tp for tp in first.assignment() if tp.topic in steps])  # no read-back
        x = np.random.default_rng(1).random((count, 10), dtype=np.float32)
        await send_rows(producer, TOPICS.input("ws", name).name, x, partitions=4)
        assert len(await read_all(bootstrap, TOPICS.output("ws", name).name, count)) == count
        assert len(replicas[0]._handoff) == 2 * count  # ran through, none read back yet
        if handover == "the first one stops":
            stops[0].set()
            await asyncio.wait_for(running[0], 30)
            await replicas[0].close()  # leaves the group
        await replicas[1].start()
        running.append(asyncio.create_task(replicas[1].run(stops[1])))
        second = replicas[1]._consumer
        assert second is not None
        while not {tp.topic for tp in second.assignment()} & steps:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # a record run again would be answered by now
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*running), 30)
    finally:
        await producer.stop()
        for loop in replicas:
            await loop.close()
    answers = await read_all(bootstrap, TOPICS.output("ws", name).name, count + 1, 3.0)
    ids = sorted(Envelope.parse(a.headers).request_id for a in answers)
    assert ids == sorted(f"r{i}" for i in range(count))  # each answered once
    assert replicas[1]._counters.processed == 0  # the second replica had nothing left to run
