"""A stage's compute, without Kafka: decode messages, run them in micro-batches, split back.

A stage runs a span of a version's steps fused (streams.plan): one micro-batch
goes through every step of the span in process, with nothing encoded or decoded
between steps. Small messages are merged up to `max_batch_rows` rows and split
back by row counts afterwards, so every request keeps its own headers and
reply; larger messages run as they come. Records are decoded, and results
encoded, many at a time (engine.codecs.decode_many, encode_many): per message,
opening and writing Arrow streams cost more than the rest of a small message's
compute.

A shadow step in a span runs its champion on the answer path and keeps the
step's input (a `Fanout`), which the stage's sink sends on to the shadow
workers' challengers. A merged micro-batch that fails runs again one message at
a time, so one bad message fails alone; where a message failed is kept
(`Work.failed_step`) for its error reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from engine import codecs
from engine.answers import EncodedAnswer, encode_json_answers
from engine.errors import CodecError, InputMismatch
from engine.pipeline import CompiledPipeline, Started
from engine.steps import ShadowRunner
from streams.batching import merge, plan_micro_batches, split
from streams.errors import InputTooLarge
from streams.messages import Decoded

log = logging.getLogger(__name__)

DETERMINISTIC: tuple[type[Exception], ...] = (CodecError, InputMismatch, InputTooLarge)
"""Failures that trying again cannot fix: such a message is dead-lettered at once."""

Fanout = tuple[int, pa.RecordBatch]
"""(the index of a shadow step, the message its champion ran on): the challengers' input."""
StepObserver = Callable[[int, int, int, float], None]
"""Called after each step of a span ran a micro-batch: (step index, messages, rows, seconds)."""


@dataclass
class Pass:
    """One micro-batch's way through a stage's transform: how many messages it holds, and
    the fan-outs it reached."""

    messages: int
    fanouts: list[Fanout] = field(default_factory=list)


Transform = Callable[[pa.RecordBatch, Pass], pa.RecordBatch]
"""Message in, message out (one row out per row in); appends the span's fan-outs."""
Finish = Callable[[pa.RecordBatch, Started], pa.RecordBatch]
"""(message, its request's start in ns, or each row's) -> the rows that end the path."""


class StepFailure(Exception):
    """Step `index` of a span raised `cause`."""

    def __init__(self, index: int, cause: Exception) -> None:
        super().__init__(f"step {index}: {cause}")
        self.index, self.cause = index, cause


def span(
    pipeline: CompiledPipeline, start: int, stop: int, observe: StepObserver | None = None
) -> Transform:
    """Steps `start`..`stop - 1` of `pipeline`, fused into one transform (each step's time
    and rows told to `observe`)."""

    def run(message: pa.RecordBatch, batch: Pass) -> pa.RecordBatch:
        for index in range(start, stop):
            began = time.perf_counter()
            try:
                if isinstance(pipeline.steps[index], ShadowRunner):
                    batch.fanouts.append((index, message))
                    message = pipeline.run_champion(index, message)
                else:
                    message = pipeline.run_step(index, message)
            except Exception as exc:
                raise StepFailure(index, exc) from exc
            if observe is not None:
                observe(index, batch.messages, message.num_rows, time.perf_counter() - began)
        return message

    return run


class Results:
    """The results (and fan-outs) of consecutive messages, computed as one batch."""

    def __init__(
        self, batch: pa.RecordBatch, rows: Sequence[int], fanouts: Sequence[Fanout] = ()
    ) -> None:
        self.pieces = split(batch, rows)
        """Each message's result (zero-copy slices)."""
        self._batch, self._rows = batch, rows
        self._fanouts = [(index, split(message, rows)) for index, message in fanouts]
        self._encoded: list[bytes] | None = None
        self._json: list[EncodedAnswer | CodecError] | None = None

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

    def json_answer(self, index: int) -> EncodedAnswer:
        """Piece `index` as a JSON answer; every piece is written on the first call (most of
        a JSON answer's cost is turning the columns into Python values: once for all).

        :raises CodecError: the piece holds values JSON has no form for.
        """
        if self._json is None:
            self._json = encode_json_answers(self._batch, self._rows)
        found = self._json[index]
        if isinstance(found, CodecError):
            raise found
        return found

    def fanouts(self, index: int) -> list[Fanout]:
        """Message `index`'s fan-outs."""
        return [(step, pieces[index]) for step, pieces in self._fanouts]


@dataclass
class Work:
    """One message on its way through a stage: its input, and then its result or error."""

    batch: pa.RecordBatch | None
    started_ns: int
    error: Exception | None = None
    failed_step: int | None = None
    """The step that raised `error` (None: before the steps, e.g. decoding the input)."""
    source: tuple[pa.RecordBatch, int] | None = None
    """(the batch it was decoded in with its neighbours, its first row there): neighbours
    that run together are then a slice of it, not a copy."""
    attempts: int = 0
    output: tuple[Results, int] | None = None
    """Its result: piece `index` of a `Results`."""
    partial: list[Fanout] = field(default_factory=list)
    """The fan-outs of a failed try, up to the step that failed."""

    @property
    def result(self) -> pa.RecordBatch | None:
        return self.output[0].pieces[self.output[1]] if self.output is not None else None

    def encoded(self) -> bytes:
        """The result as an Arrow stream (written with its micro-batch's other results)."""
        assert self.output is not None, "no result"
        return self.output[0].encoded(self.output[1])

    def json_answer(self) -> EncodedAnswer:
        """The result as a JSON answer (written with its micro-batch's other results)."""
        assert self.output is not None, "no result"
        return self.output[0].json_answer(self.output[1])

    def fanouts(self) -> list[Fanout]:
        """The challengers' inputs this message reached (also when a later step failed)."""
        if self.output is not None:
            return self.output[0].fanouts(self.output[1])
        return self.partial

    @property
    def retryable(self) -> bool:
        return (
            self.error is not None
            and self.batch is not None
            and not isinstance(self.error, DETERMINISTIC)
        )

    @property
    def rows(self) -> int:
        return self.batch.num_rows if self.batch is not None else 0


@dataclass
class StageCompute:
    """What a stage does to messages: decode, run (merged when small), split back.

    Example:
        compute = StageCompute(span(pipeline, 0, 3), finish=finisher(pipeline), starts=True)
        works = [Work(message.batch, started_ns) for message in compute.decode_many(values)]
        compute.run(works)   # each work now has a result or an error
    """

    transform: Transform
    finish: Finish | None = None
    """Set where the path ends: turns the transformed message into its final rows."""
    starts: bool = False
    """Reads the pipeline's input topic: decodes what users send and starts the message."""
    max_batch_rows: int = 256
    max_bytes: int | None = None
    """Largest record value it takes (`WorkerSettings.max_message_bytes`); bigger ones fail."""

    def decode(self, value: bytes | None, content_type: str) -> pa.RecordBatch:
        """The stage's input message from a record value (the first stage starts it)."""
        if value is None:
            raise CodecError("the record has no value: send one Arrow record batch or JSON rows")
        if self.starts:
            batch = codecs.decode(value, codecs.normalize_content_type(content_type))
            return CompiledPipeline.start(batch)
        return codecs.decode(value, codecs.ARROW_STREAM)

    def decode_many(self, values: Sequence[tuple[bytes | None, str]]) -> list[Decoded | Exception]:
        """`decode` of each (value, content type), or the error it raises; consecutive Arrow
        streams of one schema are decoded (and started) as one."""
        out: list[Decoded | Exception] = []
        streams: list[bytes] = []
        for value, content_type in values:
            if value and self.max_bytes is not None and len(value) > self.max_bytes:
                out += self._decode_streams(streams)
                streams = []
                out.append(InputTooLarge(len(value), self.max_bytes))
                continue
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
            self.max_batch_rows,
        )
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
        batch = Pass(messages=1)
        try:
            work.output = (
                self._compute(work.batch, [work.started_ns], [work.batch.num_rows], batch),
                0,
            )
            work.error, work.failed_step, work.partial = None, None, []
        except StepFailure as failure:
            work.output, work.error, work.failed_step = None, failure.cause, failure.index
            work.partial = batch.fanouts
        except Exception as exc:  # finishing the rows (validations) failed
            work.output, work.error, work.failed_step = None, exc, None
            work.partial = batch.fanouts

    def _run_merged(self, members: list[Work]) -> bool:
        try:
            results = self._compute(
                joined(members),
                [w.started_ns for w in members],
                [w.rows for w in members],
                Pass(messages=len(members)),
            )
        except Exception as exc:
            log.debug(
                "micro-batch of %d messages failed (%s); running them one by one", len(members), exc
            )
            return False
        for index, work in enumerate(members):
            work.attempts += 1
            work.output, work.error = (results, index), None
        return True

    def _compute(
        self, batch: pa.RecordBatch, started_ns: list[int], rows: list[int], one: Pass
    ) -> Results:
        out = self.transform(batch, one)
        if self.finish is not None:
            starts = (
                started_ns[0]
                if len(started_ns) == 1
                else np.repeat(np.asarray(started_ns, np.int64), rows)
            )
            out = self.finish(out, starts)
        return Results(out, rows, one.fanouts)


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
