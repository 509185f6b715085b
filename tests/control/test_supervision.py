"""control/supervision.py against a real redis-server: what supervision reads while all is well."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from control import supervision, worker_processes
from control.embedded import Service
from control.local_workers import LocalWorker, LocalWorkers
from control.records import Deployment
from control.registry import Registry
from control.settings import Settings
from control.supervision import Supervisor
from control.worker_processes import WorkerLaunch, WorkerRecord


def _commands(registry: Registry) -> int:
    return int(registry.redis.info("stats")["total_commands_processed"])


async def _supervise(supervisor: Supervisor, rounds: int) -> None:
    task = asyncio.create_task(supervisor.run())
    await asyncio.sleep(rounds * supervision.SUPERVISE_EVERY_S)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _look_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """A round every 10 ms, whether exits wake the supervisor or not."""
    monkeypatch.setattr(supervision, "SUPERVISE_EVERY_S", 0.01)
    monkeypatch.setattr(supervision, "LOOK_EVERY_S", 0.01)


def test_while_no_local_worker_died_supervision_leaves_the_registry_alone(
    redis_service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(redis_service.address)
    registry.redis.flushdb()
    registry.set_deployment(Deployment(workspace="default", pipeline="p", version="1"))
    supervisor = Supervisor(registry, LocalWorkers(Settings(home=tmp_path), registry), {})
    _look_often(monkeypatch)
    before = _commands(registry)
    asyncio.run(_supervise(supervisor, rounds=50))
    # One round looks over the remote workers (a few commands); the others read nothing.
    assert _commands(registry) - before < 10


def _adopt_self(workers: LocalWorkers, worker_id: str) -> None:
    """Adopt this test's own process as a worker (one that runs; nothing signals it)."""
    launch = WorkerLaunch(worker_id, "default", "p", "1", "d1", args=[], env={})
    started = worker_processes.start_time(os.getpid())
    assert started is not None
    workers.adopt(WorkerRecord(launch=launch, pid=os.getpid(), start_time=started))


def test_workers_taken_on_or_out_while_they_are_looked_over_break_no_loop(
    redis_service: Service, tmp_path: Path
) -> None:
    """`terminate` takes workers out from a thread while the event loop looks them over."""
    registry = Registry(redis_service.address)
    workers = LocalWorkers(Settings(home=tmp_path), registry)
    for worker_id in ("w1", "w2"):
        _adopt_self(workers, worker_id)
    by_value, by_id = iter(workers.values()), iter(workers)
    assert next(by_value).worker_id == "w1" and next(by_id) == "w1"
    _adopt_self(workers, "w3")
    assert next(by_value).worker_id == "w2" and next(by_id) == "w2"


def test_a_round_that_fails_does_not_end_supervision(
    redis_service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(redis_service.address)
    workers = LocalWorkers(Settings(home=tmp_path), registry)
    looked: list[int] = []

    def values_failing_once() -> list[LocalWorker]:
        looked.append(1)
        if len(looked) == 1:
            raise RuntimeError("dictionary changed size during iteration")
        return []

    monkeypatch.setattr(workers, "values", values_failing_once)
    _look_often(monkeypatch)
    asyncio.run(_supervise(Supervisor(registry, workers, {}), rounds=20))
    assert len(looked) > 5
