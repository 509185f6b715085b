"""Transactional offsets as KIP-447 asks, which aiokafka does not do by itself: an offset
commit carries the consumer group's generation, and an offset read waits for the
transactions that are still committing offsets.

A worker that runs exactly once (streams.delivery.ExactlyOnce) commits its input offsets
inside the transaction that carries its answers. Two races follow when partitions move:

- Written by a worker a rebalance already replaced: aiokafka's TxnOffsetCommit (v0)
  names no generation, so the group coordinator takes the commit, and the partition's
  next owner runs those records again. v3 names it, and such a commit is refused.
- Read by the partition's next owner: Kafka returns a transaction's offsets only once its
  commit markers are written, a moment after the commit returns. aiokafka's OffsetFetch
  (v3) meanwhile reads the offset before it, and the new owner answers those records a
  second time (seen by bench/chaos.py, seed 41, during overlapping hot swaps). v7 with
  `require_stable` gets UNSTABLE_OFFSET_COMMIT instead, and asks again.

Example:
    await producer.start(); await consumer.start()
    transactional_offsets(producer, consumer)   # before consumer.subscribe(...)
"""

from __future__ import annotations

import collections
from types import SimpleNamespace
from typing import Any

import aiokafka.errors as Errors
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import CoordinationType
from aiokafka.producer.sender import TxnOffsetCommitHandler
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)
from aiokafka.structs import OffsetAndMetadata


def transactional_offsets(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer) -> None:
    """Make `producer`'s transactional offset commits carry `consumer`'s group generation,
    and `consumer`'s offset reads wait for pending transactional commits (start both
    first; call before the consumer subscribes, so its first assignment reads stable)."""
    _fence_offset_commits(producer, consumer)
    _read_stable_offsets(consumer)


def _per_topic(*partition_fields: tuple[str, Any]) -> CompactArray:
    """A flexible version's topics array: each topic's name, and `partition_fields` for each
    of its partitions (tagged fields after each)."""
    return CompactArray(
        ("name", CompactString("utf-8")),
        ("partitions", CompactArray(*partition_fields, ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


# -- commits that a rebalance fences -----------------------------------------------------------
class _TxnOffsetCommitResponseV3(Response):  # type: ignore[misc]
    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", _per_topic(("partition_index", Int32), ("error_code", Int16))),
        ("tags", TaggedFields),
    )


class _TxnOffsetCommitRequestV3(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = _TxnOffsetCommitResponseV3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        (
            "topics",
            _per_topic(
                ("partition_index", Int32),
                ("committed_offset", Int64),
                ("committed_leader_epoch", Int32),
                ("committed_metadata", CompactString("utf-8")),
            ),
        ),
        ("tags", TaggedFields),
    )


class _TxnOffsetCommitRequest(Request[_TxnOffsetCommitRequestV3]):  # type: ignore[misc]
    API_KEY = 28

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields

    def build(
        self, request_struct_class: type[_TxnOffsetCommitRequestV3]
    ) -> _TxnOffsetCommitRequestV3:
        return request_struct_class(**self._fields)


_FENCED = {
    22: "ILLEGAL_GENERATION",
    25: "UNKNOWN_MEMBER_ID",
    27: "REBALANCE_IN_PROGRESS",
    82: "FENCED_INSTANCE_ID",
}
"""What the group coordinator answers a worker whose group generation has moved on."""


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

    def create_request(self) -> _TxnOffsetCommitRequest:
        txn = self._sender._txn_manager
        topics: dict[str, list[tuple[Any, ...]]] = {}
        for tp, offset in sorted(self._offsets.items()):
            topics.setdefault(tp.topic, []).append(
                (tp.partition, offset.offset, -1, offset.metadata, {})
            )
        return _TxnOffsetCommitRequest(
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
                if code in _FENCED:  # an abortable error: the loop aborts, the input reruns
                    self._sender._txn_manager.error_transaction(
                        Errors.CommitFailedError(
                            f"the group {self._group_id!r} moved on (a rebalance): {_FENCED[code]}"
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


# -- reads that wait for commits still in flight -----------------------------------------------
class UnstableOffsetCommit(Errors.KafkaError):  # type: ignore[misc]
    """A transaction that commits offsets of these partitions has not finished (aiokafka
    knows no error 88); retriable: aiokafka asks again after its retry back-off."""

    errno = 88
    message = "UNSTABLE_OFFSET_COMMIT"
    description = "a transaction is still committing offsets of these partitions"
    retriable = True


class _OffsetFetchResponseV7(Response):  # type: ignore[misc]
    API_KEY = 9
    API_VERSION = 7
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            _per_topic(
                ("partition_index", Int32),
                ("committed_offset", Int64),
                ("committed_leader_epoch", Int32),
                ("metadata", CompactString("utf-8")),
                ("error_code", Int16),
            ),
        ),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class _OffsetFetchRequestV7(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 7
    RESPONSE_TYPE = _OffsetFetchResponseV7
    SCHEMA = Schema(
        ("group_id", CompactString("utf-8")),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("partition_indexes", CompactArray(Int32)),
                ("tags", TaggedFields),
            ),
        ),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class _StableOffsetFetch(Request[_OffsetFetchRequestV7]):  # type: ignore[misc]
    API_KEY = 9

    def __init__(self, group_id: str, partitions: list[TopicPartition]) -> None:
        by_topic: dict[str, list[int]] = collections.defaultdict(list)
        for tp in sorted(partitions):
            by_topic[tp.topic].append(tp.partition)
        self._topics: list[tuple[str, list[int], dict[int, bytes]]] = [
            (topic, indexes, {}) for topic, indexes in by_topic.items()
        ]
        self._group_id = group_id

    def build(self, request_struct_class: type[_OffsetFetchRequestV7]) -> _OffsetFetchRequestV7:
        return request_struct_class(self._group_id, self._topics, True, {})


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
        response = await coordinator._send_req(_StableOffsetFetch(coordinator.group_id, partitions))
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
