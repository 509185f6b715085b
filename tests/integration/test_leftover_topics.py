"""Topics of retired deployments that were not deleted at once: those read out go.

A server killed after a retired deployment's workers drained, and before it deleted
that deployment's boundary and challenger topics, leaves them on the broker. The
next server's start (`Deployer.retire_strays`) deletes them once their readers have
read every record, and keeps those with unread records, and those of a deployment
that serves. A retirement whose worker did not finish its drain does the same with
the topics of that worker's deployment.
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
from tests.control._heartbeats import beat

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


def _settings(broker: str, kafka: Service, redis: Service, home: Path) -> Settings:
    return Settings(
        home=home,
        kafka_bootstrap=kafka.address,
        redis_url=redis.address.rsplit("/", 1)[0] + f"/{REDIS_DB[broker]}",
    )


def test_a_new_server_deletes_read_out_topics_of_deployments_nothing_serves(
    broker: str, kafka_service: Service, redis_service: Service, tmp_path: Path
) -> None:
    settings = _settings(broker, kafka_service, redis_service, tmp_path)
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


async def _stop_gave_up(registry: Registry, deployment: Deployment, worker_id: str) -> None:
    """Answer the stop request as a remote worker whose drain gave up does."""
    for _ in range(200):
        last = next(b for b in registry.workers("default", deployment.pipeline))
        if registry.stop_requested(last):
            beat(registry, deployment, worker_id, "Stopped", reason="its drain gave up")
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"worker {worker_id} was never asked to stop")


def test_a_retirement_whose_drain_gave_up_deletes_the_topics_only_if_read_out(
    broker: str, kafka_service: Service, redis_service: Service, tmp_path: Path
) -> None:
    """Found by the chaos run: a drain cut short by a broker restart kept its deployment's
    topics for good, though nothing in them was left to read."""
    settings = _settings(broker, kafka_service, redis_service, tmp_path)
    registry = Registry(settings.redis_url or "")
    registry.redis.flushdb()
    topics = TopicMap.load()
    read_out = Deployment(workspace="default", pipeline=f"gave-up-{broker}", version="1")
    unread = Deployment(workspace="default", pipeline=f"gave-up-unread-{broker}", version="1")
    read_out_topic = topics.boundary("default", read_out.pipeline, read_out.id, 1)
    unread_topic = topics.boundary("default", unread.pipeline, unread.id, 0)
    bootstrap = kafka_service.address

    async def scenario() -> set[str]:
        worker = settings.worker_settings()
        await ensure_topics(worker, [read_out_topic, unread_topic])
        await _fill(bootstrap, read_out_topic, 2)
        await _commit(bootstrap, group_id("default", read_out.pipeline, "main"), read_out_topic, 2)
        await _fill(bootstrap, unread_topic, 2)  # sidekick 0 read none of it
        retirement = Retirement(
            settings, registry, topics, LocalWorkers(settings, registry), {}, asyncio.Lock()
        )
        for deployment in (read_out, unread):
            worker_id = f"{deployment.pipeline}-1-w0"
            beat(registry, deployment, worker_id, "Running")
            stopping = asyncio.create_task(_stop_gave_up(registry, deployment, worker_id))
            await retirement.retire("default", deployment.pipeline, [worker_id])
            await stopping
        await retirement.wait()
        return set(await topic_names(worker))

    left = asyncio.run(scenario())
    assert read_out_topic.name not in left
    assert unread_topic.name in left
