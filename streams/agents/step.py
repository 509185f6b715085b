"""The stage: decode, compute on a micro-batch, and hand each result to a sink.

Every agent of a worker is a stage (see streams.stages): a model step, a split's
splitter or one of its arms, a shadow's champion or one of its challengers. A
stage reads one topic; the worker's loop (streams.loop) hands it the records
that arrived together, and its `StepCompute` runs them as micro-batches (small
messages are merged up to `max_batch_rows` rows and split back by row counts,
so every request keeps its own headers and reply; larger messages run as they
come); its sink (streams.agents.sinks) says what to send on. Records are
decoded, and results encoded, many at a time (engine.codecs.decode_many,
encode_many): per message, opening and writing Arrow streams cost more than the
rest of a small message's compute.

The stage that reads the pipeline's input topic decodes Arrow or
pandas-records JSON, stamps the request id and pipeline version and starts the
carried input; a stage that ends a path turns messages into result (or
challenger log) rows.

A message whose compute fails is tried again (up to `max_attempts` in all)
unless the failure is deterministic (malformed or misshaped input); then its
sink reports the failure and the agent moves on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from aiokafka.structs import ConsumerRecord

from engine import codecs
from engine.errors import CodecError, InputMismatch
from engine.pipeline import CompiledPipeline, Started
from streams.agents.batching import merge, plan_micro_batches, split
from streams.agents.sinks import Sink
from streams.messages import Decoded, Envelope, Outgoing
from streams.settings import WorkerSettings

log = logging.getLogger(__name__)

DETERMINISTIC: tuple[type[Exception], ...] = (CodecError, InputMismatch)
"""Failures that trying again cannot fix: such a message is dead-lettered at once."""

Transform = Callable[[pa.RecordBatch], pa.RecordBatch]
"""Message in, message out (one row out per row in)."""
Finish = Callable[[pa.RecordBatch, Started], pa.RecordBatch]
"""(message, its request's start in ns, or each row's) -> the rows that end the path."""


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
class Results:
    """The results of consecutive messages, computed as one batch."""

    def __init__(self, batch: pa.RecordBatch, rows: Sequence[int]) -> None:
        self.pieces = split(batch, rows)
        """Each message's result (zero-copy slices)."""
        self._batch, self._rows = batch, rows
        self._encoded: list[bytes] | None = None
        self._decoded: list[Decoded] | None = None

    def encoded(self, index: int) -> bytes:
        """Piece `index` as an Arrow stream; every piece is written on the first call."""
        if self._encoded is None:
            try:
                self._encoded = codecs.encode_many(self._batch, self._rows)
            except Exception:  # written one by one instead, so each piece fails on its own
                self._encoded = []
        if self._encoded:
            return self._encoded[index]
        return codecs.encode(self.pieces[index], codecs.ARROW_STREAM)

    def decoded(self, index: int) -> Decoded:
        """Piece `index` as decoding `encoded(index)` gives it (dictionary columns plain),
        a slice of the whole batch so neighbours that run on together need no copy."""
        if self._decoded is None:
            self._decoded = pieces_of(Decoded.of(self._batch).batch, self._rows)
        return self._decoded[index]


@dataclass
class Work:
    """One message on its way through a step: its input, and then its result or error."""

    batch: pa.RecordBatch | None
    started_ns: int
    error: Exception | None = None
    source: tuple[pa.RecordBatch, int] | None = None
    """(the batch it was decoded in with its neighbours, its first row there): neighbours
    that run together are then a slice of it, not a copy."""
    attempts: int = 0
    output: tuple[Results, int] | None = None
    """Its result: piece `index` of a `Results`."""

    @property
    def result(self) -> pa.RecordBatch | None:
        return self.output[0].pieces[self.output[1]] if self.output is not None else None

    def encoded(self) -> bytes:
        """The result as an Arrow stream (written with its micro-batch's other results)."""
        assert self.output is not None, "no result"
        return self.output[0].encoded(self.output[1])

    def decoded(self) -> Decoded:
        """The result as the next stage decodes it (`Results.decoded`)."""
        assert self.output is not None, "no result"
        return self.output[0].decoded(self.output[1])

    @property
    def retryable(self) -> bool:
        return self.error is not None and self.batch is not None and not isinstance(
            self.error, DETERMINISTIC)

    @property
    def rows(self) -> int:
        return self.batch.num_rows if self.batch is not None else 0


@dataclass
class StepCompute:
    """What a stage does to messages: decode, run (merged when small), split back.

    Example:
        compute = StepCompute.for_step(pipeline, 0, max_batch_rows=256)
        works = [Work(compute.decode(value, content_type), started_ns) for value in values]
        compute.run(works)   # each work now has a result or an error
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

    def decode_many(self, values: Sequence[tuple[bytes | None, str]]
                    ) -> list[Decoded | Exception]:
        """`decode` of each (value, content type), or the error it raises; consecutive Arrow
        streams of one schema are decoded (and started) as one."""
        out: list[Decoded | Exception] = []
        streams: list[bytes] = []
        for value, content_type in values:
            if value and (not self.starts or content_type == codecs.ARROW_STREAM):
                streams.append(value)
                continue
            out += self._decode_streams(streams)
            streams = []
            out.append(self._decode_one(value, content_type))
        return out + self._decode_streams(streams)

    def _decode_streams(self, values: list[bytes]) -> list[Decoded | Exception]:
        out: list[Decoded | Exception] = []
        try:
            runs = codecs.decode_many(values)
        except Exception:  # a bug there must not stop the stage: decode them one by one
            log.exception("decoding %d records together failed; decoding each alone", len(values))
            return [self._decode_one(value, codecs.ARROW_STREAM) for value in values]
        for run in runs:
            if isinstance(run, CodecError):
                out.append(run)
            else:
                batch = CompiledPipeline.start(run.batch, run.rows) if self.starts else run.batch
                out += pieces_of(batch, run.rows)
        return out

    def _decode_one(self, value: bytes | None, content_type: str) -> Decoded | Exception:
        try:
            return Decoded(self.decode(value, content_type))
        except Exception as exc:
            return exc

    def run(self, works: Sequence[Work]) -> None:
        """Give each decoded work a result or an error; small messages run merged.

        If a merged batch fails, its messages run one by one, so one bad
        message does not fail the others.
        """
        ready = [w for w in works if w.batch is not None and w.error is None]
        plan = plan_micro_batches(
            [(w.batch.schema, w.batch.num_rows) for w in ready if w.batch is not None],
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
            work.output = (self._compute(work.batch, [work.started_ns], [work.batch.num_rows]), 0)
            work.error = None
        except Exception as exc:
            work.output, work.error = None, exc

    def _run_merged(self, members: list[Work]) -> bool:
        try:
            results = self._compute(joined(members), [w.started_ns for w in members],
                                    [w.rows for w in members])
        except Exception as exc:
            log.debug("micro-batch of %d messages failed (%s); running them one by one",
                      len(members), exc)
            return False
        for index, work in enumerate(members):
            work.attempts += 1
            work.output, work.error = (results, index), None
        return True

    def _compute(self, batch: pa.RecordBatch, started_ns: list[int], rows: list[int]) -> Results:
        out = self.transform(batch)
        if self.finish is not None:
            starts = started_ns[0] if len(started_ns) == 1 else np.repeat(
                np.asarray(started_ns, np.int64), rows)
            out = self.finish(out, starts)
        return Results(out, rows)


def pieces_of(batch: pa.RecordBatch, rows: Sequence[int]) -> list[Decoded]:
    """`batch` cut into consecutive messages of `rows` rows, each knowing where it came from
    (so `joined` takes neighbours back as a slice)."""
    firsts = np.cumsum([0, *rows[:-1]]).tolist()
    return [Decoded(piece, (batch, first)) for piece, first in zip(split(batch, rows), firsts)]


def joined(members: Sequence[Work]) -> pa.RecordBatch:
    """The members' rows as one batch: a slice when they are consecutive rows of one
    decoded batch (as a fetch's messages of one schema are), else a copy."""
    first = members[0].source
    if first is not None:
        whole, at = first
        for work in members:
            if work.source is None or work.source[0] is not whole or work.source[1] != at:
                break
            at += work.rows
        else:
            return whole.slice(first[1], at - first[1])
    return merge([w.batch for w in members if w.batch is not None])


def finisher(pipeline: CompiledPipeline) -> Finish:
    """The finish of a path that ends in the pipeline's result rows."""
    return lambda message, started_ns: pipeline.finish(message, started_ns=started_ns)


# -- the stage ------------------------------------------------------------------------
@dataclass
class Incoming:
    """A record a stage read, decoded: its headers and its work."""

    record: ConsumerRecord
    env: Envelope
    work: Work


@dataclass
class Stage:
    """One agent of a worker: where it reads, what it computes, where results go.

    Blocking and Kafka-free: the worker's loop (streams.loop) has it decode what one
    fetch brought, then runs it one chunk at a time (on the event loop, or its compute
    thread if chunks are slow) and sends what it returns.

    Example:
        incoming, done = stage.receive(records), 0
        while done < len(incoming):
            chunk, sent = stage.process(incoming, done, counters, settings)
            done += len(chunk)
    """

    name: str
    source: str
    """The topic it reads."""
    compute: StepCompute
    sink: Sink
    version: str
    """The pipeline version, stamped on requests where they enter."""

    def receive(self, records: Sequence[ConsumerRecord],
                ready: Sequence[Decoded] | None = None) -> list[Incoming]:
        """Decode records of the stage's topic (an unreadable one gets its error), unless
        they come decoded already (`ready`: handed on by this worker's previous stage)."""
        envs = [self._envelope(record) for record in records]
        decoded: Sequence[Decoded | Exception] = ready if ready is not None else \
            self.compute.decode_many(
                [(record.value, content_type) for record, (_, content_type) in zip(records, envs)])
        incoming = []
        for record, (env, _), message in zip(records, envs, decoded, strict=True):
            if isinstance(message, Exception):
                work = Work(None, env.started_ns, error=message, attempts=1)
            else:
                work = Work(message.batch, env.started_ns, source=message.source)
            incoming.append(Incoming(record, env, work))
        return incoming

    def process(self, incoming: Sequence[Incoming], start: int, counters: StepCounters,
                settings: WorkerSettings) -> tuple[list[Incoming], list[list[Outgoing]]]:
        """Take the next chunk of `incoming` from index `start`, run it, and return it with
        what to send for each of its messages.

        A chunk is the messages that reach `max_batch_rows` rows (so one large message
        alone): the unit the loop runs, sends and commits, so a slow model's progress
        shows and a rebalance waits for one chunk at most.
        """
        limit = self.compute.max_batch_rows
        chunk: list[Incoming] = []
        rows = 0
        for item in incoming[start:start + limit]:
            chunk.append(item)
            rows += max(item.work.rows, 1)
            if rows >= limit:
                break
        return chunk, self.run(chunk, counters, settings)

    def run(self, chunk: Sequence[Incoming], counters: StepCounters,
            settings: WorkerSettings) -> list[list[Outgoing]]:
        """Compute a chunk (small messages merged) and return what to send for each message,
        in order.

        A failed message is tried again (after a pause) up to `max_attempts` in
        all, unless the failure is deterministic; then the sink reports it.
        """
        self.compute.run([item.work for item in chunk])
        for item in chunk:
            while item.work.retryable and item.work.attempts < settings.max_attempts:
                counters.retried += 1
                time.sleep(settings.retry_backoff_ms * item.work.attempts / 1000)
                self.compute.run_one(item.work)
        out: list[list[Outgoing]] = []
        for item in chunk:
            record, env, work = item.record, item.env, item.work
            sent = self.sink.send(record, env, work) if work.error is None else None
            if sent is not None:
                counters.processed += 1
                out.append(sent)
            else:
                counters.failed += 1
                out.append(self.sink.fail(record, env, work))
        return out

    def _envelope(self, record: ConsumerRecord) -> tuple[Envelope, str]:
        """The record's headers (stamped where the request enters) and its value's type."""
        env = Envelope.parse(record.headers, default_request_id=_request_id(record))
        content_type = env.content_type
        if self.compute.starts:
            env = env.replace(version=self.version, content_type=codecs.ARROW_STREAM,
                              started_ns=env.started_ns or _timestamp_ns(record))
        return env, content_type


def _request_id(record: ConsumerRecord) -> str:
    """A request id for records sent without one, stable across redelivery."""
    return f"{record.topic}-{record.partition}-{record.offset}"


def _timestamp_ns(record: ConsumerRecord) -> int:
    """The record's Kafka timestamp (ms) in ns."""
    return int(record.timestamp) * 1_000_000 if record.timestamp else time.time_ns()
