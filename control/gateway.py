"""The inference gateway: one service layer under every HTTP way in.

`Gateway.infer` produces a request onto the pipeline's input topic and waits
for the answer on its result topic, matched by request id (strays, repeats and
other callers' answers are ignored). Both `POST /pipelines/<name>` and the OIP
v2 route call it. At most `Settings.max_in_flight` requests wait at once; one
more is refused at once with `Overloaded` (HTTP 503 with Retry-After), so a
flood costs no memory.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pyarrow as pa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from control.errors import InferenceError, InferenceTimeoutError, NotDeployedError, Overloaded
from control.registry import Registry
from control.settings import Settings
from engine import codecs
from streams.messages import Envelope
from streams.settings import WorkerSettings
from streams.topics import TopicMap

log = logging.getLogger(__name__)


class _Replies:
    """Reads one result topic from its end and resolves waiting requests."""

    def __init__(self, topic: str, settings: WorkerSettings) -> None:
        self.topic = topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
            fetch_max_wait_ms=settings.fetch_wait_ms, auto_offset_reset="latest",
            max_partition_fetch_bytes=settings.max_partition_fetch_bytes)
        self._waiting: dict[str, asyncio.Future[tuple[Envelope, bytes]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
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

    def expect(self, request_id: str) -> asyncio.Future[tuple[Envelope, bytes]]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    async def _run(self) -> None:
        while True:
            records = await self._consumer.getmany(timeout_ms=1000)
            for msgs in records.values():
                for msg in msgs:
                    env = Envelope.parse(msg.headers)
                    future = self._waiting.pop(env.request_id, None)
                    if future is not None and not future.done():
                        future.set_result((env, msg.value or b""))


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

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self._worker.kafka_bootstrap,
                                          linger_ms=0, max_request_size=self.settings.max_payload_bytes + 65536)
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

    async def infer(self, workspace: str, pipeline: str, batch: pa.RecordBatch,
                    timeout_s: float | None = None) -> pa.RecordBatch:
        """Run `batch` through the deployed pipeline; returns its result rows."""
        if self.registry.get_deployment(workspace, pipeline) is None:
            raise NotDeployedError(pipeline)
        if self._in_flight.locked():
            raise Overloaded(f"{self.settings.max_in_flight} requests are in flight; retry shortly")
        assert self._producer is not None, "start() first"
        async with self._in_flight:
            replies = await self._replies_for(self.topics.output(workspace, pipeline).name)
            request_id = uuid.uuid4().hex
            future = replies.expect(request_id)
            env = Envelope(request_id=request_id, content_type=codecs.ARROW_STREAM)
            try:
                await self._producer.send_and_wait(
                    self.topics.input(workspace, pipeline).name,
                    codecs.encode(batch, codecs.ARROW_STREAM), headers=env.headers())
                timeout = timeout_s or self.settings.request_timeout_s
                reply, value = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise InferenceTimeoutError(
                    f"pipeline {pipeline!r} did not answer within {timeout:.0f}s; check "
                    "pipeline.status() and the worker logs, or raise the timeout") from None
            finally:
                replies.forget(request_id)
        if reply.error is not None:
            raise InferenceError(
                f"pipeline {pipeline!r} failed in step {reply.error.get('step')!r}: "
                f"{reply.error.get('message')}")
        return codecs.decode(value, codecs.ARROW_STREAM)
