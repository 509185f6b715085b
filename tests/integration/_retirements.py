"""A Retirement as the deployer makes one, on the session's broker and a Redis of the test's
own (its workers are heartbeats that the test writes: tests.control._heartbeats)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from control.embedded import Service, start_redis
from control.local_workers import LocalWorkers
from control.registry import Registry
from control.retirement import Retirement
from control.settings import Settings
from streams.topics import TopicMap


def own_redis(kafka_service: Service, folder: Path) -> tuple[Service, Settings, Registry]:
    """A Redis in `folder` (stop it when done), the settings that name it, its registry."""
    redis = start_redis(folder / "redis")
    settings = Settings(home=folder, kafka_bootstrap=kafka_service.address, redis_url=redis.address)
    return redis, settings, Registry(redis.address)


def new_retirement(settings: Settings, registry: Registry) -> Retirement:
    return Retirement(
        settings, registry, TopicMap.load(), LocalWorkers(settings, registry), {}, asyncio.Lock()
    )
