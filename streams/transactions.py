"""Exactly once: a worker's outputs and input offsets committed in Kafka transactions.

`ExactlyOnce` (a broker with transactions: Apache Kafka) is the worker's
`streams.delivery.Delivery` there. A transaction holds every record sent and the offsets
of the chunks that sent them, and commits them together (consume-transform-produce, as
Kafka Streams' exactly-once does):

- `commit_interval_ms` after the transaction's first record, whether more came or not (an
  earlier commit would not make answers sooner: the gateway's reply reader reads
  uncommitted records as they are sent);
- `commit_interval_behind_ms` after it while the worker is behind its input (fewer
  commits, each of which costs the broker and the worker);
- `commit_interval_uncommitted_ms` after it while every record in it answers a caller that
  reads answers uncommitted (messages.REPLY_UNCOMMITTED: the HTTP gateway; nobody waits
  for the commit, and each commit is broker work that delays the answers around it) and
  none went to a topic other workers read committed (a boundary topic, a challenger's);
- as soon as the worker has nothing more to run, for a transaction that sent to a boundary
  topic (`hops`: the next stage of the path reads it committed, in another worker), once
  `hop_gap_s` has passed since the last such commit: each cut in the chain costs a
  commit, not an interval.

A due transaction commits beside the loop, which sends on a second producer meanwhile. A
crash aborts the open transactions: their records are never seen by consumers that read
`read_committed`, and their input is run again from the last commit. The transactional
ids belong to the worker (a restarted worker fences its dead predecessor at once), and the
offsets are committed with the consumer's group generation
(streams.aiokafka_internals.transactional_offsets), so a worker that lost its partitions
in a rebalance cannot commit them.

Example:
    delivery = await worker_transactions(producer, consumer, options, settings, group_id)
    await delivery.send(topic, value, key=None, partition=0, headers=[])
    delivery.done({TopicPartition("in", 0): 42})
    records = await consumer.getmany(timeout_ms=delivery.wait_ms(100))
    await delivery.commit_if_due(idle=not records)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.aiokafka_internals import (
    retry_next_transaction_sooner,
    transaction_forgotten,
    transactional_offsets,
    unread_records,
)
from streams.commits import Offsets
from streams.errors import DeliveryFailed
from streams.messages import REPLY_UNCOMMITTED
from streams.settings import WorkerSettings

log = logging.getLogger(__name__)


async def worker_transactions(
    producer: AIOKafkaProducer,
    consumer: AIOKafkaConsumer,
    producer_options: dict[str, Any],
    settings: WorkerSettings,
    group_id: str,
    *,
    hops: Collection[str] = (),
    fans_out_to: Collection[str] = (),
) -> ExactlyOnce:
    """A worker's transactions, on its started `producer` (made with `producer_options`)
    and a second one started here (`ExactlyOnce.producers[1]`: the caller stops both), whose
    transactional id `<id>.2` also belongs to the worker."""
    second_id = f"{producer_options['transactional_id']}.2"
    second = AIOKafkaProducer(**{**producer_options, "transactional_id": second_id})
    try:
        await second.start()
    except BaseException:
        await second.stop()
        raise
    for each in (producer, second):
        transactional_offsets(each, consumer)
    retry_next_transaction_sooner()
    s = settings
    return ExactlyOnce(
        (producer, second),
        consumer,
        group_id,
        interval_s=s.commit_interval_ms / 1000,
        behind_interval_s=s.commit_interval_behind_ms / 1000,
        hops=hops,
        fans_out_to=fans_out_to,
        hop_gap_s=s.hop_commit_gap_ms / 1000,
        uncommitted_interval_s=s.commit_interval_uncommitted_ms / 1000,
    )


@dataclass
class _Transaction:
    """What one transaction holds, from its first send (or finished chunk) to its commit."""

    producer: AIOKafkaProducer
    began: bool = False  # begun on the producer (a transaction of offsets only begins late)
    sent: list[asyncio.Future[Any]] = field(default_factory=list)
    offsets: Offsets = field(default_factory=dict)
    hopped: bool = False  # it sent to one of `hops`
    awaited: bool = False  # it holds a record not marked REPLY_UNCOMMITTED


class ExactlyOnce:
    """A chunk's records and input offsets committed in one Kafka transaction.

    Two transactional producers take turns: when a transaction is due, it commits on a task
    of its own while the loop goes on and sends on the other producer. A commit takes
    ~20-30 ms on Apache Kafka (the last acknowledgements, the offsets, EndTxn, then the
    broker writes the markers and checks the next transaction's first records against
    them); with one producer the loop waited through all of it, and so did every record
    that came meanwhile (bench_txn at 500 records/s: round trip p99 40-43 ms, against 20-21
    beside the loop; bench/README.md, 2026-12-07 morning). A transaction commits only after
    the one before it has (offsets commit in order), and a producer takes sends again only
    once its last commit has ended.
    """

    def __init__(
        self,
        producers: tuple[AIOKafkaProducer, AIOKafkaProducer],
        consumer: AIOKafkaConsumer,
        group_id: str,
        *,
        interval_s: float,
        behind_interval_s: float = 0.0,
        hops: Collection[str] = (),
        hop_gap_s: float = 0.0,
        fans_out_to: Collection[str] = (),
        uncommitted_interval_s: float = 0.0,
    ) -> None:
        self._producers = producers
        self._consumer = consumer
        self._group_id = group_id
        self._intervals_s = (interval_s, max(interval_s, behind_interval_s))
        self._interval_s = interval_s  # the current one: the second while behind
        self._uncommitted_interval_s = uncommitted_interval_s
        self._open = _Transaction(producers[0])
        self._opened_at: float | None = None  # loop time the open transaction began
        self._committing: asyncio.Task[None] | None = None  # the last transaction's commit
        self._hops = frozenset(hops)
        self._read_committed = self._hops | frozenset(fans_out_to)  # by other workers
        self._hop_gap_s = hop_gap_s
        self._hop_handed_at = -math.inf  # loop time the last one with hops was handed to commit
        self._lock = asyncio.Lock()  # sends and the handing over of a transaction never overlap
        self._failed: DeliveryFailed | None = None  # a transaction failed: for good
        self._failing = asyncio.Event()

    @property
    def producers(self) -> tuple[AIOKafkaProducer, AIOKafkaProducer]:
        """The two producers that take turns."""
        return self._producers

    @property
    def pending(self) -> bool:
        committing = self._committing is not None and not self._committing.done()
        return self.transaction_open or committing

    @property
    def transaction_open(self) -> bool:
        """A transaction takes the sends, not handed over to commit yet."""
        return self._opened_at is not None

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        partition: int | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        async with self._lock:
            self._raise_if_failed()
            transaction = self._open
            if not transaction.began:
                await transaction.producer.begin_transaction()
                transaction.began = True
            if self._opened_at is None:
                self._opened_at = asyncio.get_running_loop().time()
            transaction.sent.append(
                await transaction.producer.send(
                    topic, value, key=key, partition=partition, headers=list(headers)
                )
            )
            transaction.hopped = transaction.hopped or topic in self._hops
            transaction.awaited = (
                transaction.awaited
                or topic in self._read_committed
                or (REPLY_UNCOMMITTED, b"1") not in headers
            )

    def done(self, offsets: Offsets) -> None:
        self._open.offsets.update(offsets)

    def wait_ms(self, longest: int) -> int:
        if self._opened_at is None:
            return longest
        now = asyncio.get_running_loop().time()
        left = self._opened_at + self._open_for_s() - now
        if self._open.hopped:  # what is fetched already runs first; then, idle, it commits
            left = min(left, max(0.0, self._hop_handed_at + self._hop_gap_s - now))
        return max(0, min(longest, math.ceil(left * 1000)))

    async def commit_if_due(self, *, idle: bool) -> None:
        """An open transaction commits `interval_s` after it began, or `behind_interval_s`
        while its consumer has committed input it has not read yet (a saturated worker
        commits less often), and not as soon as the loop is idle: aiokafka begins each
        transaction with AddPartitionsToTxn, which Apache Kafka refuses
        (CONCURRENT_TRANSACTIONS; asked again after 20 ms then, 2 ms now) until the previous
        commit's markers are written, so a record that came just after an idle commit waited
        for them (1-row requests at 50/s: round trip p50 ~110 ms; at once in an open one). Offsets
        of chunks that sent nothing commit when idle, and so does a transaction that sent
        to a boundary topic once `hop_gap_s` has passed since the last such commit: the
        next stage reads it committed, and would otherwise see each record up to
        `interval_s` late, at every cut of the chain. The commit runs beside the loop."""
        self._interval_s = self._intervals_s[unread_records(self._consumer)]
        if self._opened_at is None:
            if self._open.offsets and idle:
                await self._hand_over()
            return
        now = asyncio.get_running_loop().time()
        gap_passed = now - self._hop_handed_at >= self._hop_gap_s
        hop_due = idle and self._open.hopped and gap_passed
        if hop_due or now - self._opened_at >= self._open_for_s():
            await self._hand_over()

    def _open_for_s(self) -> float:
        """How long the open transaction stays open (see the module's docstring)."""
        if self._open.awaited:
            return self._interval_s
        return max(self._interval_s, self._uncommitted_interval_s)

    async def flush(self) -> None:
        async with self._lock:
            await self._settle()
            if self._open.offsets or self._opened_at is not None:
                await self._commit(self._take())

    async def _hand_over(self) -> None:
        """Commit the open transaction on a task of its own; the other producer takes the
        next sends (once its own last commit has ended: it is the one just settled)."""
        async with self._lock:
            await self._settle()
            self._committing = asyncio.create_task(
                self._commit_beside(self._take()), name="weir-transaction-commit"
            )

    def _take(self) -> _Transaction:
        """The open transaction, handed over to commit; the next begins on the other producer."""
        transaction = self._open
        if transaction.hopped:
            self._hop_handed_at = asyncio.get_running_loop().time()
        first, second = self._producers
        following = second if transaction.producer is first else first
        self._open, self._opened_at = _Transaction(following), None
        return transaction

    async def _settle(self) -> None:
        """Wait for the last transaction's commit.

        :raises DeliveryFailed: it or an earlier transaction failed.
        """
        if self._committing is not None:
            await asyncio.wait([self._committing])  # its failure is kept by _fail
            self._committing = None
        self._raise_if_failed()

    async def _commit_beside(self, transaction: _Transaction) -> None:
        """`_commit` on its own task: its failure is kept for `run()` and the next settle."""
        with contextlib.suppress(DeliveryFailed):
            await self._commit(transaction)

    async def _commit(self, transaction: _Transaction) -> None:
        """Wait for every record's acknowledgement, then commit the offsets with them.

        :raises DeliveryFailed: a record or the commit failed (the transaction is aborted,
            and this delivery fails for good).
        """
        producer = transaction.producer
        try:
            if not transaction.began:
                await producer.begin_transaction()
            results = await asyncio.gather(*transaction.sent, return_exceptions=True)
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:
                raise DeliveryFailed(f"a record could not be delivered: {failed!r}") from failed
            if transaction.offsets:
                await producer.send_offsets_to_transaction(transaction.offsets, self._group_id)
            await producer.commit_transaction()
        except BaseException as exc:
            # Nothing commits after an aborted transaction: later offsets would skip its input.
            await self._abort(transaction, exc)
            if isinstance(exc, DeliveryFailed):
                self._fail(exc)
                raise
            failure = DeliveryFailed(f"the transaction could not commit: {exc!r}")
            self._fail(failure)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise failure from exc

    async def run(self) -> None:
        """Raises DeliveryFailed once a transaction failed, even where its caller went on (a
        rebalance's commit, a commit beside the loop), so that the worker restarts.
        Cancelled, it cancels a commit still in flight (its transaction aborts; its input
        runs again after the restart)."""
        try:
            await self._failing.wait()
        finally:
            if self._committing is not None:
                self._committing.cancel()
        self._raise_if_failed()

    def _fail(self, why: DeliveryFailed) -> None:
        """After a failed transaction nothing more is sent or committed: aiokafka may have
        ended it without telling the broker (a refused offset commit clears the partitions
        it would abort), so the broker holds it open, and the next transaction's commit
        would commit its records too; and a later transaction's offsets would skip its
        input. The worker restarts instead; its successor's InitProducerId (the same
        transactional ids) aborts what the broker holds."""
        self._failed = why
        self._failing.set()

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise DeliveryFailed(f"an earlier transaction failed: {self._failed}")

    async def _abort(self, transaction: _Transaction, why: BaseException) -> None:
        """Abort `transaction` (its records are never read committed); the input since the
        last commit runs again, here after a restart or at the next owner."""
        log.warning("aborting a transaction of %d records: %r", len(transaction.sent), why)
        if transaction.sent and transaction_forgotten(transaction.producer):
            self._fail(DeliveryFailed(f"the broker still holds the failed transaction: {why!r}"))
        try:
            await transaction.producer.abort_transaction()
        except Exception as exc:  # fenced or broken: the process restarts
            log.warning("could not abort the transaction: %r", exc)
            self._fail(DeliveryFailed(f"the transaction could not be aborted: {exc!r}"))
