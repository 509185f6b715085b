"""aiokafka's transactional producer, reached into: how soon a new transaction's first
partition is asked for again (retry_next_transaction_sooner), a transaction aiokafka
dropped after an error (transaction_forgotten), and transactional offsets as KIP-447 asks
(transactional_offsets), which aiokafka does not do by itself: an offset commit carries the
consumer group's generation, and an offset read waits for the transactions that are still
committing offsets.

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

The requests themselves are in streams.aiokafka_internals.kip447_requests.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aiokafka.errors as Errors
import aiokafka.producer.sender as aiokafka_sender
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import CoordinationType
from aiokafka.producer.sender import TxnOffsetCommitHandler
from aiokafka.structs import OffsetAndMetadata

from streams.aiokafka_internals.kip447_requests import (
    FENCED,
    StableOffsetFetch,
    TxnOffsetCommitRequest,
    UnstableOffsetCommit,
)


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
