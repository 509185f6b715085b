"""Hand-off: a stage's output runs on in the same worker at once, and still goes on Kafka.

Stages are chained by the version's topics: step 0 sends to step 1's topic, and
whichever worker owns that partition reads it. When that is the worker that sent
it, waiting for the record to come back costs a produce acknowledgement and a
fetch (5-8 ms a step on the embedded broker) for nothing. So the worker's loop
(streams.loop) runs such a record on straight away, and still sends it, marked
with the `weir-handed` header. It runs on the batch its bytes were encoded from
when the sink kept it (`Outgoing.decoded`: a step's result, as decoding the
bytes would give it), else on the bytes. The record on the topic
stays what recovery, drains and other replicas go by:

- When the worker reads the record back, it does not run it again: the offset is
  committed once what the early run sent is delivered, in the partition's order,
  like any record it ran.
- If the early run failed, the record runs again from the topic as any other
  (its error reply and dead-letter copy then name its real offset).
- If the worker dies first, the partition's next owner sees a mark that is not
  its own and runs the record: a repeat, as after any crash, never a loss.
- If a rebalance moves the partition to another worker (or the worker stops)
  before the record was read back, the offsets of handed records next to the
  committed one are committed at once (`settle`), so the new owner does not
  repeat them; one that cannot be committed yet keeps the partition claimed,
  so its repeat is marked (streams.claims).

Example:
    handoff = Handoff()
    headers = handoff.mark(outgoing.headers)          # a record that will run here too
    record = handoff.hand(tp, outgoing.value, headers, delivery)
    ...                                               # the next stage runs `record`
    handoff.ran(record, its_deliveries)               # or handoff.forget(record) if it failed
    done = handoff.claim(fetched_record)              # the deliveries to wait for, or None
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord, RecordMetadata

from streams.messages import HANDED

log = logging.getLogger(__name__)

Deliveries = list["asyncio.Future[RecordMetadata]"]


@dataclass
class _Handed:
    tp: TopicPartition
    delivery: asyncio.Future[RecordMetadata]
    """The handed record's own delivery (its offset, once acknowledged)."""
    ran: Deliveries | None = None
    """What its early run sent; None until it ran (or if it failed)."""


class Handoff:
    """The records this worker sent to its own stages and ran early, until it reads them back."""

    def __init__(self) -> None:
        # Unique per process: a restarted worker must not take its predecessor's marks for its own.
        self._prefix = f"{os.getpid()}.{uuid.uuid4().hex[:12]}.".encode()
        self._next = itertools.count()
        self._handed: dict[bytes, _Handed] = {}

    def __len__(self) -> int:
        return len(self._handed)

    def mark(self, headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """`headers` with a new mark: the record is to be sent and run here at once."""
        return [*headers, (HANDED, self._prefix + str(next(self._next)).encode())]

    def hand(self, tp: TopicPartition, value: bytes | None, headers: list[tuple[str, bytes]],
             delivery: asyncio.Future[RecordMetadata]) -> ConsumerRecord:
        """The marked record just sent to `tp`, as the next stage reads it (offset -1: not
        known until the broker acknowledges it)."""
        mark = headers[-1][1]
        self._handed[mark] = _Handed(tp, delivery)
        return ConsumerRecord(tp.topic, tp.partition, -1, time.time_ns() // 1_000_000, 0, None,
                              value, None, 0, len(value or b""), tuple(headers))

    def ran(self, record: ConsumerRecord, deliveries: Deliveries) -> None:
        """A handed record's early run succeeded and sent `deliveries`."""
        handed = self._handed.get(_mark(record))
        if handed is not None:
            handed.ran = deliveries

    def forget(self, record: ConsumerRecord) -> None:
        """A handed record's early run failed (or was cut short): it runs again when read back."""
        self._handed.pop(_mark(record) or b"", None)

    def claim(self, record: ConsumerRecord) -> Deliveries | None:
        """If this worker already ran `record` (read back from Kafka), what that run sent;
        else None: the record is to be run."""
        mark = _mark(record) if record.offset >= 0 else None  # -1: being handed now
        if mark is None or not mark.startswith(self._prefix):
            return None
        handed = self._handed.pop(mark, None)
        return handed.ran if handed is not None else None

    def settle(self, revoked: Iterable[TopicPartition],
               committed: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Offsets to commit before `revoked` partitions move: past each run of handed,
        delivered records that starts at the partition's `committed` offset.

        Call once everything sent is delivered. A handed record behind a record not run yet
        (another worker's, on a shared partition) cannot be committed: its next owner runs
        it again, and the log store keeps one row of it.
        """
        mine: dict[TopicPartition, dict[int, bytes]] = {}
        for mark, handed in self._handed.items():
            if handed.tp in committed and handed.ran is not None and _acknowledged(handed):
                mine.setdefault(handed.tp, {})[handed.delivery.result().offset] = mark
        settled: dict[TopicPartition, int] = {}
        for tp in revoked:
            offsets, position = mine.get(tp, {}), committed.get(tp)
            if position is None:
                continue
            while position in offsets:
                self._handed.pop(offsets.pop(position))
                position += 1
            if position != committed[tp]:
                settled[tp] = position
            if offsets:
                log.warning("%d records of %s ran here but cannot be committed yet: if the "
                            "partition goes to another worker, it runs them again",
                            len(offsets), tp)
        return settled

    def unsettled(self, partitions: Iterable[TopicPartition]) -> set[TopicPartition]:
        """Those of `partitions` holding records that ran here and are not committed (after
        `settle`): their next reader runs them again, a repeat (streams.claims marks it)."""
        wanted = set(partitions)
        return {h.tp for h in self._handed.values() if h.tp in wanted and h.ran is not None}

    def keep(self, assigned: set[TopicPartition]) -> None:
        """Drop the records of partitions this worker no longer reads (after a rebalance)."""
        for mark in [m for m, h in self._handed.items() if h.tp not in assigned]:
            del self._handed[mark]


def _mark(record: ConsumerRecord) -> bytes | None:
    for key, value in record.headers or ():
        if key == HANDED:
            return bytes(value)
    return None


def _acknowledged(handed: _Handed) -> bool:
    d = handed.delivery
    return d.done() and not d.cancelled() and d.exception() is None
