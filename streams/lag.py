"""Consumer lag: how many records of each partition a consumer group has not committed yet.

Read from the broker (the group's committed offsets against the partitions' ends),
as Kafka's own `kafka-consumer-groups --describe` does, so it needs nothing from
the workers and counts what a dead or stalled worker left behind too.
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.admin import end_offsets, probe_consumer
from streams.settings import WorkerSettings


class GroupLag:
    """Reads consumer groups' lag through one admin client and one probe consumer.

    Example:
        lag = GroupLag(settings)
        await lag.start()
        behind = await lag.read("weir.default.p", [TopicPartition("default.p.in", 0)])
        await lag.stop()
    """

    def __init__(self, settings: WorkerSettings) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        self._probe = probe_consumer(settings)
        self._lock = asyncio.Lock()  # the probe consumer is assigned and sought per call

    async def start(self) -> None:
        await self._admin.start()
        await self._probe.start()

    async def stop(self) -> None:
        await self._probe.stop()
        await self._admin.close()

    async def read(self, group: str, tps: list[TopicPartition],
                   timeout_s: float = 5.0) -> dict[TopicPartition, int]:
        """Records in each of `tps` past `group`'s commit (all of them if it has none)."""
        if not tps:
            return {}
        async with self._lock:
            committed = await self._admin.list_consumer_group_offsets(group, partitions=tps)
            ends = await end_offsets(self._probe, tps, timeout_s)
        lag = {}
        for tp in tps:
            done = committed.get(tp)
            start = max(done.offset, 0) if done is not None else 0
            lag[tp] = max(ends.get(tp, 0) - start, 0)
        return lag
