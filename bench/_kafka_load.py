"""Kafka-mode load for bench_peers: requests produced open loop to a system's input topic,
replies read off its output topic and matched by id, whatever the system.

Both systems are driven the same way: one aiokafka producer, one consumer reading the
output topic from its end (matching by id: Tansu can hand "latest" a stale offset, so
replies of earlier runs may show up and are ignored), latency counted from when each
request was due. A request with no reply by the end of the drain is lost; a weir error
reply (MLServer sends none: it only logs) is failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from bench._stack import _assign_at_end, new_producer

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class KafkaTarget:
    """How to address one system over Kafka."""

    topic_in: str
    topic_out: str
    request: Callable[[str], tuple[bytes | None, Headers]]
    """request id -> (key, headers) of a request."""
    reply_id: Callable[[ConsumerRecord], str | None]
    failed: Callable[[ConsumerRecord], bool]


@dataclass
class KafkaOutcome:
    sent: int = 0
    latency_s: dict[str, float] = field(default_factory=dict)
    failed: int = 0
    strays: int = 0
    first_send: float = 0.0
    last_send: float = 0.0
    last_reply: float = 0.0
    send_lag_max_s: float = 0.0
    """How far behind its schedule the client itself fell (it must stay small)."""

    def summary(self, rows: int) -> dict[str, float | int]:
        got = len(self.latency_s)
        span = max(self.last_reply - self.first_send, 1e-9)
        out: dict[str, float | int] = {
            "sent": self.sent,
            "replies": got,
            "lost": self.sent - got - self.failed,
            "failed": self.failed,
            "msgs_per_s": round(got / span, 1),
            "sent_per_s": round(self.sent / max(self.last_send - self.first_send, 1e-9), 1),
            "rows_per_s": round(got * rows / span, 1),
            "client_send_lag_max_ms": round(self.send_lag_max_s * 1000, 1),
        }
        if got:
            ms = np.asarray(list(self.latency_s.values())) * 1000
            out.update(
                p50_ms=round(float(np.percentile(ms, 50)), 2),
                p99_ms=round(float(np.percentile(ms, 99)), 2),
            )
        return out


async def open_loop(
    bootstrap: str,
    target: KafkaTarget,
    values: list[bytes],
    rate: float,
    duration_s: float,
    drain_s: float,
    fetch_wait_ms: int,
) -> KafkaOutcome:
    """`rate` requests/s for `duration_s` (values taken in turn), then up to `drain_s` for the
    last replies."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=fetch_wait_ms,
        auto_offset_reset="latest",
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    producer = new_producer(bootstrap)
    await consumer.start()
    await producer.start()
    out = KafkaOutcome()
    due: dict[str, float] = {}
    total = max(int(rate * duration_s), 1)
    run = f"{time.monotonic_ns():x}"

    async def read() -> None:
        while True:
            records = await consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.perf_counter()
            for msgs in records.values():
                for msg in msgs:
                    rid = target.reply_id(msg)
                    if rid is None or rid not in due or rid in out.latency_s:
                        out.strays += 1
                        continue
                    if target.failed(msg):
                        out.failed += 1
                        due.pop(rid)
                        continue
                    out.latency_s[rid] = now - due[rid]
                    out.last_reply = now

    try:
        await _assign_at_end(consumer, target.topic_out)
        reader = asyncio.create_task(read())
        start = time.perf_counter() + 0.05
        out.first_send = start
        for i in range(total):
            when = start + i / rate
            wait = when - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            out.send_lag_max_s = max(out.send_lag_max_s, time.perf_counter() - when)
            rid = f"{run}-{i}"
            due[rid] = when
            key, headers = target.request(rid)
            await producer.send(target.topic_in, values[i % len(values)], key=key, headers=headers)
            out.sent += 1
        await producer.flush()
        out.last_send = time.perf_counter()
        deadline = time.perf_counter() + drain_s
        while len(out.latency_s) + out.failed < out.sent and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    finally:
        await producer.stop()
        await consumer.stop()
    return out
