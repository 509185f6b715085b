"""The inference gateway: one service layer under every HTTP way in.

`Gateway.infer` produces a request onto the pipeline's input topic and waits
for the answer on its result topic, matched by request id (strays, repeats and
other callers' answers are ignored). A split answers a request in parts (one
per arm that got rows), so the answer is complete when every row index
(`metadata.row`) has come back; the rows are returned in input order. For a
shadow-deployed pipeline the request asks for the challengers' answers too,
and waits for them, after the champion's, for at most `Settings.shadow_wait_s`;
they come back as `out_<challenger>.<field>` columns (`out_<challenger>.error`
where a challenger failed). Both `POST /pipelines/<name>` and the OIP v2 route
call it. At most `Settings.max_in_flight` requests wait at once; one more is
refused at once with `Overloaded` (HTTP 503 with Retry-After), so a flood
costs no memory.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from control.errors import (
    InferenceError,
    InferenceTimeoutError,
    NotDeployedError,
    Overloaded,
    PayloadTooLarge,
)
from control.registry import Registry
from control.settings import Settings
from engine import codecs
from engine.definition import ShadowStep
from engine.errors import CodecError
from engine.pipeline import META_ROW
from engine.steps import concat_in_order
from streams.clients import FetchPace, connection_options, topic_partitions
from streams.messages import Envelope
from streams.settings import RECORD_OVERHEAD_BYTES, WorkerSettings
from streams.topics import TopicMap

log = logging.getLogger(__name__)


@dataclass
class _Parts:
    """The pieces of one answer (the champion's, or one challenger's), deduplicated by row."""

    rows: int
    batches: list[pa.RecordBatch] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    error: Envelope | None = None
    complete: bool = False

    def add(self, env: Envelope, value: bytes) -> None:
        if self.complete:
            return
        if env.error is not None:
            self.error, self.complete = env, True
            return
        try:
            batch = codecs.decode(value, codecs.ARROW_STREAM)
        except CodecError as exc:
            log.error("unreadable reply to request %s: %s", env.request_id, exc)
            return
        index = (batch.column(META_ROW).to_pylist() if META_ROW in batch.schema.names
                 else list(range(batch.num_rows)))
        if index and self.seen.issuperset(index):
            return  # a repeat (a record processed again after a crash)
        self.batches.append(batch)
        self.seen.update(index)
        self.complete = len(self.seen) >= self.rows

    def table(self) -> pa.RecordBatch:
        """The rows in input order."""
        order = [b.column(META_ROW).to_numpy(zero_copy_only=False)
                 if META_ROW in b.schema.names else np.arange(b.num_rows) for b in self.batches]
        return concat_in_order(self.batches, order, self.rows)


class _Pending:
    """One request waiting for its answer and, where wanted, its challengers' answers."""

    def __init__(self, rows: int, challengers: list[str]) -> None:
        self.answer = _Parts(rows)
        self.shadows = {name: _Parts(rows) for name in challengers}
        self.answered = asyncio.Event()
        self.shadowed = asyncio.Event()
        if not challengers:
            self.shadowed.set()

    def add(self, env: Envelope, value: bytes) -> None:
        parts = self.answer if env.shadow is None else self.shadows.get(env.shadow)
        if parts is None:
            return
        parts.add(env, value)
        if self.answer.complete:
            self.answered.set()
        if all(p.complete for p in self.shadows.values()):
            self.shadowed.set()

    def result(self) -> pa.RecordBatch:
        """The champion's rows, with each challenger's `out_<name>.*` beside them."""
        rows = self.answer.table()
        if not self.shadows or META_ROW not in rows.schema.names:
            return rows
        champion_rows = rows.column(META_ROW).to_pylist()
        for name, parts in self.shadows.items():
            prefix = f"out_{name}."
            if parts.error is not None:
                text = (parts.error.error or {}).get("message", "failed")
                rows = rows.append_column(prefix + "error", pa.array([text] * rows.num_rows))
                continue
            if not parts.batches:
                continue
            shadow = parts.table()
            position = {r: j for j, r in enumerate(shadow.column(META_ROW).to_pylist())}
            take = pa.array([position.get(r) for r in champion_rows], pa.int64())  # null: none
            for column in shadow.schema.names:
                if column.startswith(prefix) and column not in rows.schema.names:
                    rows = rows.append_column(column, shadow.column(column).take(take))
        return rows


class _Replies:
    """Reads one result topic from its end and hands replies to waiting requests."""

    def __init__(self, topic: str, settings: WorkerSettings) -> None:
        self.topic = topic
        self._consumer = AIOKafkaConsumer(
            **connection_options(settings), enable_auto_commit=False,
            fetch_max_wait_ms=settings.fetch_wait_ms, auto_offset_reset="latest",
            max_partition_fetch_bytes=settings.max_partition_fetch_bytes)
        self._waiting: dict[str, _Pending] = {}
        self._task: asyncio.Task[None] | None = None
        self._settings = settings
        self._pace: FetchPace | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._pace = FetchPace(self._consumer, self._settings)
        tps = await topic_partitions(self._consumer, self.topic)
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve positions now, before any request is produced
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run(), name=f"replies-{self.topic}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    def expect(self, request_id: str, rows: int, challengers: list[str]) -> _Pending:
        pending = _Pending(rows, challengers)
        self._waiting[request_id] = pending
        if self._pace is not None:
            self._pace.saw(True)  # the next fetch waits briefly
        return pending

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    async def _run(self) -> None:
        while True:
            records = await self._consumer.getmany(timeout_ms=1000)
            if self._pace is not None:
                self._pace.saw(bool(self._waiting))
            for msgs in records.values():
                for msg in msgs:
                    env = Envelope.parse(msg.headers)
                    pending = self._waiting.get(env.request_id)
                    if pending is not None:
                        pending.add(env, msg.value or b"")


class Gateway:
    """Sends batches through deployed pipelines and returns their result rows."""

    def __init__(self, settings: Settings, registry: Registry, topics: TopicMap) -> None:
        self.settings = settings
        self.registry = registry
        self.topics = topics
        self._worker = settings.worker_settings()
        self._producer: AIOKafkaProducer | None = None
        self._replies: dict[str, _Replies] = {}
        self._replies_lock = asyncio.Lock()
        self._in_flight = asyncio.Semaphore(settings.max_in_flight)
        self._challengers: dict[tuple[str, str, str], list[str]] = {}

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **connection_options(self._worker), linger_ms=0,
            max_request_size=self._worker.max_message_bytes + RECORD_OVERHEAD_BYTES)
        await self._producer.start()

    async def stop(self) -> None:
        for replies in self._replies.values():
            await replies.stop()
        if self._producer:
            await self._producer.stop()

    async def _replies_for(self, topic: str) -> _Replies:
        async with self._replies_lock:
            if topic not in self._replies:
                replies = _Replies(topic, self._worker)
                await replies.start()
                self._replies[topic] = replies
            return self._replies[topic]

    def _shadow_challengers(self, workspace: str, pipeline: str, version: str) -> list[str]:
        """The challengers of every shadow step of a version (cached: versions never change)."""
        key = (workspace, pipeline, version)
        if key not in self._challengers:
            spec = self.registry.get_version(workspace, pipeline, version).definition
            self._challengers[key] = [c.name for step in spec.steps
                                      if isinstance(step, ShadowStep) for c in step.challengers]
        return self._challengers[key]

    async def infer(self, workspace: str, pipeline: str, batch: pa.RecordBatch,
                    timeout_s: float | None = None, *,
                    trace: dict[str, bytes] | None = None) -> pa.RecordBatch:
        """Run `batch` through the deployed pipeline; returns its result rows. `trace`: the
        caller's W3C trace context (streams.trace.trace_headers), carried to the answer and
        its log rows."""
        deployment = self.registry.get_deployment(workspace, pipeline)
        if deployment is None:
            raise NotDeployedError(pipeline)
        if self._in_flight.locked():
            raise Overloaded(f"{self.settings.max_in_flight} requests are in flight; retry shortly")
        assert self._producer is not None, "start() first"
        challengers = self._shadow_challengers(workspace, pipeline, deployment.version)
        loop = asyncio.get_running_loop()
        async with self._in_flight:
            replies = await self._replies_for(self.topics.output(workspace, pipeline).name)
            request_id = uuid.uuid4().hex
            pending = replies.expect(request_id, batch.num_rows, challengers)
            env = Envelope(request_id=request_id, content_type=codecs.ARROW_STREAM,
                           reply_shadows=bool(challengers), extra=trace or {})
            timeout = timeout_s or self.settings.request_timeout_s
            deadline = loop.time() + timeout
            value = codecs.encode(batch, codecs.ARROW_STREAM)
            _check_size(value, self._worker.max_message_bytes)
            try:
                await self._producer.send_and_wait(
                    self.topics.input(workspace, pipeline).name, value, headers=env.headers())
                await asyncio.wait_for(pending.answered.wait(), timeout)
                if pending.answer.error is None:
                    wait = min(self.settings.shadow_wait_s, max(deadline - loop.time(), 0))
                    await asyncio.wait_for(pending.shadowed.wait(), wait)
            except TimeoutError:
                if not pending.answered.is_set():
                    raise InferenceTimeoutError(
                        f"pipeline {pipeline!r} did not answer within {timeout:.0f}s; check "
                        "pipeline.status() and the worker logs, or raise the timeout") from None
                log.info("request %s: challengers did not all answer in time", request_id)
            finally:
                replies.forget(request_id)
        failed = pending.answer.error
        if failed is not None:
            error = failed.error or {}
            raise InferenceError(
                f"pipeline {pipeline!r} failed in step {error.get('step')!r}: "
                f"{error.get('message')}")
        return pending.result()


def _check_size(value: bytes, limit: int) -> None:
    """Refuse a request whose record the broker would refuse (or weir's workers could not
    answer): what was wrong and which setting to change."""
    if len(value) > limit:
        raise PayloadTooLarge(
            f"the request is {len(value)} bytes as a Kafka record, over WEIR_MAX_MESSAGE_BYTES "
            f"({limit}); send fewer rows per request, or raise WEIR_MAX_MESSAGE_BYTES and the "
            "broker's message.max.bytes together")
