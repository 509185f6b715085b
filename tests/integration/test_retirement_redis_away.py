"""A retirement that meets Redis away waits for it, then finishes: the old workers stop, their
heartbeats are forgotten and their deployment's topics deleted.

Before, the first registry call that failed ended the retirement where it stood (chaos seed 6
found it): workers it had not stopped yet served on beside the new version, and their
deployment's topics stayed on the broker for good. A stopping server does not wait for Redis:
the next one retires what is left.

The worker here is a heartbeat in a Redis of the test's own, as a `weir worker` the server
did not start writes it (stopped and started again on one port and folder); its deployment's
topics are real, on the session's broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from control.embedded import Service, start_redis
from control.errors import RegistryUnavailable
from control.records import Deployment
from control.retirement import REDIS_RETRY_S
from streams.admin import ensure_topics, topic_names
from streams.status import WorkerStatus
from streams.topics import TopicMap
from tests.control._heartbeats import beat
from tests.integration._retirements import new_retirement, own_redis

WS, PIPELINE = "default", "retire-redis-away"
AWAY_S = 3.0
"""How long Redis stays away: a few of the retirement's retries."""


def test_a_retirement_waits_for_redis_and_then_drops_the_topics(
    kafka_service: Service, tmp_path: Path
) -> None:
    redis, settings, registry = own_redis(kafka_service, tmp_path)
    retired = Deployment(workspace=WS, pipeline=PIPELINE, version="1")
    topics = TopicMap.load()
    own = [topics.boundary(WS, PIPELINE, retired.id, i) for i in (0, 1)]
    worker_id = "retire-redis-away-1-w0"

    async def scenario() -> tuple[list[WorkerStatus], set[str], bool]:
        nonlocal redis
        await ensure_topics(settings.worker_settings(), own)
        beat(registry, retired, worker_id, "Running")
        retirement = new_retirement(settings, registry)
        redis.stop()
        retiring = asyncio.create_task(retirement.retire(WS, PIPELINE, [worker_id]))
        await asyncio.sleep(AWAY_S)
        assert not retiring.done(), "the retirement ended while Redis was away"
        redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port=redis.port)
        asked = False
        for _ in range(200):  # the worker drains once asked, as a remote one does
            with contextlib.suppress(RegistryUnavailable):  # until the client sees it back
                last = next(b for b in registry.workers(WS, PIPELINE) if b.worker_id == worker_id)
                if asked := registry.stop_requested(last):
                    beat(registry, retired, worker_id, "Stopped")
                    break
            await asyncio.sleep(0.05)
        await retiring
        await retirement.wait()
        left = set(await topic_names(settings.worker_settings()))
        return registry.workers(WS, PIPELINE), left, asked

    try:
        beats, left, asked = asyncio.run(scenario())
    finally:
        redis.stop()
    assert asked, "the worker was never asked to stop"
    assert beats == []  # forgotten once it stopped
    assert not {t.name for t in own} & left


def test_a_stopping_server_does_not_wait_for_redis(kafka_service: Service, tmp_path: Path) -> None:
    redis, settings, registry = own_redis(kafka_service, tmp_path)
    retired = Deployment(workspace=WS, pipeline=PIPELINE, version="1")
    beat(registry, retired, "retire-redis-away-1-w1", "Running")
    redis.stop()

    async def scenario() -> bool:
        retirement = new_retirement(settings, registry)
        retirement.retire_in_background(WS, PIPELINE, ["retire-redis-away-1-w1"])
        await asyncio.sleep(2 * REDIS_RETRY_S)
        closing = asyncio.create_task(retirement.close())
        await asyncio.wait([closing], timeout=5 * REDIS_RETRY_S)
        return closing.done()

    assert asyncio.run(scenario()), "close() waited for Redis to come back"
