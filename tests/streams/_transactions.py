"""Apache Kafka transactions as a worker uses them, for the exactly-once tests: a worker's
pair of clients, and what a `read_committed` reader sees."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.admin import ensure_topics
from streams.aiokafka_internals import transactional_offsets
from streams.messages import Envelope
from streams.settings import WorkerSettings
from streams.topics import TopicSpec


async def committed_answers(
    bootstrap: str, topic: str, count: int, timeout_s: float = 30.0
) -> list[Envelope]:
    """The answers on `topic` a read_committed reader sees, once `count` came (or time ran
    out), and a little after, so a repeat would be seen too."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    answers: list[Envelope] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        quiet_until = None
        while asyncio.get_running_loop().time() < deadline:
            fetched = await consumer.getmany(timeout_ms=200)
            answers += [Envelope.parse(r.headers) for batch in fetched.values() for r in batch]
            if len(answers) >= count and quiet_until is None:
                quiet_until = asyncio.get_running_loop().time() + 1.0
            if quiet_until is not None and asyncio.get_running_loop().time() > quiet_until:
                break
    finally:
        await consumer.stop()
    return answers


@asynccontextmanager
async def worker_clients(
    bootstrap: str, name: str, *, isolation_level: str = "read_uncommitted"
) -> AsyncIterator[
    tuple[AIOKafkaConsumer, tuple[AIOKafkaProducer, AIOKafkaProducer], TopicPartition]
]:
    """A worker's pair of clients on topics `ws.<name>.in` and `.out`: a consumer in group
    `name`, assigned the input's one partition, and two transactional producers (a worker
    sends on one while the other commits) whose offset commits carry the consumer's
    generation."""
    topic = TopicSpec(f"ws.{name}.in", 1)
    await ensure_topics(
        WorkerSettings(kafka_bootstrap=bootstrap), [topic, TopicSpec(f"ws.{name}.out", 1)]
    )
    consumer = AIOKafkaConsumer(
        topic.name,
        bootstrap_servers=bootstrap,
        group_id=name,
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    producers = tuple(
        AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{name}-{n}")
        for n in (1, 2)
    )
    await consumer.start()
    for producer in producers:
        await producer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for producer in producers:
            transactional_offsets(producer, consumer)
        yield consumer, producers, TopicPartition(topic.name, 0)
    finally:
        for producer in producers:
            await producer.stop()
        await consumer.stop()
