"""control/supervision.py against a real redis-server: what supervision reads while all is well."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from control import supervision
from control.embedded import Service
from control.local_workers import LocalWorkers
from control.records import Deployment
from control.registry import Registry
from control.settings import Settings
from control.supervision import Supervisor


def _commands(registry: Registry) -> int:
    return int(registry.redis.info("stats")["total_commands_processed"])


async def _supervise(supervisor: Supervisor, rounds: int) -> None:
    task = asyncio.create_task(supervisor.run())
    await asyncio.sleep(rounds * supervision.SUPERVISE_EVERY_S)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_while_no_local_worker_died_supervision_leaves_the_registry_alone(
    redis_service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(redis_service.address)
    registry.redis.flushdb()
    registry.set_deployment(Deployment(workspace="default", pipeline="p", version="1"))
    supervisor = Supervisor(registry, LocalWorkers(Settings(home=tmp_path), registry), {})
    monkeypatch.setattr(supervision, "SUPERVISE_EVERY_S", 0.01)
    before = _commands(registry)
    asyncio.run(_supervise(supervisor, rounds=50))
    # One round looks over the remote workers (a few commands); the others read nothing.
    assert _commands(registry) - before < 10
