"""Input offsets committed in order, each only once what its records produced is delivered.

The worker's loop hands every processed fetch here with the delivery futures
of what it sent; their offsets are committed in the order they were added,
merged while several are ready, and never before everything sent ahead of
them is on the broker. So a crash can repeat work (at least once) but never
skips a record, and `flush()` gives a rebalance or a stop a clean cut.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from aiokafka.errors import CommitFailedError, KafkaError

from streams.errors import DeliveryFailed

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]
"""The next offset to read, per partition (what Kafka stores as committed)."""
RETRY_S = 0.2
"""Pause before trying a failed commit again."""


def next_offsets(records: Iterable[ConsumerRecord]) -> Offsets:
    """The offsets to commit once `records` (in order) are done."""
    return {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records}


class OrderedCommits:
    """Offsets of processed fetches, committed in arrival order once their sends are delivered.

    Example:
        commits = OrderedCommits(consumer.commit)
        task = asyncio.create_task(commits.run())
        commits.add(delivery_futures, {tp: last_offset + 1})
        await commits.flush()   # everything added so far is delivered and committed
    """

    def __init__(
        self, commit: Callable[[Offsets], Awaitable[None]], *, interval_s: float = 0.0
    ) -> None:
        self._commit = commit
        self._interval_s = interval_s
        self._queue: deque[tuple[Sequence[asyncio.Future[object]], Offsets]] = deque()
        self._added = asyncio.Event()
        self._urgent = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._error: BaseException | None = None
        self._carried: Offsets = {}  # offsets whose commit failed for a passing reason
        self._last = float("-inf")  # when the last commit was made (loop time)

    @property
    def pending(self) -> int:
        """Fetches added whose offsets are not committed yet."""
        return len(self._queue) + bool(self._carried)

    def add(self, deliveries: Sequence[asyncio.Future[object]], offsets: Offsets) -> None:
        """Commit `offsets` once `deliveries` (and everything added before) have succeeded."""
        if self._error is not None:
            raise DeliveryFailed("an earlier record could not be delivered") from self._error
        self._queue.append((deliveries, offsets))
        self._settled.clear()
        self._added.set()

    async def flush(self) -> None:
        """Return once everything added so far is delivered and committed.

        :raises DeliveryFailed: a record could not be delivered (nothing after it was committed).
        """
        self._urgent.set()
        await self._settled.wait()
        if self._error is not None:
            raise DeliveryFailed(str(self._error)) from self._error

    async def run(self) -> None:
        """Commit as deliveries complete, until cancelled.

        :raises DeliveryFailed: a send failed; its offsets and all later ones stay uncommitted.
        """
        try:
            while True:
                await self._added.wait()
                self._added.clear()
                while self._queue or self._carried:
                    await self._pause()
                    await self._commit_ready()
                self._settled.set()
                self._urgent.clear()
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._error = exc
            self._settled.set()  # flush() reports the error rather than hanging
            if isinstance(exc, DeliveryFailed | asyncio.CancelledError):
                raise
            raise DeliveryFailed(str(exc)) from exc

    async def _pause(self) -> None:
        """Keep `interval_s` between commits (a failed one: at least RETRY_S), so one request
        covers all that is delivered meanwhile, unless someone waits in flush()."""
        gap = max(self._interval_s, RETRY_S) if self._carried else self._interval_s
        left = self._last + gap - asyncio.get_running_loop().time()
        if left > 0 and not (self._urgent.is_set() and not self._carried):
            try:
                await asyncio.wait_for(self._urgent.wait(), left)
            except TimeoutError:
                pass

    async def _commit_ready(self) -> None:
        """Wait for the oldest fetch's deliveries, then commit it and every later one ready."""
        if self._queue:
            results = await asyncio.gather(*self._queue[0][0], return_exceptions=True)
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:
                raise DeliveryFailed(f"a record could not be delivered: {failed!r}") from failed
        merged, self._carried = self._carried, {}
        while self._queue and all(_delivered(f) for f in self._queue[0][0]):
            merged.update(self._queue.popleft()[1])
        if not merged:  # nothing of its own to commit (a real consumer refuses an empty commit)
            return
        self._last = asyncio.get_running_loop().time()
        try:
            await self._commit(merged)
        except CommitFailedError as exc:
            # The group rebalanced under us: the partitions' new owners read these records
            # again (a repeat, never a loss).
            log.warning("commit of %d partitions failed after a rebalance: %s", len(merged), exc)
        except KafkaError as exc:
            log.warning("commit failed (%s); trying again", exc)
            self._carried = merged


def _delivered(future: asyncio.Future[object]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None
