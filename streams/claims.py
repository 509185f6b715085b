"""Partition claims: whether a partition's last reader left it cleanly, so repeats can be marked.

A worker commits a record's offset only once everything it sent for it is
delivered, and at most every `commit_interval_ms` while busy (streams.commits).
A worker that dies (SIGKILL, out of memory, a lost host) leaves what it ran
since its last commit to the partition's next owner, which runs it again: the
result topic then carries a second answer to the same request. Kafka's commit
metadata could say whether an owner left cleanly, but Tansu does not keep it
(it reads back empty), so claims are kept beside the group, in the registry:

- a worker claims the partitions it is assigned before it reads them, and
  releases them once everything it ran is committed (before a rebalance takes
  them, or as it stops);
- a partition still claimed when a worker is assigned it was left by one that
  died (or lost the group) with work that may not be committed: the new owner
  marks every record of it below its end offset at that moment as redelivered
  (streams.messages.REDELIVERED), and the mark goes with the request to its
  result. Until its commit passes them, it does not release the partition
  either (a rebalance may take it first), so whoever reads them next marks
  them too.

Only brokers without transactions need this (Tansu): with them, a worker runs
exactly once (streams.transactions.ExactlyOnce) and a crash repeats nothing.

So an answer without the mark is the first for its request; a marked one may
repeat an earlier answer with the same request id (or be the first, for a
record that arrived between the crash and the takeover). Consumers that must
not see a repeat drop a marked answer whose request id they have seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.admin import end_offsets, probe_consumer
from streams.messages import REDELIVERED
from streams.settings import WorkerSettings

if TYPE_CHECKING:
    from streams.stage import Incoming

log = logging.getLogger(__name__)


class PartitionClaims(Protocol):
    """Who reads which partitions of a consumer group (the registry, in practice)."""

    def claim_partitions(
        self, group: str, owner: str, partitions: Collection[TopicPartition]
    ) -> set[TopicPartition]:
        """Record that `owner` reads `partitions` now; return those that were still claimed
        (their last reader never released them)."""
        ...

    def release_partitions(
        self, group: str, owner: str, partitions: Collection[TopicPartition]
    ) -> None:
        """`owner` leaves `partitions` with everything it ran committed. A partition another
        reader has claimed since stays claimed."""
        ...


class RedeliveryMarks:
    """A worker's side of the claims: claim its partitions when they are assigned, mark what
    it reads that a dead reader may have run, release them once all it ran is committed.

    Example:
        marks = RedeliveryMarks(registry, "weir.ws.p", "p-v1-0.ab12", settings)
        await marks.claim(assigned)            # in on_partitions_assigned
        await marks.wait_claimed(stop, 0.1)    # before running what was fetched
        marks.mark(incoming)                   # sets Envelope.redelivered where it may repeat
        await marks.release(consumer, revoked) # once everything is committed
    """

    def __init__(
        self, claims: PartitionClaims, group_id: str, claimant: str, settings: WorkerSettings
    ) -> None:
        self._claims = claims
        self._group_id = group_id
        self._claimant = claimant  # this process, not a restart of it
        self._settings = settings
        self.claimed = asyncio.Event()
        """Set once this assignment's partitions are claimed: aiokafka may fetch them before
        it calls on_partitions_assigned, and nothing may run unmarked meanwhile."""
        self._below: dict[TopicPartition, int] = {}
        """Records below these offsets may have run already: their partition's last reader
        never released it."""
        self._claiming = asyncio.Lock()
        """Held while a claim is made: a release waits for it (a worker told to stop while
        its assignment was being claimed released everything before `_below` was known)."""

    async def wait_claimed(self, stop: asyncio.Event, poll_s: float) -> bool:
        """Wait until this assignment is claimed: nothing runs unmarked. False if `stop` is
        set first (looked at every `poll_s`)."""
        while not self.claimed.is_set():
            if stop.is_set():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.claimed.wait(), poll_s)
        return True

    async def claim(self, assigned: set[TopicPartition]) -> None:
        """Claim `assigned`; in a partition its last reader never released, the records up
        to its end now are to be marked redelivered."""
        try:
            async with self._claiming:
                await self._claim_and_find_ends(assigned)
        finally:
            self.claimed.set()

    async def _claim_and_find_ends(self, assigned: set[TopicPartition]) -> None:
        self._below = {}
        if not assigned:
            return
        try:
            left = await asyncio.to_thread(
                self._claims.claim_partitions, self._group_id, self._claimant, assigned
            )
        except Exception:  # unknown whether their last readers left cleanly: assume not
            log.exception("could not claim partitions; marking what they hold redelivered")
            left = set(assigned)
        if not left:
            return
        try:
            ends = await self._end_offsets(left)
        except Exception:
            log.exception(
                "could not read the end offsets of %d partitions whose last reader "
                "never released them: repeats of their records are not marked",
                len(left),
            )
            return
        self._below = {tp: end for tp, end in ends.items() if end > 0}
        if self._below:
            log.warning(
                "left without a release (a worker died?): the records of %s may repeat "
                "answers and are marked %s",
                ", ".join(
                    f"{tp.topic}[{tp.partition}] below offset {end}"
                    for tp, end in sorted(self._below.items())
                ),
                REDELIVERED,
            )

    async def _end_offsets(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Where `partitions` end now, read by a consumer of no group (Tansu's own answer can
        fall short: streams.admin.end_offsets)."""
        probe = probe_consumer(self._settings)
        await probe.start()
        try:
            return await end_offsets(probe, sorted(partitions))
        finally:
            await probe.stop()

    async def hold_for_reset(self, partitions: Collection[TopicPartition]) -> None:
        """Leave `partitions` claimed by no worker before their group is reset
        (streams.membership.reset_group), which may lose its committed offsets: whoever
        reads them next then marks what it reads again. Raises if they cannot be claimed
        (the group is then not reset)."""
        await asyncio.to_thread(
            self._claims.claim_partitions, self._group_id, f"{self._group_id}.reset", partitions
        )

    def mark(self, incoming: Sequence[Incoming]) -> None:
        """Mark the records a dead reader may have run already."""
        if not self._below:
            return
        for item in incoming:
            record = item.record
            below = self._below.get(TopicPartition(record.topic, record.partition))
            if below is not None and record.offset < below:
                item.env = item.env.replace(redelivered=True)

    async def release(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        """Release `partitions`, once everything run from them is committed. One whose commit
        is still short of the records to mark stays claimed: its next reader marks them too."""
        if not partitions:
            return
        async with self._claiming:
            await self._release(consumer, partitions)

    async def _release(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        try:
            for tp in partitions & self._below.keys():
                if (await consumer.committed(tp) or 0) >= self._below[tp]:
                    del self._below[tp]
            await asyncio.to_thread(
                self._claims.release_partitions,
                self._group_id,
                self._claimant,
                partitions - self._below.keys(),
            )
        except Exception:  # their next readers mark what they read first as redelivered
            log.exception("could not release %d partitions", len(partitions))
