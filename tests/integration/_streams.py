"""Helpers for the streaming tests: a numbered producer and a result-topic reader (bare aiokafka)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple
from pathlib import Path

import numpy as np
import pyarrow as pa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine import codecs
from engine.answers import decode_answer
from streams.admin import end_offsets, probe_consumer
from streams.aiokafka_internals import topic_partitions
from streams.lag import GroupLag
from streams.messages import CONTENT_TYPE, REQUEST_ID, Envelope
from streams.settings import WorkerSettings


def numbered_row(n: int, *, first: float | None = None) -> bytes:
    """One row whose tensor starts with `n` (or `first`), as an Arrow IPC stream."""
    x = np.full((1, 10), 0.01, dtype=np.float32)
    x[0, 0] = n if first is None else first
    return codecs.encode(codecs.batch_from_arrays({"tensor": x}), codecs.ARROW_STREAM)


def request_id(prefix: str, n: int) -> str:
    return f"{prefix}-{n}"


@dataclass
class Sent:
    """Where each numbered record landed on the input topic."""

    where: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # request id -> (partition, offset)


async def produce(
    bootstrap: str,
    topic: str,
    prefix: str,
    count: int,
    *,
    per_second: float,
    sent: Sent,
    values: dict[int, bytes] | None = None,
    until: asyncio.Event | None = None,
) -> None:
    """Send numbered one-row records at about `per_second`, keyed by their number.

    Sends `count` records, or with `until`, records until it is set (at most `count`).
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    try:
        futures = {}
        started = time.monotonic()
        for n in range(count):
            if until is not None and until.is_set():
                break
            rid = request_id(prefix, n)
            value = (values or {}).get(n) or numbered_row(n)
            futures[rid] = await producer.send(
                topic,
                value,
                key=str(n).encode(),
                headers=[(CONTENT_TYPE, codecs.ARROW_STREAM.encode()), (REQUEST_ID, rid.encode())],
            )
            ahead = (n + 1) / per_second - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        for rid, future in futures.items():
            meta = await future
            sent.where[rid] = (meta.partition, meta.offset)
    finally:
        await producer.stop()


@dataclass
class Answer:
    env: Envelope
    batch: pa.RecordBatch | None  # None for an error reply
    partition: int = -1  # where on the result topic it came


class Reader:
    """Reads a topic from its beginning in the background, keeping records of one prefix:
    only committed ones, as a consumer that must see each answer once reads them (on a
    broker without transactions, that is every record)."""

    def __init__(self, bootstrap: str, topic: str, prefix: str) -> None:
        self.settings = WorkerSettings(kafka_bootstrap=bootstrap)
        self.topic = topic
        self.prefix = prefix + "-"
        self.answers: dict[str, list[Answer]] = defaultdict(list)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
            isolation_level="read_committed",
        )
        self._task: asyncio.Task[None] | None = None
        self._tps: list[TopicPartition] = []

    async def start(self) -> None:
        await self._consumer.start()
        self._tps = await topic_partitions(self._consumer, self.topic)
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_beginning(*self._tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for msgs in (await self._consumer.getmany(timeout_ms=200)).values():
                for msg in msgs:
                    env = Envelope.parse(msg.headers)
                    if not env.request_id.startswith(self.prefix):
                        continue
                    batch = None
                    if env.error is None and msg.value:  # JSON for a JSON request
                        batch = decode_answer(msg.value, env.content_type, env.base64_columns)
                    self.answers[env.request_id].append(Answer(env, batch, msg.partition))

    async def wait_for(self, ids: set[str], timeout_s: float) -> set[str]:
        """Wait until every id has an answer; returns those still missing."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            missing = ids - self.answers.keys()
            if not missing:
                return set()
            await asyncio.sleep(0.1)
        return ids - self.answers.keys()

    async def catch_up(self) -> None:
        """Wait until everything now on the topic has been read."""
        probe = probe_consumer(self.settings)  # its ends are right on Tansu too
        await probe.start()
        try:
            ends = await end_offsets(probe, self._tps)
        finally:
            await probe.stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            positions = {tp: await self._consumer.position(tp) for tp in ends}
            if all(positions[tp] >= end for tp, end in ends.items()):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.topic} not read to its end {ends} in 30 s")

    async def read_every_answer(self, readers: dict[str, str], timeout_s: float = 60) -> None:
        """Wait until each group has committed every record of its topic (`readers`: group ->
        topic), then read this topic to its end. Past those commits no worker runs a record
        again, and what it sent before committing is on this topic: the answers read are all
        there will be, repeats included (a fixed wait only hoped so)."""
        lag = GroupLag(self.settings)
        await lag.start()
        try:
            groups = {
                group: await topic_partitions(self._consumer, topic)
                for group, topic in readers.items()
            }
            try:
                await lag.wait_read(groups, timeout_s)
            except TimeoutError as exc:
                raise AssertionError(f"{readers}: {exc}") from None
        finally:
            await lag.stop()
        await self.catch_up()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


def first_value(batch: pa.RecordBatch) -> float:
    """The first tensor element of a result's carried input (the record's number)."""
    return float(codecs.column_to_ndarray(batch.column("in.tensor"))[0, 0])


def is_error(answer: Answer) -> bool:
    return answer.env.error is not None or answer.batch is None


async def send_and_collect(
    bootstrap: str,
    topics: dict[str, str],
    prefix: str,
    count: int,
    *,
    per_second: float,
    sent: Sent,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
    group: str | None = None,
) -> dict[str, list[Answer]]:
    """Send `count` numbered records to the input topic while `meanwhile` runs, wait until
    every one is answered on the result topic (and with `group`, its readers of the input,
    until it has committed them all, so late repeats are in) and return the answers by
    request id."""
    reader = Reader(bootstrap, topics["output"], prefix)
    await reader.start()
    try:
        producing = asyncio.create_task(
            produce(bootstrap, topics["input"], prefix, count, per_second=per_second, sent=sent)
        )
        if meanwhile is not None:
            await meanwhile()
        await producing
        missing = await reader.wait_for(set(sent.where), timeout_s=60)
        assert not missing, f"{len(missing)} never answered, e.g. {sorted(missing)[:5]}"
        if group is not None:
            await reader.read_every_answer({group: topics["input"]})
        return reader.answers
    finally:
        await reader.stop()


async def find_by_first_value(
    bootstrap: str, topic: str, wanted: set[float]
) -> dict[float, list[tuple[int, int, int]]]:
    """Where the records whose first tensor value (the request's `tensor`, or an answer's
    carried `in.tensor`) is in `wanted` lie on `topic`: (partition, offset, timestamp in
    ms), the topic read from its beginning to its end. For a failure message: was a request
    written, was it answered, and when."""
    settings = WorkerSettings(kafka_bootstrap=bootstrap)
    found: dict[float, list[tuple[int, int, int]]] = defaultdict(list)
    probe = probe_consumer(settings)
    await probe.start()
    try:
        tps = await topic_partitions(probe, topic)
        ends = await end_offsets(probe, tps)
        probe.assign(tps)
        await probe.seek_to_beginning(*tps)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not await _read_to(probe, ends):
            for msgs in (await probe.getmany(timeout_ms=200)).values():
                for msg in msgs:
                    env = Envelope.parse(msg.headers)
                    if env.error is not None or not msg.value:
                        continue
                    batch = decode_answer(msg.value, env.content_type, env.base64_columns)
                    column = "in.tensor" if "in.tensor" in batch.schema.names else "tensor"
                    for first in codecs.column_to_ndarray(batch.column(column))[:, 0].tolist():
                        if first in wanted:
                            found[first].append((msg.partition, msg.offset, msg.timestamp))
    finally:
        await probe.stop()
    return found


async def _read_to(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    return all([await consumer.position(tp) >= end for tp, end in ends.items()])


def worker_warnings(home: str, limit: int = 30) -> str:
    """The last warnings and errors in the workers' logs (rebalance chatter left out),
    to say in a failure message what the workers saw."""
    lines = []
    for path in sorted(Path(home, "run", "logs").glob("worker-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if (" WARNING " in line or " ERROR " in line) and "Heartbeat failed" not in line:
                lines.append(f"{path.stem}: {line[:300]}")
    return "\n".join(lines[-limit:]) or "(none)"


class Reply(NamedTuple):
    headers: dict[str, bytes]
    batch: pa.RecordBatch


async def kafka_round_trip(
    bootstrap: str, topics: dict[str, str], messages: list[tuple[str, bytes]]
) -> dict[str, Reply]:
    """Bare aiokafka: produce to the input topic, read answers off the result topic."""
    consumer = AIOKafkaConsumer(
        topics["output"],
        bootstrap_servers=bootstrap,
        auto_offset_reset="latest",
        fetch_max_wait_ms=10,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
        ids = {}
        for content_type, value in messages:
            request_id = uuid.uuid4().hex
            ids[request_id] = content_type
            await producer.send_and_wait(
                topics["input"],
                value,
                key=request_id.encode(),
                headers=[(CONTENT_TYPE, content_type.encode()), (REQUEST_ID, request_id.encode())],
            )
        answers: dict[str, Reply] = {}
        deadline = time.monotonic() + 30
        while len(answers) < len(ids) and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                for msg in msgs:
                    headers, env = dict(msg.headers), Envelope.parse(msg.headers)
                    if env.request_id in ids:  # JSON for a JSON request, else Arrow
                        answers[env.request_id] = Reply(
                            headers, decode_answer(msg.value, env.content_type, env.base64_columns)
                        )
        return answers
    finally:
        await producer.stop()
        await consumer.stop()
