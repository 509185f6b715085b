"""aiokafka's consumer fetches, reached into (see the package's docstring for why each).

- The fetch wait, changed per fetch (set_fetch_wait; streams.clients.FetchPace decides it).
- A fetch response with a hole is read up to the hole, and fetched again from there
  (read_holes_again; why in streams.fetch_holes).
- The fetch routine woken when a fetch ends, not only when its task does
  (wake_fetcher_when_a_fetch_ends: a race in aiokafka 0.14 that held fetches back).
- Whether a consumer has records still to read, and which partitions' fetches came back
  without them (unread_records, unfetched_positions).
- A fetch task that died silently (check_fetcher, stop_consumer; aio-libs/aiokafka#796).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import aiokafka.consumer.fetcher as aiokafka_fetcher
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.errors import FetcherDied
from streams.fetch_holes import HoleWatch

log = logging.getLogger(__name__)


def wake_fetcher_when_a_fetch_ends() -> None:
    """Make every consumer of this process send its next fetch as soon as the last one ended.

    aiokafka's fetch routine marks a broker as having a fetch in flight until a done
    callback of that fetch's task runs. When the routine's own wait times out
    (`consumer_timeout_ms`) in the loop turn where the fetch task finishes, it sees the task
    done while the broker is still marked, sends nothing, and sleeps a whole timeout with no
    fetch in flight. Records that come meanwhile wait: on Apache Kafka, where an idle
    consumer's fetch waits 3 s (three of weir's 1 s timeouts: the two often end together), the
    gateway's reply reader held the first answers of a load back ~0.9 s in about one
    bench_peers repetition in four (bench/README.md, 2026-12-07). Unmarking the broker now
    also wakes the routine. Idempotent."""
    fetcher_class = aiokafka_fetcher.Fetcher
    if getattr(fetcher_class.__init__, "weir_wakes", False):
        return
    unpatched = fetcher_class.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        unpatched(self, *args, **kwargs)  # starts the routine, which runs once this returns
        self._in_flight = _NodesInFlight(self)

    init.weir_wakes = True  # type: ignore[attr-defined]
    init.unpatched = unpatched  # type: ignore[attr-defined]
    fetcher_class.__init__ = init


class _NodesInFlight(set[int]):
    """A fetcher's brokers with a fetch in flight; taking one out wakes its fetch routine."""

    def __init__(self, fetcher: Any) -> None:
        super().__init__()
        self._fetcher = fetcher

    def discard(self, node_id: object) -> None:
        super().discard(node_id)
        fetcher = self._fetcher
        fetcher._notify(fetcher._wait_consume_future)


def set_fetch_wait(consumer: AIOKafkaConsumer, wait_ms: int) -> None:
    """How long the broker may hold `consumer`'s next fetch requests for data (aiokafka reads
    the wait per request built, and has no setter)."""
    consumer._fetcher._fetch_max_wait_ms = wait_ms


class _Batches:
    """Record batches already taken from a fetch response, offered as aiokafka's
    PartitionRecords reads a response's MemoryRecords."""

    def __init__(self, batches: list[Any]) -> None:
        self._batches = batches
        self._next = 0

    def has_next(self) -> bool:
        return self._next < len(self._batches)

    def next_batch(self) -> Any:
        self._next += 1
        return self._batches[self._next - 1]


def read_holes_again(watch: HoleWatch | None = None) -> None:
    """Make every consumer of this process hand on a fetch response's batches only up to
    the first hole, so its next fetch asks from there (streams.fetch_holes). Idempotent."""
    records_class = aiokafka_fetcher.PartitionRecords
    if getattr(records_class.__init__, "weir_holes", False):
        return
    holes = watch or HoleWatch()
    unpatched = records_class.__init__

    def init(
        self: Any, tp: TopicPartition, records: Any, aborted: Any, fetch_offset: int, *rest: Any
    ) -> None:
        batches = []
        while records.has_next():
            batches.append(records.next_batch())
        spans = [(batch.base_offset, batch.next_offset) for batch in batches]
        keep = holes.readable(tp, fetch_offset, spans)
        unpatched(self, tp, _Batches(batches[:keep]), aborted, fetch_offset, *rest)

    init.weir_holes = True  # type: ignore[attr-defined]
    init.unpatched = unpatched  # type: ignore[attr-defined]
    records_class.__init__ = init


def unread_records(consumer: AIOKafkaConsumer) -> bool:
    """Whether `consumer`'s partitions (those not paused) hold records it has not returned
    yet (fetched and buffered, or still on the broker), by each partition's last fetch
    response (aiokafka fetches a partition again once its buffered records are taken): its
    reader is behind. Records count up to the last stable offset: a `read_committed`
    consumer reads no further, and where no transaction is open it is the end."""
    return next(_behind(consumer), None) is not None


def unfetched_positions(consumer: AIOKafkaConsumer) -> dict[TopicPartition, tuple[int, int]]:
    """The partitions of `consumer` (those not paused) whose records past the position are
    still on the broker, none fetched: each one's position, and when its last fetch response
    came (ms; aiokafka's `last_poll_timestamp`). A newer response at the same position came
    back empty although the one before said records lay past it (two in the same
    millisecond look like one: this undercounts, never overcounts)."""
    buffered = consumer._fetcher._records
    return {
        tp: (state.position, state.timestamp)
        for tp, state in _behind(consumer)
        if tp not in buffered and state.timestamp is not None
    }


def _behind(consumer: AIOKafkaConsumer) -> Iterator[tuple[TopicPartition, Any]]:
    """Each partition of `consumer` (not paused) with records past its position (by its last
    fetch response, up to the last stable offset), and its aiokafka state."""
    subscription = consumer._subscription.subscription
    assignment = subscription.assignment if subscription is not None else None
    if assignment is None:
        return
    for tp in assignment.tps:
        state = assignment.state_value(tp)
        if (
            state.lso is not None
            and state.has_valid_position
            and not state.paused
            and state.lso > state.position
        ):
            yield tp, state


def check_fetcher(consumer: AIOKafkaConsumer) -> None:
    """Raise FetcherDied if the consumer's background fetch task has ended with an error.

    aiokafka's fetch task can fail an internal assertion while a rebalance changes the
    assignment (aio-libs/aiokafka#796; seen here in the log agent under a slow test run).
    Nothing reports it: `getmany` then returns no records, for good. Call after every fetch.
    """
    task = consumer._fetcher._fetch_task
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise FetcherDied(
            f"the Kafka consumer's fetch task failed: {task.exception()!r}"
        ) from task.exception()


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop `consumer` (leave its group, close its connections), even if its fetch task died.

    aiokafka's stop() awaits the fetch task, and would raise a dead one's error again
    before closing the connections. That error was reported already (check_fetcher):
    a finished stand-in takes the task's place.
    """
    fetcher = consumer._fetcher
    if fetcher is not None and fetcher._fetch_task.done():
        stand_in = asyncio.get_running_loop().create_future()
        stand_in.set_result(None)
        fetcher._fetch_task = stand_in
    try:
        await consumer.stop()
    except Exception as exc:  # closing is best effort; the process goes on
        log.warning("stopping a Kafka consumer: %r", exc)
