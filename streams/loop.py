"""A worker's stages over one consumer group, on plain aiokafka: fetch, compute, send, commit.

The life of one chunk, top to bottom (`_run_stage`): a fetch is split by topic,
each stage decodes its records, then runs them a chunk of about
`max_batch_rows` rows at a time through its span of fused steps
(streams.compute), tries failed messages again after a pause, sends what each
message produced, and says which input offsets the chunk finished
(streams.delivery: committed at least once, or exactly once in a Kafka
transaction where the broker has them). A stage runs inline on the event loop
while its chunks are quick, on a compute thread once they are slow, so the loop
keeps fetching, sending and heartbeating while a model runs (streams.placement).
User step code never runs concurrently. Before a rebalance takes partitions
away, the loop finishes the chunk in hand and commits (streams.rebalance).

Why a plain aiokafka loop rather than faust-streaming: docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord

from streams.claims import PartitionClaims, RedeliveryMarks
from streams.aiokafka_internals import check_aiokafka, check_fetcher, rejoin_as, stop_consumer
from streams.clients import FetchPace, consumer_options, producer_options, records_unless
from streams.commits import next_offsets
from streams.delivery import AtLeastOnce, Delivery
from streams.membership import (
    STUCK_AFTER_SESSIONS,
    GroupStuck,
    JoinWatch,
    MemberRecord,
    watch_group,
)
from streams.messages import Outgoing
from streams.metrics import WorkerMetrics
from streams.placement import Placement
from streams.rebalance import HeldTopics, Partitions, Rebalances
from streams.settings import WorkerSettings
from streams.stage import Incoming, Stage, StepCounters
from streams.transactions import worker_transactions

log = logging.getLogger(__name__)

POLL_MS = 100
"""How long one getmany waits for records while the worker is busy."""
IDLE_POLL_MS = 1000
"""How long one getmany waits for records once the worker is idle (FetchPace.idle); a stop
ends it at once. Each timeout wakes an idle worker, at ~0.25 ms of CPU a wake on the
machines measured (control/server/quiet_uvicorn.py): 10 a second were a third of an idle
worker's CPU."""

Fetched = dict[TopicPartition, list[ConsumerRecord]]


class StageLoop:
    """Runs `stages` (one per source topic) in consumer group `group_id` until told to stop.

    Example:
        loop = StageLoop(stages, settings, group_id="weir.default.p", client_id="p-v1-0",
                         counters=StepCounters(), exactly_once=True)
        await loop.start()
        await loop.run(stop_event)    # returns once stop_event is set and all is committed
        await loop.close()
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        settings: WorkerSettings,
        *,
        group_id: str,
        client_id: str,
        counters: StepCounters,
        exactly_once: bool = False,
        on_assigned: Partitions | None = None,
        claims: PartitionClaims | None = None,
        metrics: WorkerMetrics | None = None,
        members: MemberRecord | None = None,
    ) -> None:
        self._stages = {stage.source: stage for stage in stages}
        if len(self._stages) != len(stages):
            raise ValueError("two stages read the same topic")
        self._settings = settings
        self._counters = counters
        self._metrics = metrics
        self._on_assigned = on_assigned
        self._group_id = group_id
        self._members = members
        self._watch = JoinWatch(group_id, STUCK_AFTER_SESSIONS * settings.session_timeout_s)
        self._stuck: GroupStuck | None = None
        self._exactly_once = exactly_once
        # Repeats are marked only where a crash can repeat work (at least once).
        self._marks = (
            None
            if exactly_once or claims is None
            else RedeliveryMarks(claims, group_id, f"{client_id}.{uuid.uuid4().hex[:12]}", settings)
        )
        self._consumer_options = consumer_options(
            settings, group_id, client_id, exactly_once=exactly_once
        )
        self._producer_options = producer_options(
            settings,
            client_id,
            transactional_id=(f"{group_id}.{client_id}" if exactly_once else None),
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._producers: tuple[AIOKafkaProducer, ...] = ()  # to stop: exactly once, two
        self._delivery: Delivery | None = None
        self._pace: FetchPace | None = None
        self._placement = Placement()
        self._idle = asyncio.Event()
        self._idle.set()
        self._held = HeldTopics()
        self._fetched: Fetched = {}  # records not handled yet; a rebalance drops them
        self._rebalances: Rebalances | None = None
        self._partitions: dict[str, int] = {}  # partition counts of the topics it sends to

    @property
    def topics(self) -> list[str]:
        """The topics this loop reads."""
        return sorted(self._stages)

    @property
    def joining_s(self) -> float | None:
        """Seconds this worker has waited for its assignment (None: it has one)."""
        return self._watch.waiting_s

    @property
    def in_flight(self) -> bool:
        """True while a fetch is being processed or its outputs are not committed yet."""
        return not self._idle.is_set() or bool(self._delivery and self._delivery.pending)

    async def start(self) -> None:
        """Connect, and join the group (partitions are assigned in the background). Where it
        fails (Kafka away) it closes what it opened: it may be called again."""
        check_aiokafka()
        self._producer = AIOKafkaProducer(**self._producer_options)
        self._producers = (self._producer,)
        self._consumer = AIOKafkaConsumer(**self._consumer_options)
        try:
            await self._producer.start()
            await self._consumer.start()
            self._delivery = await self._new_delivery(self._producer, self._consumer)
        except BaseException:
            await self._disconnect()
            raise
        previous = self._members.previous(self._group_id) if self._members else None
        if previous is not None:  # this worker's last process died in the group
            log.info("rejoining %s as %s, its last process's member", self._group_id, previous)
            rejoin_as(self._consumer, previous)
        self._pace = FetchPace(self._consumer, self._settings)
        self._rebalances = Rebalances(
            self._settings,
            self._consumer,
            group_id=self._group_id,
            watch=self._watch,
            members=self._members,
            marks=self._marks,
            held=self._held,
            drop=self._drop_fetched,
            finish=self._finish_before,
            on_assigned=self._on_assigned,
        )
        self._consumer.subscribe(self.topics, listener=self._rebalances)

    async def _new_delivery(
        self, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer
    ) -> Delivery:
        if not self._exactly_once:
            interval_s = self._settings.commit_interval_ms / 1000
            return AtLeastOnce(producer, consumer, interval_s=interval_s)
        delivery = await worker_transactions(
            producer,
            consumer,
            self._producer_options,
            self._settings,
            self._group_id,
            hops=[hop for stage in self._stages.values() if (hop := stage.hands_on_to)],
            fans_out_to={t for stage in self._stages.values() for t in stage.fans_out_to},
        )
        self._producers = delivery.producers
        return delivery

    async def run(self, stop: asyncio.Event) -> None:
        """Process until `stop` is set, then flush what is in flight.

        :raises DeliveryFailed: a record could not be sent (nothing after it is committed).
        :raises GroupStuck: the consumer group did not settle (streams.membership).
        """
        assert self._delivery is not None and self._consumer is not None, "start() first"
        rebalances = self._rebalances
        assert rebalances is not None
        background = asyncio.create_task(self._delivery.run(), name="weir-delivery")
        running = asyncio.current_task()
        assert running is not None
        watchdog = asyncio.create_task(self._watch_group(running), name="weir-group-watch")
        try:
            while not stop.is_set():
                if background.done():
                    background.result()  # raises why it stopped
                records = await self._fetch(stop)
                fetched_in = rebalances.count  # what a rebalance overtakes is read again
                if records and await self._claimed(stop) and fetched_in == rebalances.count:
                    await self._handle(records)
                await self._delivery.commit_if_due(idle=not records)
            await self.flush()
            await self._hand_over(self._consumer.assignment())
        except asyncio.CancelledError:
            if self._stuck is not None:
                raise self._stuck from None
            raise
        finally:
            for task in (background, watchdog):
                task.cancel()
            await asyncio.gather(background, watchdog, return_exceptions=True)

    async def _watch_group(self, running: asyncio.Task[None]) -> None:
        """Cancel `running` (run()) if the group never settles (streams.membership): it may
        be stuck anywhere, even in what the group waits for."""
        assert self._consumer is not None
        self._stuck = await watch_group(
            self._consumer,
            self._watch,
            self._members,
            self._settings,
            self._group_id,
            self.topics,
            hold=None if self._marks is None else self._marks.hold_for_reset,
        )
        running.cancel()

    async def _claimed(self, stop: asyncio.Event) -> bool:
        """At least once, wait until the assignment is claimed (streams.claims)."""
        return self._marks is None or await self._marks.wait_claimed(stop, POLL_MS / 1000)

    async def flush(self) -> None:
        """Wait until everything processed so far is delivered and committed."""
        await self._idle.wait()
        if self._delivery is not None:
            await self._delivery.flush()

    def hold(self, topic: str) -> None:
        """Stop reading `topic`, now and after every rebalance (a draining worker's input)."""
        self._held.hold(topic, self._consumer)

    async def close(self) -> None:
        """Leave the group and close the connections."""
        try:
            await self._disconnect()
            if self._consumer is not None and self._members is not None:
                self._members.forget(self._group_id)  # it left: nobody may rejoin as it
        finally:
            self._placement.close()

    async def _disconnect(self) -> None:
        try:
            if self._consumer is not None:
                await stop_consumer(self._consumer)
        finally:
            for producer in self._producers:
                await producer.stop()

    # -- one fetch ----------------------------------------------------------------
    async def _fetch(self, stop: asyncio.Event) -> Fetched:
        """The next records; with `max_batch_wait_ms`, also what arrives that long after them.

        While it waits the loop counts as idle, so a rebalance can go ahead; it drops
        what was fetched (the partitions' owners read it again from the commit). With a
        transaction open, it waits no longer than until that transaction is due to commit
        (streams.transactions). An idle worker waits longer, until records come or `stop` is set.
        """
        s, consumer = self._settings, self._consumer
        assert consumer is not None and self._delivery is not None and self._pace is not None
        if self._pace.idle:
            self._fetched = await records_unless(
                stop,
                consumer,
                timeout_ms=self._delivery.wait_ms(IDLE_POLL_MS),
                max_records=s.max_poll_records,
            )
        else:
            self._fetched = await consumer.getmany(
                timeout_ms=self._delivery.wait_ms(POLL_MS), max_records=s.max_poll_records
            )
        check_fetcher(consumer)
        self._pace.saw(bool(self._fetched))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.max_batch_wait_ms / 1000
        while self._fetched:
            count = sum(map(len, self._fetched.values()))
            left_ms = int((deadline - loop.time()) * 1000)
            if count >= s.max_batch_rows or left_ms <= 0:
                break
            more = await consumer.getmany(timeout_ms=left_ms, max_records=s.max_batch_rows - count)
            for tp, msgs in more.items():
                self._fetched.setdefault(tp, []).extend(msgs)
        records, self._fetched = self._fetched, {}
        return records

    async def _handle(self, records: Fetched) -> None:
        """Run a fetch, stage by stage. A rebalance waits for the chunk in hand only; the rest
        of the fetch is dropped and read again from the commit by the partitions' next
        owners (as is a fetch a rebalance overtook: `run`)."""
        assert self._consumer is not None
        self._idle.clear()
        try:
            assigned = self._consumer.assignment()
            by_stage: dict[str, list[ConsumerRecord]] = defaultdict(list)
            for tp, msgs in records.items():
                if tp in assigned and tp.topic not in self._held:
                    by_stage[tp.topic] += msgs
            for topic, msgs in by_stage.items():
                if not await self._run_stage(self._stages[topic], msgs):
                    return
        finally:
            self._idle.set()

    async def _run_stage(self, stage: Stage, records: list[ConsumerRecord]) -> bool:
        """Run `records` through `stage` chunk by chunk: each chunk is computed, its failed
        messages tried again, its outputs sent and its offsets marked finished. False if a
        rebalance cut it short."""
        assert self._delivery is not None and self._rebalances is not None
        topic = stage.source
        incoming = await self._placement.call(topic, stage.receive, records, is_chunk=False)
        if self._marks is not None:
            self._marks.mark(incoming)
        done = 0
        while done < len(incoming):
            if self._rebalances.revoking:
                return False
            if topic in self._held:  # draining began: the input is left to others
                return True
            await self._placement.let_clients_send(topic, queued=len(incoming) - done)
            chunk = stage.chunk(incoming, done)
            await self._placement.call(topic, stage.run, chunk)
            await self._retry(stage, chunk)
            await self._send(chunk, stage.outgoing(chunk, self._counters, self._metrics))
            await self._delivery.commit_if_due(idle=False)  # a long fetch commits as it goes
            done += len(chunk)
        return True

    async def _retry(self, stage: Stage, chunk: list[Incoming]) -> None:
        """Try each failed message of `chunk` again after a pause (n times
        `retry_backoff_ms` before the n-th retry), unless its failure is deterministic,
        up to `max_attempts` tries in all. The loop sleeps, so heartbeats and sends go on."""
        s = self._settings
        for item in chunk:
            while item.work.retryable and item.work.attempts < s.max_attempts:
                self._counters.retried += 1
                if self._metrics is not None:
                    self._metrics.retried(stage.last_step)
                await asyncio.sleep(s.retry_backoff_ms * item.work.attempts / 1000)
                await self._placement.call(stage.source, stage.run_one, item, is_chunk=False)

    async def _send(self, chunk: list[Incoming], outgoing: list[list[Outgoing]]) -> None:
        """Send what each message of `chunk` produced, then mark the chunk's offsets finished."""
        assert self._delivery is not None
        for sent in outgoing:
            for o in sent:
                partition = None
                if o.partition is not None:
                    partition = o.partition % await self._partition_count(o.topic)
                try:
                    await self._delivery.send(
                        o.topic, o.value, key=o.key, partition=partition, headers=o.headers
                    )
                except MessageSizeTooLargeError as exc:  # sinks keep results under the limit;
                    # a dead-letter copy of an input this big is dropped rather than block its
                    # partition
                    log.error(
                        "not sending a %d-byte record to %s: %s", len(o.value or b""), o.topic, exc
                    )
        self._delivery.done(next_offsets(item.record for item in chunk))

    async def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            assert self._producer is not None
            count = self._partitions[topic] = len(await self._producer.partitions_for(topic))
        return count

    async def _hand_over(self, partitions: set[TopicPartition]) -> None:
        """Leave `partitions` to their next reader, everything committed (at least once: and
        release their claims)."""
        if self._marks is not None:
            assert self._consumer is not None
            await self._marks.release(self._consumer, partitions)

    # -- rebalances (called by streams.rebalance) ----------------------------------
    def _drop_fetched(self) -> None:
        self._fetched = {}

    async def _finish_before(self, revoked: set[TopicPartition]) -> None:
        await self.flush()
        await self._hand_over(revoked)
