"""The one module of weir that reaches into aiokafka's private attributes. Each reach-in
works around something aiokafka's public API does not offer; pyproject.toml pins aiokafka to
the versions tested, and `check_aiokafka` fails a worker at start-up, not mid-stream, if
the methods used are gone. Tests may reach in too, to stage faults.

- The fetch wait, changed per fetch (set_fetch_wait; streams.clients.FetchPace decides it).
- A fetch response with a hole is read up to the hole, and fetched again from there
  (read_holes_again; why in streams.fetch_holes).
- The fetch routine woken when a fetch ends, not only when its task does
  (wake_fetcher_when_a_fetch_ends: a race in aiokafka 0.14 that held fetches back).
- Whether a consumer has records still to read, and which partitions' fetches came back
  without them (unread_records, unfetched_positions): aiokafka gives a partition's position
  only through a coroutine that may fetch, and tells nothing of what it buffered.
- A fetch task that died silently (check_fetcher, stop_consumer; aio-libs/aiokafka#796).
- Metadata of a topic the consumer does not subscribe to (topic_partitions), and a refresh
  of the metadata on demand (refresh_metadata).
- Group membership: the member id to rejoin as, and requests to the group's coordinator
  (member_id, rejoin_as, ask_group_coordinator; streams.membership).
- A transaction aiokafka dropped after an error, unknown to the broker (transaction_forgotten).
- How soon a new transaction's first partition is asked for again while the last commit's
  markers are written (retry_next_transaction_sooner).
- Transactional offsets as KIP-447 asks (transactional_offsets), which aiokafka does not do
  by itself: an offset commit carries the consumer group's generation, and an offset read
  waits for the transactions that are still committing offsets.

  A worker that runs exactly once (streams.transactions.ExactlyOnce) commits its input offsets
  inside the transaction that carries its answers. Two races follow when partitions move:

  - Written by a worker a rebalance already replaced: aiokafka's TxnOffsetCommit (v0)
    names no generation, so the group coordinator takes the commit, and the partition's
    next owner runs those records again. v3 names it, and such a commit is refused.
  - Read by the partition's next owner: Kafka returns a transaction's offsets only once
    its commit markers are written, a moment after the commit returns. aiokafka's
    OffsetFetch (v3) meanwhile reads the offset before it, and the new owner answers those
    records a second time (seen by bench/chaos.py, seed 41, during overlapping hot swaps).
    v7 with `require_stable` gets UNSTABLE_OFFSET_COMMIT instead, and asks again.

  The requests themselves are in streams.kip447_requests.

Example:
    check_aiokafka()
    await producer.start(); await consumer.start()
    transactional_offsets(producer, consumer)   # before consumer.subscribe(...)
    records = await consumer.getmany(timeout_ms=100)
    check_fetcher(consumer)
    set_fetch_wait(consumer, 5)
    ...
    await stop_consumer(consumer)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import aiokafka
import aiokafka.consumer.fetcher as aiokafka_fetcher
import aiokafka.errors as Errors
import aiokafka.producer.sender as aiokafka_sender
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import CoordinationType
from aiokafka.producer.sender import TxnOffsetCommitHandler
from aiokafka.structs import OffsetAndMetadata

from streams.errors import FetcherDied
from streams.fetch_holes import HoleWatch
from streams.kip447_requests import (
    FENCED,
    StableOffsetFetch,
    TxnOffsetCommitRequest,
    UnstableOffsetCommit,
)

log = logging.getLogger(__name__)


def check_aiokafka() -> None:
    """Fail at start-up, not mid-stream, if aiokafka no longer has the methods that this
    module reaches into (pyproject.toml pins the versions they were tested with; the
    instance attributes it uses are read as the clients start)."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.consumer.subscription_state import Assignment, TopicPartitionState
    from aiokafka.producer.sender import Sender
    from aiokafka.producer.transaction_manager import TransactionManager

    wanted: dict[Any, tuple[str, ...]] = {
        AIOKafkaClient: ("_wait_on_metadata", "force_metadata_update"),
        GroupCoordinator: ("_do_fetch_commit_offsets", "_send_req", "coordinator_dead"),
        Assignment: ("tps", "state_value"),
        TopicPartitionState: ("has_valid_position", "position"),
        Sender: ("_do_txn_offset_commit", "_find_coordinator"),
        TxnOffsetCommitHandler: ("create_request", "handle_response"),
        TransactionManager: ("is_empty_transaction",),
        aiokafka_sender: ("BACKOFF_OVERRIDE",),
        aiokafka_fetcher: ("PartitionRecords",),
        aiokafka_fetcher.Fetcher: ("_notify",),
    }
    missing = [
        f"{owner.__name__}.{name}"
        for owner, names in wanted.items()
        for name in names
        if not hasattr(owner, name)
    ]
    if missing:
        raise RuntimeError(
            f"aiokafka {aiokafka.__version__} lacks {missing}, which weir "
            "relies on: install the version pyproject.toml names"
        )


# -- the consumer's fetches ------------------------------------------------------------------------
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


# -- metadata and group membership ----------------------------------------------------------------
async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of `topic`, waiting for its metadata (a started consumer that does not
    subscribe to it knows nothing of it: Apache Kafka sends the metadata of named topics
    only). UnknownTopicOrPartitionError if the topic does not appear within the consumer's
    request timeout."""
    partitions = await consumer._client._wait_on_metadata(topic)
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Have `consumer` ask for the cluster's metadata now, in the background: a pattern
    subscription then takes in the topics made since (aiokafka looks by itself only every
    `metadata_max_age_ms`)."""
    consumer._client.force_metadata_update()


def member_id(consumer: AIOKafkaConsumer) -> str:
    """The member id the group coordinator gave `consumer` ("" before its first join)."""
    return str(consumer._coordinator.member_id)


def rejoin_as(consumer: AIOKafkaConsumer, member: str) -> None:
    """Make a started consumer that has not subscribed yet join as `member` (streams.membership).
    A coordinator that still counts it takes the rejoin as that member's (Apache Kafka
    without a rebalance, if it was not the group's leader); one that has expired it answers
    UNKNOWN_MEMBER_ID, and aiokafka joins afresh."""
    consumer._coordinator.member_id = member


async def ask_group_coordinator(consumer: AIOKafkaConsumer, group: str, request: Any) -> Any:
    """Send `request` to `group`'s coordinator through `consumer`'s connections."""
    coordinator = await consumer._client.coordinator_lookup(CoordinationType.GROUP, group)
    return await consumer._client.send(coordinator, request)


# -- transactions --------------------------------------------------------------------------------
NEXT_TRANSACTION_RETRY_S = 0.002
"""How long aiokafka waits to ask again to add a partition to a new transaction that the
broker refused because the last transaction's commit markers are still being written
(CONCURRENT_TRANSACTIONS, KAFKA-5477). That is the first record of every transaction after
a commit; the markers take a few milliseconds, and aiokafka's own 20 ms made that record
wait 20 ms or more (bench_gateway on Apache Kafka, sequential 1-row HTTP requests: p99
38 ms against 21-24 ms with 2 ms; bench/README.md, 2026-12-05)."""


def retry_next_transaction_sooner() -> None:
    """Make every transactional producer of this process ask again after
    NEXT_TRANSACTION_RETRY_S, not 20 ms, while the last transaction's markers are written
    (aiokafka reads the wait from a module constant). A retry is one small request to the
    transaction coordinator: a few more per transaction, ten transactions a second at most."""
    aiokafka_sender.BACKOFF_OVERRIDE = NEXT_TRANSACTION_RETRY_S


def transaction_forgotten(producer: AIOKafkaProducer) -> bool:
    """Whether `producer` believes its open transaction holds nothing, which it does after an
    abortable error (a refused offset commit): it then ends the transaction without telling
    the broker, which still holds any records sent in it."""
    return bool(producer._txn_manager.is_empty_transaction())


def transactional_offsets(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer) -> None:
    """Make `producer`'s transactional offset commits carry `consumer`'s group generation,
    and `consumer`'s offset reads wait for pending transactional commits (start both
    first; call before the consumer subscribes, so its first assignment reads stable)."""
    _fence_offset_commits(producer, consumer)
    _read_stable_offsets(consumer)


class _FencedTxnOffsetCommit(TxnOffsetCommitHandler):  # type: ignore[misc]
    """aiokafka's TxnOffsetCommit (v0) carries no consumer group generation, so the group
    coordinator takes offsets from a worker that a rebalance already replaced. This one
    sends v3, with the consumer's generation and member id: such a commit is refused, and
    the worker's transaction aborts instead of committing a repeat."""

    def __init__(
        self, sender: Any, offsets: Any, group_id: str, consumer: AIOKafkaConsumer
    ) -> None:
        super().__init__(sender, offsets, group_id)
        self._group = consumer._coordinator

    def create_request(self) -> TxnOffsetCommitRequest:
        txn = self._sender._txn_manager
        topics: dict[str, list[tuple[Any, ...]]] = {}
        for tp, offset in sorted(self._offsets.items()):
            topics.setdefault(tp.topic, []).append(
                (tp.partition, offset.offset, -1, offset.metadata, {})
            )
        return TxnOffsetCommitRequest(
            {
                "transactional_id": txn.transactional_id,
                "group_id": self._group_id,
                "producer_id": txn.producer_id,
                "producer_epoch": txn.producer_epoch,
                "generation_id": self._group.generation,
                "member_id": self._group.member_id,
                "group_instance_id": self._group._group_instance_id,
                "topics": [(topic, partitions, {}) for topic, partitions in topics.items()],
                "tags": {},
            }
        )

    def handle_response(self, resp: Any) -> float | None:
        for _topic, partitions, _ in resp.topics:
            for _partition, code, _ in partitions:
                if code in FENCED:  # an abortable error: the loop aborts, the input reruns
                    self._sender._txn_manager.error_transaction(
                        Errors.CommitFailedError(
                            f"the group {self._group_id!r} moved on (a rebalance): {FENCED[code]}"
                        )
                    )
                    return None
        as_v0 = SimpleNamespace(
            errors=[
                (topic, [(p, code) for p, code, _ in partitions])
                for topic, partitions, _ in resp.topics
            ]
        )
        return super().handle_response(as_v0)  # type: ignore[no-any-return]


def _fence_offset_commits(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer) -> None:
    """Make `producer`'s transactional offset commits carry `consumer`'s group generation
    (start both first)."""
    sender = producer._sender

    async def txn_offset_commit(offsets: Any, group_id: str) -> None:
        if not offsets:
            return
        try:
            node_id = await sender._find_coordinator(CoordinationType.GROUP, group_id)
        except Errors.GroupAuthorizationFailedError as exc:
            sender._txn_manager.error_transaction(exc)
            return
        await _FencedTxnOffsetCommit(sender, offsets, group_id, consumer).do(node_id)

    sender._do_txn_offset_commit = txn_offset_commit


def _read_stable_offsets(consumer: AIOKafkaConsumer) -> None:
    """Make `consumer`'s reads of its group's offsets (on assignment, and `committed()`)
    wait while a transaction still commits offsets of the partitions read."""
    coordinator = consumer._coordinator

    def check(code: int) -> None:
        if code == UnstableOffsetCommit.errno:
            raise UnstableOffsetCommit()
        error = Errors.for_code(code)
        if error is Errors.NotCoordinatorForGroupError:
            coordinator.coordinator_dead()  # find the coordinator again, then ask again
        raise error()

    async def fetch_committed(
        partitions: list[TopicPartition],
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        response = await coordinator._send_req(StableOffsetFetch(coordinator.group_id, partitions))
        if response.error_code:
            check(response.error_code)
        offsets = {}
        for topic, answers, _ in response.topics:
            for partition, offset, _epoch, metadata, code, _ in answers:
                if code == Errors.UnknownTopicOrPartitionError.errno:
                    continue  # as aiokafka does: no offset (a topic deleted meanwhile)
                if code:
                    check(code)
                if offset != -1:  # -1: nothing committed yet
                    offsets[TopicPartition(topic, partition)] = OffsetAndMetadata(
                        offset, metadata or ""
                    )
        return offsets

    coordinator._do_fetch_commit_offsets = fetch_committed
