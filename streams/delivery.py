"""How a worker's outputs and its input offsets reach Kafka: at least once, or exactly once.

The worker's loop (streams.loop) sends what each chunk produced and then says
which input offsets the chunk finished. Two ways to make that safe, behind one
`Delivery` protocol:

- `AtLeastOnce` (a broker without transactions: Tansu): records are sent as
  they come; a chunk's offsets are committed once everything it sent is
  delivered, in order (streams.commits). A crash repeats what ran since the
  last commit; streams.claims marks those repeats.
- `ExactlyOnce` (a broker with transactions: Apache Kafka; streams.transactions):
  a transaction holds every record sent and the offsets of the chunks that sent
  them, and commits them together.

Example:
    delivery = AtLeastOnce(producer, consumer, interval_s=0.1)
    await delivery.send(topic, value, key=None, partition=0, headers=[])
    delivery.done({TopicPartition("in", 0): 42})
    records = await consumer.getmany(timeout_ms=delivery.wait_ms(100))
    await delivery.commit_if_due(idle=not records)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.commits import Offsets, OrderedCommits


class Delivery(Protocol):
    """What the loop needs of either way."""

    @property
    def pending(self) -> bool:
        """Records sent or offsets finished that are not committed yet."""
        ...

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        partition: int | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        """Queue one record (raises the producer's error if it refuses it at once)."""
        ...

    def done(self, offsets: Offsets) -> None:
        """Every record below `offsets` is finished: what it produced was sent before this."""
        ...

    def wait_ms(self, longest: int) -> int:
        """How long the loop may wait for records before it must call commit_if_due."""
        ...

    async def commit_if_due(self, *, idle: bool) -> None:
        """Commit if it is time (`idle`: no records are waiting)."""
        ...

    async def flush(self) -> None:
        """Return once everything sent so far is delivered and committed."""
        ...

    async def run(self) -> None:
        """Background work until cancelled; raises DeliveryFailed when a send failed."""
        ...


class AtLeastOnce:
    """Records sent as they come; offsets committed in order once delivered."""

    def __init__(
        self, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, *, interval_s: float
    ) -> None:
        self._producer = producer
        self._commits = OrderedCommits(consumer.commit, interval_s=interval_s)
        self._sent: list[asyncio.Future[Any]] = []

    @property
    def pending(self) -> bool:
        return bool(self._sent) or bool(self._commits.pending)

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        partition: int | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        self._sent.append(
            await self._producer.send(
                topic, value, key=key, partition=partition, headers=list(headers)
            )
        )

    def done(self, offsets: Offsets) -> None:
        sent, self._sent = self._sent, []
        self._commits.add(sent, offsets)

    def wait_ms(self, longest: int) -> int:
        return longest

    async def commit_if_due(self, *, idle: bool) -> None:
        """Commits run in the background (`run`), at their own interval."""

    async def flush(self) -> None:
        await self._commits.flush()

    async def run(self) -> None:
        await self._commits.run()
