"""The stage agent: decode, compute on a micro-batch, and hand each result to a sink.

Every agent of a worker is a stage (see streams.stages): a model step, a split's
splitter or one of its arms, a shadow's champion or one of its challengers. A
stage reads one topic; its `StepCompute` runs on micro-batches (small messages
that arrive together are merged up to `max_batch_rows` rows, waiting at most
`max_batch_wait_ms`, and split back by row counts, so every request keeps its
own headers and reply; larger messages run as they come); its sink
(streams.agents.sinks) sends each message's result on.

The stage that reads the pipeline's input topic decodes Arrow or
pandas-records JSON, stamps the request id and pipeline version and starts the
carried input; a stage that ends a path turns messages into result (or
challenger log) rows.

A message whose compute fails is tried again (up to `max_attempts` in all)
unless the failure is deterministic (malformed or misshaped input); then its
sink reports the failure and the agent moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import pyarrow as pa

from engine import codecs
from engine.errors import CodecError, InputMismatch
from engine.pipeline import META_ELAPSED, TIME, CompiledPipeline
from streams.agents.batching import (
    merge,
    micro_batches,
    plan_micro_batches,
    schema_key,
    split,
)
from streams.agents.sinks import Sink
from streams.messages import Envelope
from streams.settings import WorkerSettings

log = logging.getLogger(__name__)

DETERMINISTIC: tuple[type[Exception], ...] = (CodecError, InputMismatch)
"""Failures that trying again cannot fix: such a message is dead-lettered at once."""

Transform = Callable[[pa.RecordBatch], pa.RecordBatch]
"""Message in, message out (one row out per row in)."""
Finish = Callable[[pa.RecordBatch, int], pa.RecordBatch]
"""(message, earliest request start in ns) -> the rows that end the path."""


@dataclass
class StepCounters:
    processed: int = 0
    failed: int = 0
    retried: int = 0

    @property
    def finished(self) -> int:
        """Messages done with, either way (what a draining worker's progress is measured by)."""
        return self.processed + self.failed


# -- a stage's compute, without Kafka ---------------------------------------------------
@dataclass
class Work:
    """One message on its way through a step: its input, and then its result or error."""

    batch: pa.RecordBatch | None
    started_ns: int
    result: pa.RecordBatch | None = None
    error: Exception | None = None
    attempts: int = 0

    @property
    def retryable(self) -> bool:
        return self.error is not None and self.batch is not None and not isinstance(
            self.error, DETERMINISTIC)




@dataclass
class StepCompute:
    """What a stage does to messages: decode, run (merged when small), split back.

    Example:
        compute = StepCompute.for_step(pipeline, 0, max_batch_rows=256)
        works = [Work(compute.decode(value, content_type), started_ns) for value in values]
        compute.run(works)   # each work now has .result or .error
    """

    transform: Transform
    finish: Finish | None = None
    """Set where the path ends: turns the transformed message into its final rows."""
    starts: bool = False
    """Reads the pipeline's input topic: decodes what users send and starts the message."""
    max_batch_rows: int = 256

    @classmethod
    def for_step(cls, pipeline: CompiledPipeline, index: int,
                 max_batch_rows: int = 256) -> StepCompute:
        """Step `index` of `pipeline`, run whole."""
        return cls(lambda message: pipeline.run_step(index, message),
                   finish=finisher(pipeline) if index == len(pipeline.steps) - 1 else None,
                   starts=index == 0, max_batch_rows=max_batch_rows)

    def decode(self, value: bytes | None, content_type: str) -> pa.RecordBatch:
        """The stage's input message from a record value (the first stage starts it)."""
        if value is None:
            raise CodecError("the record has no value: send one Arrow record batch or JSON rows")
        if self.starts:
            batch = codecs.decode(value, codecs.normalize_content_type(content_type))
            return CompiledPipeline.start(batch)
        return codecs.decode(value, codecs.ARROW_STREAM)

    def run(self, works: Sequence[Work]) -> None:
        """Give each decoded work a result or an error; small messages run merged.

        If a merged batch fails, its messages run one by one, so one bad
        message does not fail the others.
        """
        ready = [w for w in works if w.batch is not None and w.error is None]
        plan = plan_micro_batches(
            [(schema_key(w.batch), w.batch.num_rows) for w in ready if w.batch is not None],
            self.max_batch_rows)
        for group in plan:
            members = [ready[i] for i in group]
            if len(members) > 1 and self._run_merged(members):
                continue
            for work in members:
                self.run_one(work)

    def run_one(self, work: Work) -> None:
        """Run one work alone (a first try, or a retry)."""
        assert work.batch is not None
        work.attempts += 1
        try:
            work.result = self._compute(work.batch, [work.started_ns], [work.batch.num_rows])[0]
            work.error = None
        except Exception as exc:
            work.result, work.error = None, exc

    def _run_merged(self, members: list[Work]) -> bool:
        batches = [w.batch for w in members if w.batch is not None]
        try:
            results = self._compute(merge(batches), [w.started_ns for w in members],
                                    [b.num_rows for b in batches])
        except Exception as exc:
            log.debug("micro-batch of %d messages failed (%s); running them one by one",
                      len(members), exc)
            return False
        for work, result in zip(members, results, strict=True):
            work.attempts += 1
            work.result, work.error = result, None
        return True

    def _compute(self, batch: pa.RecordBatch, started_ns: list[int],
                 rows: list[int]) -> list[pa.RecordBatch]:
        out = self.transform(batch)
        if self.finish is None:
            return split(out, rows)
        pieces = split(self.finish(out, min(started_ns)), rows)
        now = time.time_ns()
        return [_stamped(p, s, now, len(pieces) > 1) for p, s in zip(pieces, started_ns)]


def finisher(pipeline: CompiledPipeline) -> Finish:
    """The finish of a path that ends in the pipeline's result rows."""
    return lambda message, started_ns: pipeline.finish(message, started_ns=started_ns)


def _stamped(batch: pa.RecordBatch, started_ns: int, now_ns: int,
             merged: bool) -> pa.RecordBatch:
    """Result rows timed by their request, so a repeat after a crash is an identical row.

    `time` becomes the request's start (its input record's timestamp), which a
    reprocessed record keeps, so the log store's (time, request id, row)
    deduplication sees the copies as one; a merged message also gets its own
    elapsed time (finish saw only the earliest start).
    """
    if started_ns > 0:
        batch = _set(batch, TIME, [started_ns // 1_000_000] * batch.num_rows)
    if merged:
        batch = _set(batch, META_ELAPSED, [max(now_ns - started_ns, 0)] * batch.num_rows)
    return batch


def _set(batch: pa.RecordBatch, name: str, values: list[int]) -> pa.RecordBatch:
    index = batch.schema.get_field_index(name)
    if index < 0:
        return batch
    field_ = batch.schema.field(index)
    return batch.set_column(index, field_, pa.array(values, pa.int64()).cast(field_.type))


# -- the agent ------------------------------------------------------------------------
@dataclass
class Stage:
    """One agent of a worker: where it reads, what it computes, where results go."""

    name: str
    source: faust.TopicT
    compute: StepCompute
    sink: Sink
    version: str
    """The pipeline version, stamped on requests where they enter."""


def _request_id(message: Any) -> str:
    """A request id for records sent without one, stable across redelivery."""
    return f"{message.topic}-{message.partition}-{message.offset}"


def make_stage_agent(app: faust.App, stage: Stage, counters: StepCounters,
                     settings: WorkerSettings) -> None:
    """Register the agent that runs `stage` on `app`."""
    compute, sink = stage.compute, stage.sink

    def receive(event: faust.EventT) -> tuple[Envelope, Work]:
        message = event.message
        env = Envelope.parse(message.headers, default_request_id=_request_id(message))
        content_type = env.content_type
        if compute.starts:
            env = env.replace(version=stage.version, content_type=codecs.ARROW_STREAM,
                              started_ns=env.started_ns or _timestamp_ns(message))
        try:
            return env, Work(compute.decode(event.value, content_type), env.started_ns)
        except Exception as exc:
            return env, Work(None, env.started_ns, error=exc, attempts=1)

    async def handle(events: Sequence[faust.EventT]) -> None:
        received = [receive(event) for event in events]
        compute.run([work for _, work in received])
        for _, work in received:
            while work.retryable and work.attempts < settings.max_attempts:
                counters.retried += 1
                await asyncio.sleep(settings.retry_backoff_ms * work.attempts / 1000)
                compute.run_one(work)
        for event, (env, work) in zip(events, received, strict=True):
            if work.error is None and await sink.send(event.message, env, work):
                counters.processed += 1
            else:
                counters.failed += 1
                await sink.fail(event.message, event.value, env, work)

    async def agent(stream: faust.StreamT) -> None:
        stream.enable_acks = False  # each event is acked once its micro-batch is sent on
        batches = micro_batches(stream.events(), settings.max_batch_rows,
                                settings.max_batch_wait_ms / 1000)
        async for events in batches:
            await handle(events)
            for event in events:
                await stream.ack(event)

    app.agent(stage.source, name=stage.name)(agent)


def _timestamp_ns(message: Any) -> int:
    """The record's Kafka timestamp (faust gives seconds as a float) in ns."""
    return int(message.timestamp * 1_000_000_000) if message.timestamp else time.time_ns()
