"""The bench client of bench_pipeline: requests produced to an input topic, answers read off
its output topic by request id; throughput (pipelined) and latency (one at a time).

The same measurement serves a deployed pipeline and the bare aiokafka echo, so their
figures compare like for like.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench._stack import CpuMeter, Echo, Replies, new_producer
from engine import codecs
from streams.admin import ensure_topics, resolved
from streams.messages import CONTENT_TYPE, REQUEST_ID
from streams.settings import WorkerSettings
from streams.topics import TopicSpec

ECHO_TOPICS = ("bench.echo.a", "bench.echo.b")
ECHO_PARTITIONS = 4  # as the pipelines' input topics (topics.yaml defaults)
CLIENT_LINGER_MS = 5
"""The bench client's producer in throughput runs batches as Kafka's own producer does by
default since 4.0 (linger.ms=5); latency runs send one message at a time, without linger."""


COMMITTED_WINDOW = 8
"""Answers read committed (Apache Kafka) come a transaction at a time, `commit_interval_ms`
(100 ms) after it began: the window must hold what a pipeline answers meanwhile, or the
client sets the pace, not weir (heavy 1-step, quick runs on Apache Kafka: 55k rows/s with
the plain window, 64k with 4 times it, 68k with 8; 500 ms commits with the plain window: 20k)."""


@dataclass(frozen=True)
class Budget:
    """Counts and time bounds of every measurement."""

    warmup_msgs: int
    throughput_send_s: float
    throughput_drain_s: float
    throughput_max_msgs: dict[int, int]
    window_msgs: dict[int, int]
    latency_msgs: int
    latency_s: float
    raw_s: float
    paired_msgs: int
    """Latency of pipelines side by side, messages to each: their p50s differ by tenths of
    a millisecond, so these take more messages than a config's own latency."""
    paired_s: float


FULL = Budget(
    20, 10.0, 10.0, {1: 30_000, 256: 3_000}, {1: 2_000, 256: 100}, 300, 5.0, 3.0, 1_000, 12.0
)
QUICK = Budget(5, 2.0, 8.0, {1: 3_000, 256: 300}, {1: 1_000, 256: 50}, 60, 1.5, 0.3, 60, 1.5)


@dataclass(frozen=True)
class Reader:
    """How the bench client reads a stack's broker: as weir's own consumers there do."""

    bootstrap: str
    fetch_wait_ms: int
    """weir's resolved fetch wait: 5 ms on Tansu (it answers a waiting fetch only when the
    wait ends), 500 ms on Apache Kafka (it answers as soon as data arrives)."""
    committed: bool
    """Workers answer in transactions (Apache Kafka): answers count once committed."""

    def replies(self, topic: str) -> Replies:
        return Replies(
            self.bootstrap,
            topic,
            self.fetch_wait_ms,
            isolation_level="read_committed" if self.committed else "read_uncommitted",
        )


def reader(bootstrap: str) -> Reader:
    """The `Reader` of the broker at `bootstrap`, with weir's settings resolved for it."""
    settings = asyncio.run(resolved(WorkerSettings(kafka_bootstrap=bootstrap)))
    return Reader(bootstrap, settings.fetch_wait_ms, bool(settings.exactly_once))


# -- requests -----------------------------------------------------------------------------
def make_batches(x: np.ndarray, rows: int, count: int) -> list[np.ndarray]:
    """`count` distinct float32 batches of `rows` rows, cut from the diabetes features."""
    return [
        np.take(x, range(k * 37, k * 37 + rows), axis=0, mode="wrap").astype(np.float32)
        for k in range(count)
    ]


def encode(batch: np.ndarray) -> bytes:
    """A request: one `tensor` column, which a pipeline's first model takes whatever its one
    input is called (the diabetes model's `float_input`, the chain models' `x`)."""
    return codecs.encode(codecs.batch_from_arrays({"tensor": batch}), codecs.ARROW_STREAM)


def headers(request_id: str) -> list[tuple[str, bytes]]:
    return [(CONTENT_TYPE, codecs.ARROW_STREAM.encode()), (REQUEST_ID, request_id.encode())]


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "n": len(values),
    }


# -- measurements -------------------------------------------------------------------------
async def warm_up(
    producer: Any,
    replies: Replies,
    topic: str,
    payloads: list[bytes],
    n: int,
    timeout_s: float = 60.0,
) -> bytes:
    """Send `n` messages, wait for every answer; raise if any fails. Returns one answer's value."""
    run = uuid.uuid4().hex[:8]
    futures = []
    for i in range(n):
        futures.append(replies.expect(f"warm-{run}-{i}"))
        await producer.send(topic, payloads[i % len(payloads)], headers=headers(f"warm-{run}-{i}"))
    await producer.flush()
    done, pending = await asyncio.wait(futures, timeout=timeout_s)
    if pending:
        raise RuntimeError(f"warm-up: {len(pending)} of {n} messages unanswered after {timeout_s}s")
    for future in done:
        if future.result().error:
            raise RuntimeError(f"warm-up answer is an error: {future.result().error.decode()}")
    return next(iter(done)).result().value


async def throughput(
    producer: Any, replies: Replies, topic: str, payloads: list[bytes], rows: int, budget: Budget
) -> dict[str, Any]:
    """Pipelined sends (at most `window` in flight) for a bounded count/time; rows/s answered."""
    committed = replies.isolation_level == "read_committed"
    window = asyncio.Semaphore(budget.window_msgs[rows] * (COMMITTED_WINDOW if committed else 1))
    run = uuid.uuid4().hex[:8]
    futures: list[asyncio.Future[Any]] = []
    ids: list[str] = []
    start = time.perf_counter()
    send_until = start + budget.throughput_send_s
    for i in range(budget.throughput_max_msgs[rows]):
        left = send_until - time.perf_counter()
        if left <= 0:
            break
        try:
            await asyncio.wait_for(window.acquire(), timeout=left)
        except TimeoutError:
            break
        rid = f"tp-{run}-{i}"
        future = replies.expect(rid)
        future.add_done_callback(lambda _: window.release())
        futures.append(future)
        ids.append(rid)
        await producer.send(topic, payloads[i % len(payloads)], headers=headers(rid))
    await producer.flush()
    sent_s = time.perf_counter() - start
    done, pending = await asyncio.wait(futures, timeout=budget.throughput_drain_s)
    replies.forget(ids)
    answers = [f.result() for f in done]
    ok = [a for a in answers if not a.error]
    wall = (max(a.arrived for a in answers) - start) if answers else time.perf_counter() - start
    return {
        "sent_msgs": len(futures),
        "answered_msgs": len(ok),
        "error_msgs": len(answers) - len(ok),
        "unanswered_msgs": len(pending),
        "rows": len(ok) * rows,
        "send_s": round(sent_s, 3),
        "wall_s": round(wall, 3),
        "rows_per_s": round(len(ok) * rows / wall, 1) if wall else 0.0,
        "msgs_per_s": round(len(ok) / wall, 1) if wall else 0.0,
    }


async def latency(
    producer: Any,
    targets: list[tuple[Replies, str]],
    payloads: list[bytes],
    msgs: int,
    seconds: float,
    *,
    weir: bool,
) -> list[dict[str, Any]]:
    """One message at a time, to each (replies, input topic) target in turn, so targets are
    measured over the same seconds (at most `msgs` each, `seconds` each in all); end-to-end
    ms (and, for weir, the in-pipeline part)."""
    run = uuid.uuid4().hex[:8]
    e2e: list[list[float]] = [[] for _ in targets]
    inside: list[list[float]] = [[] for _ in targets]
    timeouts, errors = [0] * len(targets), [0] * len(targets)
    stop = time.perf_counter() + seconds * len(targets)
    for i in range(msgs):
        if time.perf_counter() > stop:
            break
        for t, (replies, topic) in enumerate(targets):
            rid = f"lat-{run}-{t}-{i}"
            future = replies.expect(rid)
            sent = time.perf_counter()
            await producer.send_and_wait(topic, payloads[i % len(payloads)], headers=headers(rid))
            try:
                answer = await asyncio.wait_for(future, timeout=10)
            except TimeoutError:
                timeouts[t] += 1
                replies.forget([rid])
                continue
            if answer.error:
                errors[t] += 1
                continue
            e2e[t].append((answer.arrived - sent) * 1e3)
            if weir:
                batch = codecs.decode(answer.value, codecs.ARROW_STREAM)
                inside[t].append(batch.column("metadata.elapsed_ns")[0].as_py() / 1e6)
    results = []
    for t in range(len(targets)):
        result: dict[str, Any] = {
            **percentiles(e2e[t]),
            "timeouts": timeouts[t],
            "errors": errors[t],
        }
        if weir:
            # metadata.elapsed_ns runs from the input record's Kafka timestamp (ms resolution)
            # to the result being built in the last step: e2e less the result hop.
            result["in_pipeline_p50_ms"] = percentiles(inside[t])["p50_ms"]
        results.append(result)
    return results


async def paired_latency(
    at: Reader, pipelines: list[dict[str, str]], payloads: list[bytes], budget: Budget
) -> list[dict[str, Any]]:
    """`latency` of deployed pipelines (their topics), one message to each in turn."""
    producer = new_producer(at.bootstrap)
    await producer.start()
    replies = [await at.replies(p["output"]).start() for p in pipelines]
    try:
        targets = [(r, p["input"]) for r, p in zip(replies, pipelines)]
        for r, topic in targets:
            await warm_up(producer, r, topic, payloads, budget.warmup_msgs)
        return await latency(
            producer, targets, payloads, budget.paired_msgs, budget.paired_s, weir=True
        )
    finally:
        await producer.stop()
        for r in replies:
            await r.stop()


async def measure(
    at: Reader,
    source: str,
    target: str,
    payloads: list[bytes],
    rows: int,
    budget: Budget,
    pids: dict[str, list[int]],
    *,
    weir: bool,
) -> dict[str, Any]:
    """Warm-up, latency, then throughput (with each process's CPU) of messages of `rows` rows
    sent to `source` and answered on `target` (a deployed pipeline's topics, or the echo's)."""
    replies = await at.replies(target).start()
    batching = new_producer(at.bootstrap, linger_ms=CLIENT_LINGER_MS)
    one_by_one = new_producer(at.bootstrap)
    await batching.start()
    await one_by_one.start()
    try:
        value = await warm_up(batching, replies, source, payloads, budget.warmup_msgs)
        if weir:
            columns = codecs.decode(value, codecs.ARROW_STREAM).schema.names
            if "out.variable" not in columns:
                raise RuntimeError(f"unexpected result columns {columns}")
        [lat] = await latency(
            one_by_one,
            [(replies, source)],
            payloads,
            budget.latency_msgs,
            budget.latency_s,
            weir=weir,
        )
        meter = CpuMeter(pids).start()
        tp = await throughput(batching, replies, source, payloads, rows, budget)
        tp["cpu_s"] = meter.stop()
        return {"throughput": tp, "latency": lat}
    finally:
        await batching.stop()
        await one_by_one.stop()
        await replies.stop()


async def measure_echo(
    at: Reader, payloads: list[bytes], rows: int, budget: Budget, tag: str
) -> dict[str, Any]:
    """The bare aiokafka round trip: bench producer -> A -> echo loop -> B -> bench consumer,
    on topics of its own, named with `tag` (as each pipeline measurement has)."""
    source, target = (f"{name}.{rows}.{tag}" for name in ECHO_TOPICS)
    await ensure_topics(
        WorkerSettings(kafka_bootstrap=at.bootstrap),
        [TopicSpec(source, ECHO_PARTITIONS), TopicSpec(target, ECHO_PARTITIONS)],
    )
    echo = await Echo(at.bootstrap, source, target, at.fetch_wait_ms).start()
    try:
        return await measure(
            at, source, target, payloads, rows, budget, {"bench": [os.getpid()]}, weir=False
        )
    finally:
        await echo.stop()
