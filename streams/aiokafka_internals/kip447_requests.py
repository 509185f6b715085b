"""The Kafka requests of KIP-447 that aiokafka lacks, as wire formats: TxnOffsetCommit v3
(an offset commit inside a transaction that names the consumer group's generation) and
OffsetFetch v7 with `require_stable` (an offset read that waits for transactions still
committing offsets). streams.aiokafka_internals.transactions sends them in place of aiokafka's older
versions (transactional_offsets), and says why.

Example:
    request = TxnOffsetCommitRequest({"transactional_id": ..., "generation_id": 7, ...})
    response = await client.send(node_id, request)     # a TxnOffsetCommitResponseV3
"""

from __future__ import annotations

import collections
from typing import Any

import aiokafka.errors as Errors
from aiokafka import TopicPartition
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


def _per_topic(*partition_fields: tuple[str, Any]) -> CompactArray:
    """A flexible version's topics array: each topic's name, and `partition_fields` for each
    of its partitions (tagged fields after each)."""
    return CompactArray(
        ("name", CompactString("utf-8")),
        ("partitions", CompactArray(*partition_fields, ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


# -- offset commits that a rebalance fences -----------------------------------------------------
class TxnOffsetCommitResponseV3(Response):  # type: ignore[misc]
    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", _per_topic(("partition_index", Int32), ("error_code", Int16))),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitRequestV3(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = TxnOffsetCommitResponseV3
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


class TxnOffsetCommitRequest(Request[TxnOffsetCommitRequestV3]):  # type: ignore[misc]
    API_KEY = 28

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields

    def build(
        self, request_struct_class: type[TxnOffsetCommitRequestV3]
    ) -> TxnOffsetCommitRequestV3:
        return request_struct_class(**self._fields)


FENCED = {
    22: "ILLEGAL_GENERATION",
    25: "UNKNOWN_MEMBER_ID",
    27: "REBALANCE_IN_PROGRESS",
    82: "FENCED_INSTANCE_ID",
}
"""What the group coordinator answers a worker whose group generation has moved on."""


# -- offset reads that wait for commits still in flight -----------------------------------------
class UnstableOffsetCommit(Errors.KafkaError):  # type: ignore[misc]
    """A transaction that commits offsets of these partitions has not finished (aiokafka
    knows no error 88); retriable: aiokafka asks again after its retry back-off."""

    errno = 88
    message = "UNSTABLE_OFFSET_COMMIT"
    description = "a transaction is still committing offsets of these partitions"
    retriable = True


class OffsetFetchResponseV7(Response):  # type: ignore[misc]
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


class OffsetFetchRequestV7(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 7
    RESPONSE_TYPE = OffsetFetchResponseV7
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


class StableOffsetFetch(Request[OffsetFetchRequestV7]):  # type: ignore[misc]
    API_KEY = 9

    def __init__(self, group_id: str, partitions: list[TopicPartition]) -> None:
        by_topic: dict[str, list[int]] = collections.defaultdict(list)
        for tp in sorted(partitions):
            by_topic[tp.topic].append(tp.partition)
        self._topics: list[tuple[str, list[int], dict[int, bytes]]] = [
            (topic, indexes, {}) for topic, indexes in by_topic.items()
        ]
        self._group_id = group_id

    def build(self, request_struct_class: type[OffsetFetchRequestV7]) -> OffsetFetchRequestV7:
        return request_struct_class(self._group_id, self._topics, True, {})
