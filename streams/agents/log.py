"""The log agent: every pipeline's log topic, written into the log store.

It runs in the server, subscribed by pattern to every log topic, and commits
offsets only after rows are on disk (at least once; the store deduplicates on
request id and row). `sync()` gives read-your-writes: a query waits until what
the log topic held when it was asked for is in the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import pyarrow as pa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from engine import codecs
from engine.errors import CodecError
from streams.logstore import LogStore
from streams.messages import Envelope
from streams.settings import WorkerSettings
from streams.topics import TopicMap

log = logging.getLogger(__name__)

REQUEST_ID = "request_id"
ROW = "row"


def with_row_ids(batch: pa.RecordBatch, request_id: str) -> pa.RecordBatch:
    """Add the (request_id, row) columns that identify each log row."""
    n = batch.num_rows
    batch = batch.append_column(REQUEST_ID, pa.array([request_id] * n, pa.string()))
    return batch.append_column(ROW, pa.array(range(n), pa.int32()))


class LogAgent:
    """Consumes `*.logs` topics into a LogStore."""

    def __init__(self, settings: WorkerSettings, topics: TopicMap, store: LogStore,
                 group_id: str = "weir.log-agent") -> None:
        self.settings = settings
        self.topics = topics
        self.store = store
        self.group_id = group_id
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._done: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        s = self.settings
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=max(s.fetch_wait_ms, 50), max_poll_records=5000,
            session_timeout_ms=int(s.session_timeout_s * 1000),
            rebalance_timeout_ms=int(s.rebalance_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            metadata_max_age_ms=1000,  # notice new pipelines' log topics quickly
        )
        await self._consumer.start()
        self._consumer.subscribe(pattern=self.topics.pattern("logs"))
        self._task = asyncio.create_task(self._run(), name="log-agent")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            records = await self._consumer.getmany(timeout_ms=200)
            if records:
                await asyncio.to_thread(self._write, records)
                await self._consumer.commit()
            for tp, msgs in records.items():
                self._done[tp] = msgs[-1].offset + 1

    def _write(self, records: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        by_pipeline: dict[tuple[str, str], list[pa.RecordBatch]] = defaultdict(list)
        for tp, msgs in records.items():
            names = self.topics.parse("logs", tp.topic)
            if names is None:
                continue
            for msg in msgs:
                env = Envelope.parse(msg.headers, default_request_id=f"{tp.topic}-{tp.partition}-{msg.offset}")
                if env.error is not None or not msg.value:
                    continue
                try:
                    batch = codecs.decode(msg.value, codecs.ARROW_STREAM)
                except CodecError as exc:
                    log.error("skipping unreadable log record %s@%s: %s", tp, msg.offset, exc)
                    continue
                by_pipeline[(names["workspace"], names["pipeline"])].append(
                    with_row_ids(batch, env.request_id))
        for (workspace, pipeline), batches in by_pipeline.items():
            table = pa.Table.from_batches(batches) if _same_schema(batches) else pa.concat_tables(
                [pa.Table.from_batches([b]) for b in batches], promote_options="permissive")
            self.store.append(workspace, pipeline, table)

    async def sync(self, workspace: str, pipeline: str, timeout_s: float = 10.0) -> bool:
        """Wait until everything on the pipeline's log topic now is in the store.

        Returns False if that did not happen within `timeout_s` (the caller then
        answers with what the store has).
        """
        assert self._consumer is not None
        topic = self.topics.logs(workspace, pipeline).name
        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            return True  # no such topic: nothing was ever logged
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await self._consumer.end_offsets(tps)
        pending = {tp: end for tp, end in ends.items() if end > 0}
        deadline = asyncio.get_running_loop().time() + timeout_s
        while pending:
            for tp, end in list(pending.items()):
                # Partitions this agent has not read since it started (or that
                # another server's agent owns) count as done up to their commit.
                done = self._done.get(tp, 0)
                if done < end:
                    done = max(done, await self._consumer.committed(tp) or 0)
                if done >= end:
                    del pending[tp]
            if pending:
                if asyncio.get_running_loop().time() > deadline:
                    return False
                await asyncio.sleep(0.01)
        return True


def _same_schema(batches: list[pa.RecordBatch]) -> bool:
    first = batches[0].schema
    return all(b.schema.equals(first) for b in batches[1:])
