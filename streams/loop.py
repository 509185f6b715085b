"""A worker's stages over one consumer group, on plain aiokafka: fetch, compute, send, commit.

One consumer in the worker's group reads every stage's source topic. Each fetch
is split by topic and run by its stages in chunks of about `max_batch_rows`
rows, one at a time: a slow stage's chunks on a compute thread, so the event
loop keeps fetching, sending and heartbeating while its model runs, a quick
stage's on the loop itself (see QUICK_S). User step code never runs
concurrently.
What the sinks return is sent, in order, with one producer, and a chunk's
offsets are committed once all of it is delivered (streams.commits): at least
once, never a skipped record. A record sent to a partition this worker reads
itself (step 0 to step 1) is also run on at once, not only once it comes back
from the broker (streams.handoff).

Before a rebalance takes partitions away, the loop finishes the chunk in hand
and commits, so the next owner starts exactly where this one stopped: a hot
swap or a replica joining repeats nothing. It then releases the partitions'
claims; a new owner that finds one unreleased (its last reader died) marks
what it may repeat (streams.claims).

Why not faust-streaming, which ran these agents before: on the same 2-core
machine and broker, faust spent 2-4x this loop's CPU per message (its consumer
thread hands every fetch across threads, and each record becomes an event with
its own ack bookkeeping), and weir needed four workarounds for it (a hard-coded
fetch wait, offsets forgotten on revoke, acks of records skipped after a
rebalance, a second SIGTERM cutting a drain short).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord

from streams.admin import end_offsets, probe_consumer
from streams.agents.step import Incoming, Stage, StepCounters
from streams.claims import PartitionClaims
from streams.clients import (
    FetchPace,
    check_fetcher,
    consumer_options,
    producer_options,
    stop_consumer,
)
from streams.commits import Offsets, OrderedCommits
from streams.handoff import Handoff
from streams.messages import REDELIVERED, Decoded, Outgoing
from streams.settings import WorkerSettings

log = logging.getLogger(__name__)

POLL_MS = 100
"""How long one getmany waits for records: how soon the loop notices it should stop."""
QUICK_S = 0.1
"""A stage whose chunk took less than this runs its next ones on the event loop itself
(the heavy MLP's 4096-row chunks take ~45 ms):
handing them to the compute thread and back costs more (measured: ~50% more worker CPU
per 256-row message; with the heavy MLP ~30% fewer messages per second, from the
hand-offs, the GIL passing between threads, and sends split into smaller requests
while the loop is free)..."""
SLOW_S = 0.2
"""...until one takes longer than this: then the stage goes back to the compute thread,
and the loop keeps fetching and heartbeating while its model (or its I/O) runs. Wall
time, so it is far above QUICK_S: on a busy 2-core machine, other processes holding
the core stretched 3 ms chunks past a 20 ms bound about once a second, and each time
the stage spent up to a second on the thread."""

FETCH_AHEAD_S = 0.001
"""Before an inline chunk whose stage's last chunk took longer than this, with more messages
waiting, the Kafka clients get a few turns of the event loop (`_let_clients_send`). Without
them, nothing leaves while a fetch runs inline, and each fetch began with the worker idle for
the next one's round trip (heavy MLP, 256-row messages, three runs each: the worker's core
busy 0.92-0.94 of the time -> 0.96-0.97, rows/s 66.6k-68.2k -> 67.6k-74.9k). A lone message
skips them: they put the sends and fetch request before its answer (~0.4 ms at 3 steps)..."""
CLIENT_TURNS = 3
"""...this many: the fetcher wakes, then starts its request, then it is written."""

T = TypeVar("T")
Fetched = dict[TopicPartition, list[ConsumerRecord]]
OnAssigned = Callable[[set[TopicPartition]], Awaitable[None]]


class StageLoop:
    """Runs `stages` (one per source topic) in consumer group `group_id` until told to stop.

    Example:
        loop = StageLoop(stages, settings, group_id="weir.default.p", client_id="p-v1-0",
                         counters=StepCounters())
        await loop.start()
        await loop.run(stop_event)    # returns once stop_event is set and all is committed
        await loop.close()
    """

    def __init__(self, stages: Sequence[Stage], settings: WorkerSettings, *, group_id: str,
                 client_id: str, counters: StepCounters,
                 on_assigned: OnAssigned | None = None,
                 claims: PartitionClaims | None = None) -> None:
        self._stages = {stage.source: stage for stage in stages}
        if len(self._stages) != len(stages):
            raise ValueError("two stages read the same topic")
        self._settings = settings
        self._counters = counters
        self._on_assigned = on_assigned
        self._group_id = group_id
        self._claims = claims
        self._claimant = f"{client_id}.{uuid.uuid4().hex[:12]}"  # this process, not a restart
        # Records below these offsets may have run already: their partition's last reader
        # never released it (streams.claims).
        self._redelivered_below: dict[TopicPartition, int] = {}
        # Set once this assignment's partitions are claimed: aiokafka may fetch them before it
        # calls on_partitions_assigned, and nothing may run unmarked meanwhile.
        self._claimed = asyncio.Event()
        if claims is None:
            self._claimed.set()
        self._consumer_options = consumer_options(settings, group_id, client_id)
        self._producer_options = producer_options(settings, client_id)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._commits: OrderedCommits | None = None
        self._pace: FetchPace | None = None
        self._compute = ThreadPoolExecutor(1, thread_name_prefix="weir-compute")
        self._idle = asyncio.Event()
        self._idle.set()
        self._held: set[str] = set()
        self._fetched: Fetched = {}  # records not handled yet; a rebalance drops them
        self._revoking = False  # a rebalance waits: stop at the end of the chunk in hand
        self._quick: set[str] = set()  # stages that run inline (QUICK_S, SLOW_S)
        self._took: dict[str, float] = {}  # each stage's last chunk, wall time (s)
        self._partitions: dict[str, int] = {}  # partition counts of the topics it sends to
        self._handoff = Handoff()  # records sent to its own stages and run at once
        # A handed record that fails is not tried again at once: it runs again, with all its
        # tries, when read back.
        self._handed_settings = settings.model_copy(update={"max_attempts": 1})

    @property
    def topics(self) -> list[str]:
        """The topics this loop reads."""
        return sorted(self._stages)

    @property
    def in_flight(self) -> bool:
        """True while a fetch is being processed or its outputs are not committed yet."""
        return not self._idle.is_set() or bool(self._commits and self._commits.pending)

    async def start(self) -> None:
        """Connect, and join the group (partitions are assigned in the background)."""
        self._producer = AIOKafkaProducer(**self._producer_options)
        self._consumer = AIOKafkaConsumer(**self._consumer_options)
        self._commits = OrderedCommits(self._consumer.commit,
                                       interval_s=self._settings.commit_interval_ms / 1000)
        await self._producer.start()
        await self._consumer.start()
        self._pace = FetchPace(self._consumer, self._settings)
        self._consumer.subscribe(self.topics, listener=_Rebalance(self))

    async def run(self, stop: asyncio.Event) -> None:
        """Process until `stop` is set, then flush what is in flight.

        :raises DeliveryFailed: a record could not be sent (nothing after it is committed).
        """
        assert self._commits is not None, "start() first"
        committer = asyncio.create_task(self._commits.run(), name="weir-commits")
        try:
            while not stop.is_set():
                if committer.done():
                    committer.result()  # raises why it stopped
                records = await self._fetch()
                if records:
                    await self._handle(records)
            await self.flush()
            assert self._consumer is not None
            await self._hand_over(self._consumer.assignment())
        finally:
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)

    async def flush(self) -> None:
        """Wait until everything processed so far is delivered and committed."""
        await self._idle.wait()
        if self._commits is not None:
            await self._commits.flush()

    def hold(self, topic: str) -> None:
        """Stop reading `topic`, now and after every rebalance (a draining worker's input)."""
        self._held.add(topic)
        if self._consumer is not None:
            self._pause_held(self._consumer.assignment())

    async def close(self) -> None:
        """Leave the group and close the connections."""
        try:
            if self._consumer is not None:
                await stop_consumer(self._consumer)
        finally:
            if self._producer is not None:
                await self._producer.stop()
            self._compute.shutdown(wait=True)

    # -- one fetch ----------------------------------------------------------------
    async def _fetch(self) -> Fetched:
        """The next records; with `max_batch_wait_ms`, also what arrives that long after them.

        While it waits the loop counts as idle, so a rebalance can go ahead; it drops
        what was fetched (the partitions' owners read it again from the commit).
        """
        s, consumer = self._settings, self._consumer
        assert consumer is not None
        self._fetched = await consumer.getmany(timeout_ms=POLL_MS, max_records=s.max_poll_records)
        check_fetcher(consumer)
        if self._pace is not None:
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
        """Run a fetch, stage by stage, once the assignment is claimed (streams.claims). A
        rebalance waits for the chunk in hand only; the rest of the fetch is dropped and read
        again from the commit by the partitions' next owners."""
        assert self._consumer is not None
        self._idle.clear()
        try:
            await self._claimed.wait()
            assigned = self._consumer.assignment()
            by_stage: dict[str, list[ConsumerRecord]] = defaultdict(list)
            for tp, msgs in records.items():
                if tp in assigned and tp.topic not in self._held:
                    by_stage[tp.topic] += msgs
            for topic, msgs in by_stage.items():
                if not await self._run_stage(topic, msgs):
                    return
        finally:
            self._idle.set()

    async def _run_stage(self, topic: str, records: list[ConsumerRecord], *,
                         handed: bool = False, ready: list[Decoded] | None = None) -> bool:
        """Run `records` through the stage reading `topic` chunk by chunk: each chunk's
        outputs are sent, its offsets queued for commit, and what it handed to this
        worker's own stages is run on at once (streams.handoff), from the batches they
        were encoded from when the sink kept them (`ready`). Records read back that ran
        here already are only committed. False if a rebalance cut it short."""
        assert self._commits is not None
        settings = self._handed_settings if handed else self._settings
        for ran, run in self._claimed_runs(records):
            if ran is not None:
                self._commits.add(ran, _next_offsets(run))
                continue
            stage, done = self._stages[topic], 0
            incoming = await self._call(topic, stage.receive, run,
                                        ready if len(run) == len(records) else None,
                                        is_chunk=False)
            if self._redelivered_below:
                self._mark_redelivered(incoming)
            while done < len(incoming):
                if self._revoking:  # what it handed but did not run yet runs once read back
                    return False
                if topic in self._held:  # draining began: the input is left to others
                    return True
                # A handed run's failures count when its record runs again from the topic.
                counters = StepCounters() if handed else self._counters
                await self._let_clients_send(topic, queued=len(incoming) - done)
                chunk, outgoing = await self._call(topic, stage.process, incoming, done,
                                                   counters, settings)
                if handed:
                    self._counters.processed += counters.processed
                done += len(chunk)
                for next_topic, (onward, ready_on) in (await self._send(chunk, outgoing)).items():
                    if not await self._run_stage(next_topic, onward, handed=True, ready=ready_on):
                        return False
        return True

    async def _let_clients_send(self, topic: str, *, queued: int) -> None:
        """Before the next chunk of the stage reading `topic`, with `queued` messages left
        to run: if it runs inline and its last chunk was long, give the Kafka clients'
        tasks the event loop's next few turns (FETCH_AHEAD_S), so the consumer's next fetch
        request and the producer's pending sends leave now and their answers come back
        while the chunk runs. Not for a lone message: that is answered first."""
        if queued > 1 and topic in self._quick and self._took.get(topic, 0.0) > FETCH_AHEAD_S:
            for _ in range(CLIENT_TURNS):
                await asyncio.sleep(0)

    def _claimed_runs(self, records: list[ConsumerRecord]
                      ) -> Iterator[tuple[list[Any] | None, list[ConsumerRecord]]]:
        """`records` in runs, in order: (None, records to run) or (what their early run
        sent, records that ran here already)."""
        if not len(self._handoff):  # nothing handed (one step, or none read back yet)
            yield None, records
            return
        run: list[ConsumerRecord] = []
        ran: list[Any] | None = None
        for record in records:
            claimed = self._handoff.claim(record)
            if (claimed is None) != (ran is None) and run:
                yield ran, run
                run, ran = [], None
            run.append(record)
            if claimed is not None:
                ran = (ran or []) + claimed
        if run:
            yield ran, run

    async def _call(self, topic: str, work: Callable[..., T], *args: Any,
                    is_chunk: bool = True) -> T:
        """`work(*args)` for the stage reading `topic`: inline while its chunks are quick,
        else on the compute thread. Only chunks tell whether it is quick (a fetch's
        decoding grows with the fetch)."""
        started = time.perf_counter()
        if topic in self._quick:
            result = work(*args)
        else:
            result = await asyncio.get_running_loop().run_in_executor(self._compute, work, *args)
        took = time.perf_counter() - started
        if is_chunk:
            self._took[topic] = took
        if is_chunk and took < QUICK_S:
            self._quick.add(topic)
        elif is_chunk and took > SLOW_S:
            self._quick.discard(topic)
        return result

    async def _send(self, chunk: list[Incoming], outgoing: list[list[Outgoing]]
                    ) -> dict[str, tuple[list[ConsumerRecord], list[Decoded] | None]]:
        """Send what each message of `chunk` produced and queue the chunk's offsets for
        commit; return the records handed to this worker's own stages, by topic, with
        their values decoded if the sink kept every one."""
        assert self._commits is not None and self._consumer is not None
        assert self._producer is not None
        deliveries: list[asyncio.Future[Any]] = []
        handed: dict[str, list[ConsumerRecord]] = defaultdict(list)
        ready: dict[str, list[Decoded] | None] = {}
        assigned = self._consumer.assignment()
        for item, sent in zip(chunk, outgoing, strict=True):
            was_handed = item.record.offset < 0
            if was_handed and item.work.error is not None:  # it runs again once read back
                self._handoff.forget(item.record)
                continue
            own: list[asyncio.Future[Any]] = []
            for o in sent:
                partition = None
                if o.partition is not None:
                    partition = o.partition % await self._partition_count(o.topic)
                here = self._read_here(o.topic, partition, assigned)
                headers = self._handoff.mark(o.headers) if here else o.headers
                try:
                    delivery = await self._producer.send(o.topic, o.value, key=o.key,
                                                         partition=partition, headers=headers)
                except MessageSizeTooLargeError as exc:  # sinks keep results under the limit;
                    # a dead-letter copy of an input this big is dropped rather than block its
                    # partition
                    log.error("not sending a %d-byte record to %s: %s", len(o.value or b""),
                              o.topic, exc)
                    continue
                own.append(delivery)
                if here:
                    handed[o.topic].append(self._handoff.hand(here, o.value, headers, delivery))
                    decoded = ready.setdefault(o.topic, [])
                    if decoded is not None and o.decoded is not None:
                        decoded.append(o.decoded())
                    else:  # that stage decodes them all
                        ready[o.topic] = None
            if was_handed:
                self._handoff.ran(item.record, own)
            deliveries += own
        self._commits.add(deliveries, _next_offsets(item.record for item in chunk))
        return {topic: (records, ready[topic]) for topic, records in handed.items()}

    def _read_here(self, topic: str, partition: int | None,
                   assigned: set[TopicPartition]) -> TopicPartition | None:
        """The partition, if a stage of this worker reads it now (a record for it is handed)."""
        if partition is None or topic not in self._stages or topic in self._held:
            return None
        tp = TopicPartition(topic, partition)
        return tp if tp in assigned else None

    async def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            assert self._producer is not None
            count = self._partitions[topic] = len(await self._producer.partitions_for(topic))
        return count

    async def _hand_over(self, partitions: set[TopicPartition]) -> None:
        """Leave `partitions` to their next reader, everything flushed: commit their handed
        records, and release them, but those still holding a record that ran here and cannot
        be committed (its next reader marks what it runs again)."""
        await self._settle_handed(partitions)
        await self._release(partitions - self._handoff.unsettled(partitions))

    async def _settle_handed(self, revoked: set[TopicPartition]) -> None:
        """Commit the handed records of `revoked` partitions that ran here but were not read
        back yet (streams.handoff), so their next owner does not run them again. Call once
        everything is delivered and committed."""
        assert self._consumer is not None
        tps = {tp for tp in revoked if tp.topic in self._stages} if len(self._handoff) else set()
        if not tps:
            return
        committed: dict[TopicPartition, int] = {}
        for tp in tps:
            offset = await self._consumer.committed(tp)
            if offset is None:  # nothing committed yet: its next owner starts at the beginning
                offset = (await self._consumer.beginning_offsets([tp]))[tp]
            committed[tp] = offset
        settled = self._handoff.settle(tps, committed)
        if settled:
            await self._consumer.commit(settled)

    # -- claims (streams.claims) ----------------------------------------------------------
    async def _claim(self, assigned: set[TopicPartition]) -> None:
        """Claim `assigned`; in a partition its last reader never released, the records up
        to its end now are to be marked redelivered."""
        try:
            await self._claim_and_find_ends(assigned)
        finally:
            self._claimed.set()

    async def _claim_and_find_ends(self, assigned: set[TopicPartition]) -> None:
        self._redelivered_below = {}
        if self._claims is None or not assigned or self._consumer is None:
            return
        try:
            left = await asyncio.to_thread(self._claims.claim_partitions, self._group_id,
                                           self._claimant, assigned)
        except Exception:  # unknown whether their last readers left cleanly: assume not
            log.exception("could not claim partitions; marking what they hold redelivered")
            left = set(assigned)
        if not left:
            return
        try:
            ends = await self._end_offsets(left)
        except Exception:
            log.exception("could not read the end offsets of %d partitions whose last reader "
                          "never released them: repeats of their records are not marked",
                          len(left))
            return
        self._redelivered_below = {tp: end for tp, end in ends.items() if end > 0}
        if not self._redelivered_below:
            return
        log.warning("left without a release (a worker died?): the records of %s may repeat "
                    "answers and are marked %s",
                    ", ".join(f"{tp.topic}[{tp.partition}] below offset {end}"
                              for tp, end in sorted(self._redelivered_below.items())),
                    REDELIVERED)

    async def _end_offsets(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Where `partitions` end now, read by a consumer of no group (Tansu's own answer can
        fall short: streams.admin.end_offsets)."""
        probe = probe_consumer(self._settings)
        await probe.start()
        try:
            return await end_offsets(probe, sorted(partitions))
        finally:
            await probe.stop()

    async def _release(self, partitions: set[TopicPartition]) -> None:
        """Release `partitions`, once everything run from them is committed. One whose commit
        is still short of the records to mark stays claimed: its next reader marks them too."""
        if self._claims is None or not partitions:
            return
        assert self._consumer is not None
        try:
            for tp in partitions & self._redelivered_below.keys():
                if (await self._consumer.committed(tp) or 0) >= self._redelivered_below[tp]:
                    del self._redelivered_below[tp]
            await asyncio.to_thread(self._claims.release_partitions, self._group_id,
                                    self._claimant, partitions - self._redelivered_below.keys())
        except Exception:  # their next readers mark what they read first as redelivered
            log.exception("could not release %d partitions", len(partitions))

    def _mark_redelivered(self, incoming: list[Incoming]) -> None:
        for item in incoming:
            record = item.record
            below = self._redelivered_below.get(TopicPartition(record.topic, record.partition))
            if below is not None and 0 <= record.offset < below:
                item.env = item.env.replace(redelivered=True)

    def _pause_held(self, assigned: set[TopicPartition]) -> None:
        held = [tp for tp in assigned if tp.topic in self._held]
        if held and self._consumer is not None:
            self._consumer.pause(*held)


def _next_offsets(records: Iterable[ConsumerRecord]) -> Offsets:
    """The offsets to commit once `records` (in order) are done; handed records (offset -1,
    streams.handoff) are committed when read back."""
    return {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records if r.offset >= 0}


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Finish, commit and release before partitions move; claim them and keep held topics
    paused after."""

    def __init__(self, loop: StageLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._loop._fetched = {}
        self._loop._revoking = True
        # Logged, like the assignment, so a worker's log shows where a rebalance stalled.
        log.info("rebalance: handing over %d partitions", len(revoked))
        try:
            await self._loop.flush()
            await self._loop._hand_over(revoked)
        except Exception:  # run() fails with it; the next owners read these records again
            log.exception("could not commit before the rebalance")
        finally:  # nothing runs until the next assignment is claimed (everything is flushed)
            if self._loop._claims is not None:
                self._loop._claimed.clear()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._loop._revoking = False
        log.info("rebalance: assigned %d partitions", len(assigned))
        await self._loop._claim(assigned)
        self._loop._handoff.keep(assigned)
        self._loop._pause_held(assigned)
        if self._loop._on_assigned is not None:
            await self._loop._on_assigned(assigned)
