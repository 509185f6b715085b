"""Creating and deleting topics through the Kafka admin API, and where partitions end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.settings import WorkerSettings
from streams.topics import TopicSpec


async def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], timeout_s: float = 15.0) -> None:
    """Create every topic in `specs` that does not exist yet, with its partition count.

    Workers must never read auto-created topics: those get the broker's default
    partition count. Waits until the broker's metadata lists each topic.
    """
    specs = list({spec.name: spec for spec in specs}.values())
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in specs if s.name not in existing]
        if wanted:
            new = [NewTopic(s.name, s.partitions, 1, topic_configs=s.config) for s in wanted]
            try:
                response = await admin.create_topics(new)
            except TopicAlreadyExistsError:
                response = None
            for name, code, *_ in getattr(response, "topic_errors", []) or []:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"could not create topic {name!r}: Kafka error code {code}")
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            existing = set(await admin.list_topics())
            if all(s.name in existing for s in specs):
                return
            if asyncio.get_running_loop().time() > deadline:
                missing = sorted(s.name for s in specs if s.name not in existing)
                raise TimeoutError(f"topics {missing} did not appear within {timeout_s:.0f}s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Delete topics that exist; missing ones are ignored."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        present = set(await admin.list_topics())
        doomed = [n for n in names if n in present]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


def probe_consumer(settings: WorkerSettings) -> AIOKafkaConsumer:
    """A consumer of no group, for `end_offsets` (start it first; the caller owns it)."""
    return AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                            fetch_max_wait_ms=settings.fetch_wait_ms,
                            max_partition_fetch_bytes=settings.max_partition_fetch_bytes)


async def end_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                      timeout_s: float = 10.0) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition, right on Tansu too.

    Tansu answers a ListOffsets(latest) with the first offset of the
    partition's last record batch plus one, short of the end when that batch
    holds several records. So this reads from just before that answer: the
    batch comes back whole, and its last record (or the fetch's high
    watermark) gives the end. `consumer` is one without a group that this call
    may assign and seek (the caller serialises its use).
    """
    ends = dict(await consumer.end_offsets(tps))
    pending = {tp: end for tp, end in ends.items() if end > 0}
    if not pending:
        return ends
    consumer.assign(list(pending))
    for tp, end in pending.items():
        consumer.seek(tp, end - 1)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while pending:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"could not read the last records of {sorted(pending)}")
        for tp, msgs in (await consumer.getmany(*pending, timeout_ms=200)).items():
            if msgs and tp in pending:
                ends[tp] = max(ends[tp], msgs[-1].offset + 1, consumer.highwater(tp) or 0)
                del pending[tp]
    return ends
