"""streams/lag.py on the real broker: a group's lag per partition is what it has not committed."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from control.embedded import Service
from streams.admin import ensure_topics
from streams.lag import GroupLag
from streams.settings import WorkerSettings
from streams.topics import TopicSpec


async def test_lag_is_records_past_the_commit_per_partition(kafka_service: Service) -> None:
    bootstrap, topic, group = kafka_service.address, "lag-test.in", "lag-test-group"
    settings = WorkerSettings(kafka_bootstrap=bootstrap)
    await ensure_topics(settings, [TopicSpec(topic, 3)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, count in ((0, 5), (1, 2)):  # partition 2 stays empty
            for i in range(count):
                await producer.send(topic, f"{i}".encode(), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()
    tps = [TopicPartition(topic, p) for p in range(3)]
    lag = GroupLag(settings)
    await lag.start()
    try:
        assert await lag.read(group, tps) == {tps[0]: 5, tps[1]: 2, tps[2]: 0}  # no commit yet
        committer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await committer.start()
        try:
            committer.assign([tps[0]])  # commits as the group without joining it
            await committer.commit({tps[0]: 3})
        finally:
            await committer.stop()
        assert await lag.read(group, tps) == {tps[0]: 2, tps[1]: 2, tps[2]: 0}
        assert await lag.read(group, []) == {}
    finally:
        await lag.stop()


async def test_aborted_records_past_the_commit_are_not_left_to_read(
    broker: str, kafka_service: Service
) -> None:
    """A reader skips an aborted transaction's records without committing past them: a
    drain waiting for them to be read waited for ever (Apache Kafka only: transactions)."""
    if broker != "kafka":
        pytest.skip("transactions: Apache Kafka only (Tansu refuses them)")
    bootstrap, topic, group = kafka_service.address, "lag-aborted.in", "lag-aborted-group"
    settings = WorkerSettings(kafka_bootstrap=bootstrap)
    await ensure_topics(settings, [TopicSpec(topic, 1)])
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="lag-aborted")
    lag = GroupLag(settings)
    await producer.start()
    await lag.start()
    try:
        await producer.begin_transaction()
        for i in range(5):
            await producer.send_and_wait(topic, f"{i}".encode(), partition=0)
        await producer.abort_transaction()
        assert (await lag.read(group, [tp]))[tp] == 6  # 5 aborted records and their marker
        assert await lag.unread({group: [tp]}) == 0
        async with producer.transaction():
            await producer.send_and_wait(topic, b"kept", partition=0)
        assert await lag.unread({group: [tp]}) > 0
    finally:
        await lag.stop()
        await producer.stop()
