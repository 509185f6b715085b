"""Topics a killed server left behind: the next server deletes those that were read out.

A server killed after a retired deployment's workers drained, and before it deleted
that deployment's boundary and challenger topics, leaves them on the broker. The
next server's start (`Deployer.retire_strays`) deletes them once their readers have
read every record, and keeps those with unread records, and those of a deployment
that serves.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from control.embedded import Service
from control.local_workers import LocalWorkers
from control.records import Deployment
from control.registry import Registry
from control.retirement import Retirement
from control.settings import Settings
from streams.admin import ensure_topics, topic_names
from streams.topics import TopicMap, TopicSpec
from streams.worker_spec import group_id

REDIS_DB = {"tansu": 7, "kafka": 8}
"""A Redis database of each leg's own (the legs share the session's Redis)."""


async def _fill(bootstrap: str, topic: TopicSpec, records: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(records):
            await producer.send_and_wait(topic.name, f"{n}".encode(), partition=0)
    finally:
        await producer.stop()


async def _commit(bootstrap: str, group: str, topic: TopicSpec, offset: int) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic.name, 0)])
        await consumer.commit({TopicPartition(topic.name, 0): offset})
    finally:
        await consumer.stop()


def test_a_new_server_deletes_read_out_topics_of_deployments_nothing_serves(
    broker: str, kafka_service: Service, redis_service: Service, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path,
        kafka_bootstrap=kafka_service.address,
        redis_url=redis_service.address.rsplit("/", 1)[0] + f"/{REDIS_DB[broker]}",
    )
    registry = Registry(settings.redis_url or "")
    registry.redis.flushdb()
    topics = TopicMap.load()
    pipeline = f"leftover-{broker}"
    serving = Deployment(workspace="default", pipeline=pipeline, version="1")
    registry.set_deployment(serving)
    read_out = topics.boundary("default", pipeline, "dead0001", 1)  # read by the main group
    empty_challenger = topics.challenger("default", pipeline, "dead0001", 2, 0)
    unread = topics.boundary("default", pipeline, "dead0002", 0)  # sidekick 0 read 1 of 2
    unread_sibling = topics.boundary("default", pipeline, "dead0002", 1)
    in_use = topics.boundary("default", pipeline, serving.id, 1)
    bootstrap = kafka_service.address

    async def scenario() -> set[str]:
        worker = settings.worker_settings()
        await ensure_topics(worker, [read_out, empty_challenger, unread, unread_sibling, in_use])
        await _fill(bootstrap, read_out, 3)
        await _commit(bootstrap, group_id("default", pipeline, "main"), read_out, 3)
        await _fill(bootstrap, unread, 2)
        await _commit(bootstrap, group_id("default", pipeline, "sidekick", 0), unread, 1)
        await _fill(bootstrap, in_use, 1)
        retirement = Retirement(
            settings, registry, topics, LocalWorkers(settings, registry), {}, asyncio.Lock()
        )
        await retirement.drop_leftover_topics()
        await retirement.wait()
        return set(await topic_names(worker))

    left = asyncio.run(scenario())
    assert read_out.name not in left
    assert empty_challenger.name not in left
    assert {unread.name, unread_sibling.name, in_use.name} <= left
