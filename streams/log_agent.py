"""The log agent: every pipeline's answers and challengers' rows, written into the log store.

Answers (result rows and error replies) are read off the pipeline's result
topic, so each crosses the broker once; the log topic carries only shadow
challengers' rows. It runs in the server, subscribed by pattern to every
result and log topic, and commits offsets only after rows are on disk (at
least once; the store deduplicates on request id and row). Its consumer group
is its store's (LogStore.identity): servers writing one store share the topics'
partitions; another stack on the same broker logs every answer in its own.
`sync()` gives read-your-writes: a query waits until what those topics held
when it was asked for is in the store. A JSON request's answers are JSON
(engine.answers): read back with the result columns' own types, they give the
rows an Arrow answer would, as far as JSON can say them.

A request that failed (an error record: `weir-error` header, value holding the
request's `in.*` columns or nothing) is logged too, one row per input row (one
row if its input was unreadable), with the error in `metadata.error` and
`anomaly.count` 1, so `logs(valid=False)` finds it.

Records with the `weir-shadow` header are a shadow challenger's rows (or its
failure); they go to the pipeline's shadow store (streams.shadow_logs). The
copies of them that the result topic carries for callers who asked for
challengers' answers are skipped.

Each pipeline's rows are kept as its log policy says (streams.log_writer; read
from the registry when its topics are assigned and at each write); while the
policy cannot be read (Redis away), the last one read serves (else the default
one, which bounds rows too), so logging goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from engine.content_types import ARROW_STREAM
from streams.admin import end_offsets, probe_consumer, records_after
from streams.aiokafka_internals import (
    check_fetcher,
    refresh_metadata,
    stop_consumer,
    topic_partitions,
)
from streams.clients import FETCHER_TIMEOUT_MS, FetchPace, connection_options
from streams.errors import FetcherDied
from streams.log_buffer import LogBuffer
from streams.log_rows import error_rows, json_result_rows, result_rows
from streams.log_writer import LogWriter, Policies
from streams.logstore import LogStore
from streams.messages import Envelope
from streams.settings import WorkerSettings
from streams.shadow_logs import shadow_pipeline
from streams.topics import TopicMap, TopicRole
from streams.trace import traceparent_of

log = logging.getLogger(__name__)

LOGGED: tuple[TopicRole, ...] = ("output", "logs")
"""The topics the log store is written from."""
RESTART_S = 1.0
"""How long the log agent waits before a new consumer after an unexpected failure."""
POLL_IDLE_MS = 1000
"""How long a poll waits while no rows are gathered: records end it as soon as they come;
each timeout only wakes an idle server (~0.25 ms of CPU a wake, quiet_uvicorn.py)."""
POLL_BUSY_MS = 20
"""How long a fetch waits while rows are gathered: how soon a sync() is served."""
METADATA_MAX_AGE_MS = 30_000
"""How late the agent finds a new pipeline's topics made elsewhere (another server on the
broker). This server's deployer tells it of those it makes (`look_for_new_topics`), and a
query of a topic it does not know yet asks at once (`sync`); each refresh is a request
the broker answers with every topic's metadata (it was once a second)."""
LEAST_FETCH_WAITS_MS = {"busy_fetch_wait_ms": 50, "fetch_wait_ms": 50, "idle_fetch_wait_ms": 500}
"""The log agent's shortest fetch waits (streams.clients.FetchPace paces it like a worker):
rows are written once a second, and none waits for them but `sync()`. On Tansu, which
answers a fetch only when its wait ends, each idle fetch cost the broker ~1.8 ms of CPU."""


def paced(settings: WorkerSettings) -> WorkerSettings:
    """`settings` with the log agent's fetch waits: none shorter than LEAST_FETCH_WAITS_MS."""
    return settings.model_copy(
        update={
            name: max(getattr(settings, name), least)
            for name, least in LEAST_FETCH_WAITS_MS.items()
        }
    )


class LogAgent:
    """Consumes every pipeline's result and log topics into a LogStore.

    Rows are gathered in memory (streams.log_buffer) and written (then committed) when
    `FLUSH_ROWS` (or `FLUSH_BYTES` of result messages) have gathered, `FLUSH_EVERY_S`
    after the first of them, before a rebalance and whenever `sync()` asks: one bigger
    Parquet file costs far less than one per fetch (measured: writing was the
    server's largest cost under load).
    """

    def __init__(
        self,
        settings: WorkerSettings,
        topics: TopicMap,
        store: LogStore,
        *,
        policies: Policies | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        store_id, self._since_ms = store.identity()
        self.group_id = log_agent_group(store_id)
        self.writer = LogWriter(store, policies)
        self._consumer: AIOKafkaConsumer | None = None
        self._probe: AIOKafkaConsumer | None = None  # no group: for sync()
        self._ends: AIOKafkaConsumer | None = None  # no group, reads uncommitted: for sync()
        self._probe_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._done: dict[TopicPartition, int] = {}
        self._buffer = LogBuffer()
        self._lock = asyncio.Lock()  # the buffer: taken in, or flushed, by one at a time
        self._syncs = 0  # sync() calls waiting for a flush
        self._paced = paced(settings)
        self._pace: FetchPace | None = None

    async def start(self) -> None:
        self._consumer = await self._joined_consumer()
        self._probe = probe_consumer(self.settings)
        self._ends = probe_consumer(self.settings, uncommitted=True)
        await self._probe.start()
        await self._ends.start()
        self._task = asyncio.create_task(self._run(), name="log-agent")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await stop_consumer(self._consumer)
        for probe in (self._probe, self._ends):
            if probe:
                await probe.stop()

    async def _joined_consumer(self) -> AIOKafkaConsumer:
        """A consumer in the log agent's group, subscribed to every logged topic."""
        s = self.settings
        consumer = AIOKafkaConsumer(
            **connection_options(s),
            group_id=self.group_id,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._paced.fetch_wait_ms,
            max_poll_records=5000,
            max_partition_fetch_bytes=s.max_partition_fetch_bytes,
            session_timeout_ms=int(s.session_timeout_s * 1000),
            rebalance_timeout_ms=int(s.rebalance_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            consumer_timeout_ms=FETCHER_TIMEOUT_MS,
        )
        await consumer.start()
        consumer.subscribe(
            pattern=self.topics.pattern(*LOGGED),
            listener=_FlushFirst(self._flush_gathered, self._learn_policies),
        )
        self._pace = FetchPace(consumer, self._paced)
        return consumer

    async def _run(self) -> None:
        while True:
            try:
                await self._consume()
            except FetcherDied as exc:
                log.warning(
                    "%s; the log agent reads again from its last commit with a new consumer", exc
                )
            except Exception:
                log.exception(
                    "the log agent failed; it reads again from its last commit with a "
                    "new consumer in %.0f s",
                    RESTART_S,
                )
                await asyncio.sleep(RESTART_S)
            await self._replace_consumer()

    async def _replace_consumer(self) -> None:
        """Stop the consumer and start another. What was gathered and not written yet is
        dropped: it was not committed, so the new consumer reads it again."""
        async with self._lock:
            self._buffer = LogBuffer()
            if self._consumer is not None:
                await stop_consumer(self._consumer)
            while True:
                try:
                    self._consumer = await self._joined_consumer()
                    return
                except KafkaError as exc:
                    log.warning(
                        "the log agent cannot start a Kafka consumer (%s); trying again in %.0f s",
                        exc,
                        RESTART_S,
                    )
                    await asyncio.sleep(RESTART_S)

    async def _consume(self) -> None:
        assert self._consumer is not None
        while True:
            records = await self._consumer.getmany(
                timeout_ms=POLL_BUSY_MS if self._buffer.next else POLL_IDLE_MS
            )
            check_fetcher(self._consumer)
            assert self._pace is not None
            self._pace.saw(bool(records), busy=bool(records) or self._syncs > 0)
            async with self._lock:
                if records:
                    await asyncio.to_thread(self._take, records)
                if self._buffer.due(self._syncs > 0):
                    await self._flush()

    async def _flush_gathered(self) -> None:
        async with self._lock:
            await self._flush()

    async def _flush(self) -> None:
        """Write what is gathered, commit it, and note how far each partition is stored.

        A failed write (e.g. a full disk) drops the gathered rows and reads them
        again, after a pause.
        """
        assert self._consumer is not None
        buffer, self._buffer = self._buffer, LogBuffer()
        if not buffer.rows and not buffer.next:
            return
        try:
            await asyncio.to_thread(self._write, buffer)
        except Exception:
            log.exception("could not write log rows; reading them again")
            for tp, offset in buffer.first.items():
                self._consumer.seek(tp, offset)
            await asyncio.sleep(1.0)
            return
        self._done.update(buffer.next)
        try:
            await self._consumer.commit(buffer.next)
        except KafkaError as exc:  # stored already: reading them again only repeats (deduplicated)
            log.warning("could not commit the log agent's offsets: %s", exc)

    def _take(self, records: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Gather records by pipeline: error replies as log rows, results as they came (made
        log rows in bulk when written); on a thread."""
        for tp, msgs in records.items():
            role, names = self._logged(tp.topic)
            self._buffer.read(tp, msgs)
            if names is None:
                continue
            for msg in msgs:
                if msg.timestamp < self._since_ms:
                    continue  # answered before this store existed: another store's row
                env = Envelope.of(msg)
                if role == "output" and env.shadow is not None:
                    continue  # a challenger's answer for the caller: logged from the log topic
                workspace, pipeline = names["workspace"], pipeline_of(names, env)
                if env.error is not None:
                    self._buffer.add(workspace, pipeline, error_rows(env, msg.value, msg.timestamp))
                elif msg.value and env.content_type != ARROW_STREAM:  # a JSON request's
                    rows = json_result_rows(env, msg.value)
                    if rows is not None:
                        self._buffer.add(workspace, pipeline, rows)
                elif msg.value:
                    self._buffer.add_result(
                        workspace,
                        pipeline,
                        msg.value,
                        env.requests or env.request_id,
                        traceparent_of(env.extra),
                    )

    def _write(self, buffer: LogBuffer) -> None:
        for (workspace, pipeline), results in buffer.results.items():
            buffer.batches[(workspace, pipeline)] += result_rows(results)
        self.writer.write(buffer.batches)

    def _learn_policies(self, partitions: set[TopicPartition]) -> None:
        """Read the log policies of the pipelines `partitions` hold rows of (new pipelines'
        topics are assigned soon after their deploy), so that each is known should the
        registry be away when their first rows are written; on a thread."""
        named = (self._logged(tp.topic)[1] for tp in partitions)
        self.writer.learn((n["workspace"], n["pipeline"]) for n in named if n)

    def _logged(self, topic: str) -> tuple[TopicRole | None, dict[str, str] | None]:
        """Which logged role `topic` has, and its placeholders (None, None if neither)."""
        for role in LOGGED:
            names = self.topics.parse(role, topic)
            if names is not None:
                return role, names
        return None, None

    async def sync(self, workspace: str, pipeline: str, timeout_s: float = 10.0) -> bool:
        """Wait until everything on the pipeline's result and log topics now is in the store.

        Answers of a transaction still open count (the HTTP gateway reads answers before
        their commit, so its caller may have one already): the wait lasts until they are
        committed and stored, or their transaction aborts. Returns False if that did not
        happen within `timeout_s` (the caller then answers with what the store has).
        """
        assert self._consumer is not None
        topics = (
            self.topics.output(workspace, pipeline).name,
            self.topics.logs(workspace, pipeline).name,
        )
        tps = [TopicPartition(topic, p) for topic in topics for p in await self._partitions(topic)]
        if not tps:
            return True  # no such topics: nothing was ever logged
        assert self._probe is not None and self._ends is not None
        async with self._probe_lock:
            try:  # answers still in a transaction count: the HTTP gateway may have seen them
                ends = await end_offsets(self._ends, tps, timeout_s)
            except TimeoutError:
                return False
        pending = {tp: end for tp, end in ends.items() if end > 0}
        deadline = asyncio.get_running_loop().time() + timeout_s
        looked: dict[TopicPartition, int] = {}  # how far past `done` was read for records
        self._syncs += 1  # the gathered rows are written at once
        try:
            while pending:
                for tp, end in list(pending.items()):
                    # Partitions this agent has not read since it started (or that
                    # another server's agent owns) count as done up to their commit.
                    done = self._done.get(tp, 0)
                    if done < end:
                        done = max(done, await self._consumer.committed(tp) or 0)
                    if done < end and looked.get(tp) != done:
                        looked[tp] = done  # Apache Kafka: past it may be markers or aborted
                        # records only, which the agent skips without committing past them
                        async with self._probe_lock:
                            if not await records_after(self._probe, tp, done, end):
                                done = end
                    if done >= end:
                        del pending[tp]
                if pending:
                    if asyncio.get_running_loop().time() > deadline:
                        return False
                    await asyncio.sleep(0.01)
            return True
        finally:
            self._syncs -= 1

    def look_for_new_topics(self) -> None:
        """Ask the broker for its topics now rather than within METADATA_MAX_AGE_MS, so that a
        pipeline's topics made since are read from (call after making them)."""
        if self._consumer is not None:
            refresh_metadata(self._consumer)

    async def _partitions(self, topic: str) -> set[int]:
        """The partitions of `topic` as the agent's consumer knows them, else as the broker
        says now (and the consumer is told to look); none if there is no such topic. (A
        query right after a new pipeline's first answer came before the consumer knew its
        topics, found no partitions to wait for, and answered from a store that did not
        have the row yet.)"""
        assert self._consumer is not None and self._ends is not None
        known = self._consumer.partitions_for_topic(topic)
        if known:
            return set(known)
        async with self._probe_lock:
            if topic not in await self._ends.topics():
                return set()
            self.look_for_new_topics()
            return {tp.partition for tp in await topic_partitions(self._ends, topic)}


class _FlushFirst(ConsumerRebalanceListener):  # type: ignore[misc]
    """Write and commit what is gathered before partitions move to another server; learn the
    log policies of the partitions assigned."""

    def __init__(
        self,
        flush: Callable[[], Awaitable[None]],
        learn_policies: Callable[[set[TopicPartition]], None],
    ) -> None:
        self._flush = flush
        self._learn_policies = learn_policies

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._flush()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await asyncio.to_thread(self._learn_policies, assigned)


def log_agent_group(store_id: str) -> str:
    """The consumer group of the log agents writing the store `store_id` (LogStore.identity)."""
    return f"weir.log-agent.{store_id}"


def pipeline_of(names: dict[str, str], env: Envelope) -> str:
    """The log store pipeline a record's rows go to: a challenger's are kept apart."""
    return (
        names["pipeline"] if env.shadow is None else shadow_pipeline(names["pipeline"], env.shadow)
    )
