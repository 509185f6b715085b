"""A stage loop's side of its group's rebalances: hand over before partitions move, take over after.

Before a rebalance takes partitions away, the loop finishes the chunk in hand
and commits, so the next owner starts exactly where this one stopped: a hot
swap or a replica joining repeats nothing. At least once, it then releases the
partitions' claims; a new owner that finds one unreleased (its last reader
died) marks what it may repeat (streams.claims). Exactly once needs no claims:
a dead worker's open transaction is aborted, and a new owner reads the offsets
only once the last owner's transaction has finished
(streams.aiokafka_internals.transactional_offsets). The rebalance waits for the
chunk at most REVOKE_SHARE of the rebalance timeout, and a worker left without
an assignment for too long starts over (streams.membership): a group never
waits on one member for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from streams.claims import RedeliveryMarks
from streams.aiokafka_internals import member_id
from streams.membership import JoinWatch, MemberRecord
from streams.settings import WorkerSettings

log = logging.getLogger(__name__)

REVOKE_SHARE = 0.8
"""A rebalance waits for the chunk in hand and its commit at most this share of the
rebalance timeout: a member that does not rejoin in time holds up the whole group (on Tansu,
for good). What it could not commit is read again by the partitions' next owners."""

Partitions = Callable[[set[TopicPartition]], Awaitable[None]]


class HeldTopics:
    """Topics a loop no longer reads (a draining worker's input), kept paused across rebalances."""

    def __init__(self) -> None:
        self._topics: set[str] = set()

    def __contains__(self, topic: str) -> bool:
        return topic in self._topics

    def hold(self, topic: str, consumer: AIOKafkaConsumer | None) -> None:
        """Stop reading `topic` now (if `consumer` runs) and after every rebalance."""
        self._topics.add(topic)
        if consumer is not None:
            self.pause(consumer, consumer.assignment())

    def pause(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        """Pause the held topics' partitions among `assigned`."""
        held = [tp for tp in assigned if tp.topic in self._topics]
        if held:
            consumer.pause(*held)


class Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """What a stage loop does when partitions move: `count` counts the rebalances begun,
    `revoking` says one waits for the chunk in hand.

    Before: `drop()` drops what was fetched and not handled yet, `finish(revoked)`
    finishes and commits the chunk in hand and hands `revoked` over. After: claim the
    assignment (at least once), keep held topics paused, tell `on_assigned`.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        consumer: AIOKafkaConsumer,
        *,
        group_id: str,
        watch: JoinWatch,
        members: MemberRecord | None,
        marks: RedeliveryMarks | None,
        held: HeldTopics,
        drop: Callable[[], None],
        finish: Partitions,
        on_assigned: Partitions | None,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._group_id = group_id
        self._watch = watch
        self._members = members
        self._marks = marks
        self._held = held
        self._drop = drop
        self._finish = finish
        self._on_assigned = on_assigned
        self.count = 0
        self.revoking = False

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish and commit the chunk in hand (at least once: and release the partitions'
        claims) before `revoked` move, waiting at most REVOKE_SHARE of the rebalance
        timeout."""
        self._drop()
        self.count += 1
        self.revoking = True
        self._watch.joining()
        # Logged, like the assignment, so a worker's log shows where a rebalance stalled.
        log.info("rebalance: handing over %d partitions", len(revoked))
        limit_s = REVOKE_SHARE * self._settings.rebalance_timeout_s
        try:
            await asyncio.wait_for(self._finish(revoked), limit_s)
        except TimeoutError:
            log.warning(
                "rebalance: the chunk in hand was not finished and committed within "
                "%.1fs; the next owners read it again from the last commit",
                limit_s,
            )
        except Exception:  # run() fails with it; the next owners read these records again
            log.exception("could not commit before the rebalance")
        finally:  # nothing runs until the next assignment is claimed (everything is flushed)
            if self._marks is not None:
                self._marks.claimed.clear()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Claim `assigned` (at least once), keep held topics paused, tell `on_assigned`."""
        self.revoking = False
        self._watch.joined()
        log.info("rebalance: assigned %d partitions", len(assigned))
        if self._members is not None:
            self._members.remember(self._group_id, member_id(self._consumer))
        if self._marks is not None:
            await self._marks.claim(assigned)
        self._held.pause(self._consumer, assigned)
        if self._on_assigned is not None:
            await self._on_assigned(assigned)
