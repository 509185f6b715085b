"""The step agent: decode, run one step of the pipeline on a micro-batch, encode, forward.

Step 0 reads the pipeline's input topic (Arrow or pandas-records JSON), stamps
the request id and pipeline version, and starts the carried input; the last
step turns messages into result rows and sends them to the result topic and
the log topic. Small messages that arrive together are merged (up to
`max_batch_rows` rows, waiting at most `max_batch_wait_ms`), run through the
step at once and split back by row counts, so every request keeps its own
headers and reply; larger messages run as they come.

A message whose step fails is tried again (up to `max_attempts` in all) unless
the failure is deterministic (malformed or misshaped input), then becomes an
error reply on the result topic, an error row on the log topic and a
dead-letter record; the agent moves on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import faust
import pyarrow as pa

from engine import codecs
from engine.errors import CodecError, InputMismatch
from engine.pipeline import META_ELAPSED, TIME, CompiledPipeline
from engine.steps import IN_PREFIX
from streams.messages import FAILED_AT, SOURCE, Envelope
from streams.settings import WorkerSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

DETERMINISTIC: tuple[type[Exception], ...] = (CodecError, InputMismatch)
"""Failures that trying again cannot fix: such a message is dead-lettered at once."""


@dataclass
class StepCounters:
    processed: int = 0
    failed: int = 0
    retried: int = 0


@dataclass
class StepTopics:
    """Where one step reads from and writes to."""

    source: faust.TopicT
    next: faust.TopicT | None
    output: faust.TopicT
    logs: faust.TopicT
    dead_letter: faust.TopicT


# -- micro-batching: pure functions ---------------------------------------------------
def plan_micro_batches(messages: Sequence[tuple[Hashable, int]], max_rows: int) -> list[list[int]]:
    """Group messages into micro-batches; returns lists of message indexes.

    `messages` holds each message's (schema key, row count) in arrival order.
    A message of `max_rows` rows or more (or of none) runs alone; smaller ones
    are merged, in order, with others of the same schema while the total stays
    within `max_rows`.
    """
    groups: list[list[int]] = []
    open_groups: dict[Hashable, tuple[list[int], list[int]]] = {}  # key -> (members, [rows])
    for index, (key, rows) in enumerate(messages):
        if rows >= max_rows or rows == 0:
            groups.append([index])
            continue
        current = open_groups.get(key)
        if current is None or current[1][0] + rows > max_rows:
            current = ([], [0])
            groups.append(current[0])
            open_groups[key] = current
        current[0].append(index)
        current[1][0] += rows
    return groups


def merge(batches: Sequence[pa.RecordBatch]) -> pa.RecordBatch:
    """One record batch holding the rows of `batches` (same schema) in order."""
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches([b.replace_schema_metadata(None) for b in batches])
    return table.combine_chunks().to_batches()[0]


def split(batch: pa.RecordBatch, rows: Sequence[int]) -> list[pa.RecordBatch]:
    """`batch` cut back into consecutive pieces of `rows` rows (zero-copy slices)."""
    if sum(rows) != batch.num_rows:
        raise ValueError(f"cannot split {batch.num_rows} rows into pieces of {list(rows)}")
    pieces, offset = [], 0
    for n in rows:
        pieces.append(batch.slice(offset, n))
        offset += n
    return pieces


def _schema_key(batch: pa.RecordBatch) -> Hashable:
    return tuple((f.name, str(f.type)) for f in batch.schema)


# -- a step's compute, without Kafka ---------------------------------------------------
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
    """What step `index` does to messages: decode, run (merged when small), split back.

    Example:
        compute = StepCompute(pipeline, 0, max_batch_rows=256)
        works = [Work(compute.decode(value, content_type), started_ns) for value in values]
        compute.run(works)   # each work now has .result or .error
    """

    pipeline: CompiledPipeline
    index: int
    max_batch_rows: int = 256
    first: bool = field(init=False)
    last: bool = field(init=False)

    def __post_init__(self) -> None:
        self.first = self.index == 0
        self.last = self.index == len(self.pipeline.steps) - 1

    def decode(self, value: bytes | None, content_type: str) -> pa.RecordBatch:
        """The step's input message from a record value (step 0 also starts the carried input)."""
        if value is None:
            raise CodecError("the record has no value: send one Arrow record batch or JSON rows")
        if self.first:
            batch = codecs.decode(value, codecs.normalize_content_type(content_type))
            return self.pipeline.start(batch)
        return codecs.decode(value, codecs.ARROW_STREAM)

    def run(self, works: Sequence[Work]) -> None:
        """Give each decoded work a result or an error; small messages run merged.

        If a merged batch fails, its messages run one by one, so one bad
        message does not fail the others.
        """
        ready = [w for w in works if w.batch is not None and w.error is None]
        plan = plan_micro_batches(
            [(_schema_key(w.batch), w.batch.num_rows) for w in ready if w.batch is not None],
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
        except Exception as exc:  # noqa: BLE001 - a failing message must not stop the stream
            work.result, work.error = None, exc

    def _run_merged(self, members: list[Work]) -> bool:
        batches = [w.batch for w in members if w.batch is not None]
        try:
            results = self._compute(merge(batches), [w.started_ns for w in members],
                                    [b.num_rows for b in batches])
        except Exception as exc:  # noqa: BLE001 - fall back to one message at a time
            log.debug("micro-batch of %d messages failed (%s); running them one by one",
                      len(members), exc)
            return False
        for work, result in zip(members, results, strict=True):
            work.attempts += 1
            work.result, work.error = result, None
        return True

    def _compute(self, batch: pa.RecordBatch, started_ns: list[int],
                 rows: list[int]) -> list[pa.RecordBatch]:
        out = self.pipeline.run_step(self.index, batch)
        if not self.last:
            return split(out, rows)
        pieces = split(self.pipeline.finish(out, started_ns=min(started_ns)), rows)
        now = time.time_ns()
        return [_stamped(p, s, now, len(pieces) > 1) for p, s in zip(pieces, started_ns)]


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


async def micro_batches(events: AsyncIterable[T], max_events: int,
                        wait_s: float) -> AsyncIterator[list[T]]:
    """`events` in micro-batches: each starts with the next event to come and takes
    what follows it for up to `wait_s`, or until it holds `max_events`.

    Unlike faust's `take_events`, an idle stream costs nothing: nothing wakes up
    until an event arrives. At most `max_events` events wait in the buffer, so a
    slow step holds the stream back rather than growing memory.
    """
    buffer: asyncio.Queue[tuple[T | None, BaseException | None]] = asyncio.Queue(max_events)
    ended = False

    async def feed() -> None:
        try:
            async for event in events:
                await buffer.put((event, None))
            await buffer.put((None, StopAsyncIteration()))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer of the batches
            await buffer.put((None, exc))

    def take(item: tuple[T | None, BaseException | None], batch: list[T]) -> None:
        nonlocal ended
        event, error = item
        if isinstance(error, StopAsyncIteration):
            ended = True
        elif error is not None:
            raise error
        else:
            batch.append(event)  # type: ignore[arg-type]

    feeder = asyncio.create_task(feed(), name="micro-batch-feeder")
    loop = asyncio.get_running_loop()
    try:
        while not ended:
            batch: list[T] = []
            take(await buffer.get(), batch)
            deadline = loop.time() + wait_s
            while len(batch) < max_events and not ended:
                if buffer.empty():
                    await asyncio.sleep(0)  # let the feeder hand on what is already fetched
                if not buffer.empty():
                    take(buffer.get_nowait(), batch)
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    take(await asyncio.wait_for(buffer.get(), remaining), batch)
                except TimeoutError:
                    break
            if batch:
                yield batch
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)


# -- the agent ------------------------------------------------------------------------
def _request_id(message: Any) -> str:
    """A request id for records sent without one, stable across redelivery."""
    return f"{message.topic}-{message.partition}-{message.offset}"


def make_step_agent(
    app: faust.App, pipeline: CompiledPipeline, index: int, topics: StepTopics,
    counters: StepCounters, settings: WorkerSettings,
) -> None:
    """Register the agent that runs step `index` of `pipeline` on `app`."""
    compute = StepCompute(pipeline, index, settings.max_batch_rows)
    step = pipeline.steps[index]
    labels = (step.label, step.last_model.label())

    def receive(event: faust.EventT) -> tuple[Envelope, Work]:
        message = event.message
        env = Envelope.parse(message.headers, default_request_id=_request_id(message))
        content_type = env.content_type
        if compute.first:
            env = env.replace(version=pipeline.version, content_type=codecs.ARROW_STREAM,
                              started_ns=env.started_ns or _timestamp_ns(message))
        try:
            return env, Work(compute.decode(event.value, content_type), env.started_ns)
        except Exception as exc:  # noqa: BLE001 - a bad record must not stop the stream
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
            if work.error is None and await _forward(topics, event, env, work, compute.last):
                counters.processed += 1
            else:
                counters.failed += 1
                await _fail(topics, event, env, labels, work)

    async def agent(stream: faust.StreamT) -> None:
        stream.enable_acks = False  # each event is acked once its micro-batch is sent on
        batches = micro_batches(stream.events(), settings.max_batch_rows,
                                settings.max_batch_wait_ms / 1000)
        async for events in batches:
            await handle(events)
            for event in events:
                await stream.ack(event)

    app.agent(topics.source, name=f"step-{index}")(agent)


async def _forward(topics: StepTopics, event: faust.EventT, env: Envelope, work: Work,
                   last: bool) -> bool:
    """Send a work's result on; False (with work.error set) if it cannot be encoded."""
    assert work.result is not None
    key = event.message.key
    try:
        value = codecs.encode(work.result, codecs.ARROW_STREAM)
    except Exception as exc:  # noqa: BLE001 - reported as this message's failure
        work.error = exc
        return False
    if not last:
        assert topics.next is not None
        await topics.next.send(key=key, value=value, headers=env.headers())
        return True
    await topics.output.send(key=key, value=value, headers=env.headers())
    await topics.logs.send(key=key, value=value, headers=env.headers())
    return True


async def _fail(topics: StepTopics, event: faust.EventT, env: Envelope, labels: tuple[str, str],
                work: Work) -> None:
    """Error reply to the caller, error rows to the log, the record to the dead-letter topic."""
    exc = work.error
    error = {"step": labels[0], "model": labels[1], "type": type(exc).__name__,
             "message": str(exc), "attempts": str(work.attempts)}
    log.warning("request %s failed in step %s after %d attempt(s): %s", env.request_id,
                labels[0], work.attempts, exc)
    failed = env.replace(error=error)
    message = event.message
    await topics.output.send(key=message.key, value=b"", headers=failed.headers())
    await topics.logs.send(key=message.key, value=_carried_input(work), headers=failed.headers())
    await topics.dead_letter.send(
        key=message.key, value=event.value,
        headers=failed.replace(extra={
            **env.extra, FAILED_AT: str(time.time_ns()).encode(),
            SOURCE: json.dumps([message.topic, message.partition, message.offset]).encode(),
        }).headers(),
    )


def _carried_input(work: Work) -> bytes:
    """The failed rows' `in.*` columns for the log (empty when the input was unreadable)."""
    if work.batch is None:
        return b""
    inputs = [n for n in work.batch.schema.names if n.startswith(IN_PREFIX)]
    try:
        return codecs.encode(work.batch.select(inputs), codecs.ARROW_STREAM)
    except Exception:  # noqa: BLE001 - the error row is still logged, without its input
        return b""


def _timestamp_ns(message: Any) -> int:
    """The record's Kafka timestamp (faust gives seconds as a float) in ns."""
    return int(message.timestamp * 1_000_000_000) if message.timestamp else time.time_ns()
