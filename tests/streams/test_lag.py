"""streams/lag.py on the real broker: a group's lag per partition is what it has not committed."""

from __future__ import annotations

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
        committer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                     enable_auto_commit=False)
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
