"""Consumer lag: how many records of each partition a consumer group has not committed yet.

Read from the broker (the group's committed offsets against the partitions' ends),
as Kafka's own `kafka-consumer-groups --describe` does, so it needs nothing from
the workers and counts what a dead or stalled worker left behind too.
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from streams.admin import admin_client, end_offsets, probe_consumer, records_after
from streams.settings import WorkerSettings


RETRY_S = 0.2
"""How soon a question the broker answered with a retriable error is asked again."""


class GroupLag:
    """Reads consumer groups' lag through one admin client and one probe consumer.

    Example:
        lag = GroupLag(settings)
        await lag.start()
        behind = await lag.read("weir.default.p", [TopicPartition("default.p.in", 0)])
        await lag.stop()
    """

    def __init__(self, settings: WorkerSettings) -> None:
        self._admin = admin_client(settings)
        self._probe = probe_consumer(settings)
        self._lock = asyncio.Lock()  # the probe consumer is assigned and sought per call

    async def start(self) -> None:
        await self._admin.start()
        await self._probe.start()

    async def stop(self) -> None:
        await self._probe.stop()
        await self._admin.close()

    async def read(
        self, group: str, tps: list[TopicPartition], timeout_s: float = 5.0
    ) -> dict[TopicPartition, int]:
        """Records in each of `tps` past `group`'s commit (all of them if it has none)."""
        if not tps:
            return {}
        async with self._lock:
            committed = await self._committed(group, tps, timeout_s)
            ends = await end_offsets(self._probe, tps, timeout_s)
        lag = {}
        for tp in tps:
            done = committed.get(tp)
            start = max(done.offset, 0) if done is not None else 0
            lag[tp] = max(ends.get(tp, 0) - start, 0)
        return lag

    async def _committed(
        self, group: str, tps: list[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """The group's commits, asked again while the broker says to (a fresh Apache Kafka
        broker has no group coordinator until its offsets topic is made)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                offsets: dict[
                    TopicPartition, OffsetAndMetadata
                ] = await self._admin.list_consumer_group_offsets(group, partitions=tps)
                return offsets
            except KafkaError as exc:
                if not exc.retriable or asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(RETRY_S)

    async def unread(self, groups: dict[str, list[TopicPartition]]) -> int:
        """How many records each group has still to read in its partitions: the lag, with
        transaction markers and aborted records past a group's commit not counted (a drain
        waits for 0; a reader skips those without committing past them). Reads past each
        lagging commit: for the callers' moments (an idle draining worker, a new server),
        not for a poll of a busy group."""
        left = 0
        for group, tps in groups.items():
            for tp, lag in (await self.read(group, tps)).items():
                if lag > 0:
                    async with self._lock:
                        end = (await end_offsets(self._probe, [tp]))[tp]
                        if not await records_after(self._probe, tp, end - lag, end):
                            lag = 0  # markers or aborted records only
                left += lag
        return left

    async def wait_read(
        self, groups: dict[str, list[TopicPartition]], timeout_s: float, poll_s: float = 0.2
    ) -> None:
        """Wait until every group has read (committed) every record of its partitions, as
        `unread` counts them; TimeoutError saying how many are left after `timeout_s`."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while left := await self.unread(groups):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{left} records still unread after {timeout_s:g} s")
            await asyncio.sleep(poll_s)
