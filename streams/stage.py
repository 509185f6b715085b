"""The stage: one topic read, a span of steps computed, each result handed to a sink.

Every part of a worker is a stage (streams.plan): the main workers' spans of
fused steps, a sidekick step, a shadow challenger. The worker's loop
(streams.loop) hands a stage the records that arrived together; the stage
decodes them, runs them a chunk at a time (streams.compute) and says what to
send for each (streams.sinks). Blocking and Kafka-free: the loop decides what
runs inline and what on its compute thread, and waits between retries.

The stage that reads the pipeline's input topic decodes Arrow or
pandas-records JSON and stamps the request id, the pipeline version and the
content type its answer is written in (engine.answers); a stage that ends a
path turns messages into result (or challenger log) rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord

from engine import codecs
from engine.answers import ResultFormat, reply_type
from engine.errors import CodecError
from streams.compute import StageCompute, Work
from streams.messages import Envelope, Outgoing
from streams.metrics import WorkerMetrics
from streams.sinks import Sink


@dataclass
class StepCounters:
    processed: int = 0
    failed: int = 0
    retried: int = 0

    @property
    def finished(self) -> int:
        """Messages done with, either way (what a draining worker's progress is measured by)."""
        return self.processed + self.failed


@dataclass
class Incoming:
    """A record a stage read, decoded: its headers and its work."""

    record: ConsumerRecord
    env: Envelope
    work: Work


@dataclass
class Stage:
    """One part of a worker: where it reads, what it computes, where results go.

    Example:
        incoming, done = stage.receive(records), 0
        while done < len(incoming):
            chunk = stage.chunk(incoming, done)
            stage.run(chunk)              # then stage.run_one(item) for each retry
            sent = stage.outgoing(chunk, counters)
            done += len(chunk)
    """

    name: str
    source: str
    """The topic it reads."""
    compute: StageCompute
    sink: Sink
    version: str
    """The pipeline version, stamped on requests where they enter."""
    last_step: str = ""
    """The name its answers and failures are counted under in metrics (its last step's)."""
    result_format: ResultFormat = "request"
    """What the answers of the requests it reads (if it reads the input topic) are written in."""

    @property
    def answers(self) -> bool:
        """Whether it ends the path: what it sends on is the request's answer."""
        return getattr(self.sink, "next", None) == self.sink.output

    @property
    def hands_on_to(self) -> str | None:
        """The boundary topic the path goes on from (a sidekick's input, or the steps' after
        one), which the next stage reads committed; None where it ends the path or runs a
        challenger."""
        return None if self.answers else getattr(self.sink, "next", None)

    @property
    def fans_out_to(self) -> set[str]:
        """The challengers' topics it sends shadow steps' inputs to, which shadow workers
        read committed."""
        challengers: dict[int, tuple[str, ...]] = getattr(self.sink, "challengers", {})
        return {topic for topics in challengers.values() for topic in topics}

    def receive(self, records: Sequence[ConsumerRecord]) -> list[Incoming]:
        """Decode records of the stage's topic (an unreadable one gets its error)."""
        envs = [self._envelope(record) for record in records]
        decoded = self.compute.decode_many(
            [(record.value, content_type) for record, (_, content_type) in zip(records, envs)]
        )
        incoming = []
        for record, (env, _), message in zip(records, envs, decoded, strict=True):
            if isinstance(message, Exception):
                work = Work(None, env.started_ns, error=message, attempts=1)
            else:
                work = Work(message.batch, env.started_ns, source=message.source)
            incoming.append(Incoming(record, env, work))
        return incoming

    def chunk(self, incoming: Sequence[Incoming], start: int) -> list[Incoming]:
        """The next chunk of `incoming` from index `start`: the messages that reach
        `max_batch_rows` rows (so one large message alone). The unit the loop runs, sends
        and commits, so a slow model's progress shows and a rebalance waits for one chunk
        at most."""
        limit = self.compute.max_batch_rows
        chunk: list[Incoming] = []
        rows = 0
        for item in incoming[start : start + limit]:
            chunk.append(item)
            rows += max(item.work.rows, 1)
            if rows >= limit:
                break
        return chunk

    def run(self, chunk: Sequence[Incoming]) -> None:
        """Compute a chunk's first tries (small messages merged)."""
        self.compute.run([item.work for item in chunk])

    def run_one(self, item: Incoming) -> None:
        """Try one failed message again."""
        self.compute.run_one(item.work)

    def outgoing(
        self,
        chunk: Sequence[Incoming],
        counters: StepCounters,
        metrics: WorkerMetrics | None = None,
    ) -> list[list[Outgoing]]:
        """What to send for each message of a computed chunk, in order: its results, or its
        error reply and dead-letter copy (counted in `counters` and `metrics`)."""
        out: list[list[Outgoing]] = []
        now_ns = time.time_ns()
        for item in chunk:
            record, env, work = item.record, item.env, item.work
            sent = self.sink.send(record, env, work) if work.error is None else None
            if sent is not None:
                counters.processed += 1
                out.append(sent)
                if metrics is not None:
                    latency = (
                        (now_ns - env.started_ns) / 1e9 if self.answers and env.started_ns else None
                    )
                    metrics.answered(self.last_step, rows=work.rows, latency_s=latency)
            else:
                counters.failed += 1
                out.append(self.sink.fail(record, env, work))
                if metrics is not None:
                    metrics.failed(
                        self.last_step,
                        rows=work.rows,
                        dead_lettered=any(o.topic == self.sink.dead_letter for o in out[-1]),
                    )
        return out

    def _envelope(self, record: ConsumerRecord) -> tuple[Envelope, str]:
        """The record's headers (stamped where the request enters) and its value's type."""
        env = Envelope.of(record)
        content_type = env.content_type
        if self.compute.starts:  # headers only weir writes are not believed from a producer
            env = env.replace(
                version=self.version,
                content_type=codecs.ARROW_STREAM,
                started_ns=env.started_ns or _timestamp_ns(record),
                error=None,
                shadow=None,
                redelivered=False,
                reply_type=self._reply_type(content_type),
                base64_columns=(),
            )
        return env, content_type

    def _reply_type(self, content_type: str) -> str:
        """What a request of `content_type` is answered in (one of no known type as Arrow's)."""
        try:
            request = codecs.normalize_content_type(content_type)
        except CodecError:
            request = codecs.ARROW_STREAM
        return reply_type(self.result_format, request)


def _timestamp_ns(record: ConsumerRecord) -> int:
    """The record's Kafka timestamp (ms) in ns."""
    return int(record.timestamp) * 1_000_000 if record.timestamp else time.time_ns()
