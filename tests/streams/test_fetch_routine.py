"""A consumer sends its next fetch as soon as the last one ended
(streams.aiokafka_internals.wake_fetcher_when_a_fetch_ends, applied by streams.clients and,
for the tests' own clients, tests/conftest.py).

aiokafka 0.14's fetch routine, woken by its own timeout in the loop turn where a fetch ended,
sent nothing and slept a whole timeout with no fetch in flight: on Apache Kafka about one
fetch in 140 to 370 on an idle topic when the fetch wait equals the routine's timeout, so
dozens of idle consumers meet it within seconds (10 of 3,687 fetches here without the fix).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from control.embedded import Service
from streams.admin import ensure_topics
from streams.clients import connection_options
from streams.settings import WorkerSettings
from streams.topics import TopicSpec

pytestmark = pytest.mark.slow

WAIT_MS = 100
"""Both the fetch wait and the fetch routine's timeout (`consumer_timeout_ms`)."""
CONSUMERS = 40
SECONDS = 10.0


async def _fetch_gaps(settings: WorkerSettings, tp: TopicPartition, until: float) -> list[float]:
    """An idle consumer of `tp` until `until` (monotonic): the time between each fetch's end
    and the next fetch's start."""
    consumer = AIOKafkaConsumer(
        **connection_options(settings),
        enable_auto_commit=False,
        fetch_max_wait_ms=WAIT_MS,
        consumer_timeout_ms=WAIT_MS,
    )
    await consumer.start()
    spans: list[tuple[float, float]] = []
    send = consumer._client.send

    async def timed(node_id: int, request: Any, *args: Any, **kwargs: Any) -> Any:
        if type(request).__name__ != "FetchRequest":
            return await send(node_id, request, *args, **kwargs)
        began = time.monotonic()
        try:
            return await send(node_id, request, *args, **kwargs)
        finally:
            spans.append((began, time.monotonic()))

    consumer._client.send = timed
    try:
        consumer.assign([tp])
        while time.monotonic() < until:
            await consumer.getmany(timeout_ms=1000)
    finally:
        await consumer.stop()
    return [nxt[0] - last[1] for last, nxt in zip(spans, spans[1:])]


async def test_an_idle_consumer_fetches_again_as_soon_as_a_fetch_ends(
    broker: str, kafka_service: Service
) -> None:
    if broker != "kafka":
        pytest.skip("the race shows on Apache Kafka only (on Tansu this passed without the fix)")
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    tp = TopicPartition(f"idle-fetches-{broker}", 0)
    await ensure_topics(settings, [TopicSpec(tp.topic, partitions=1)])
    until = time.monotonic() + SECONDS
    gaps = [
        gap
        for each in await asyncio.gather(
            *(_fetch_gaps(settings, tp, until) for _ in range(CONSUMERS))
        )
        for gap in each
    ]
    assert len(gaps) > CONSUMERS * SECONDS * 1000 / WAIT_MS / 2  # the consumers kept fetching
    idle = [round(gap, 3) for gap in gaps if gap > WAIT_MS / 1000 * 0.8]
    assert not idle, f"{len(idle)} of {len(gaps)} fetches were followed by no fetch for {idle} s"
