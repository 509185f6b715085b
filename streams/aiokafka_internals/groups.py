"""aiokafka's metadata and group membership, reached into: metadata of a topic the consumer
does not subscribe to and a refresh on demand (aiokafka looks by itself only every
`metadata_max_age_ms`), the member id to rejoin as, and requests to a group's coordinator
(streams.membership)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import CoordinationType


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
