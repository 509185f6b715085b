"""Retirements wait for drains in threads of their own, not in the event loop's shared pool.

A drain is waited for in a thread for as long as it lasts (minutes, for a worker restarted to
finish it). In the loop's default pool (6 threads on a 2-core machine) a few such waits held
every thread, and every other thread call of the server (the log agent's reads and writes,
the gateway's deployment lookups, compaction) queued behind them.

The workers here are heartbeats in a Redis of the test's own, as `weir worker`s the server
did not start write them: each keeps saying Running until the test lets it stop.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from control.embedded import Service
from control.records import Deployment
from tests.control._heartbeats import beat
from tests.integration._retirements import new_retirement, own_redis

RETIREMENTS = min(32, (os.cpu_count() or 1) + 4) + 2
"""More retirements than the loop's default pool has threads."""


def test_waiting_retirements_leave_the_default_thread_pool_free(
    kafka_service: Service, tmp_path: Path
) -> None:
    redis, settings, registry = own_redis(kafka_service, tmp_path)
    workers = {
        f"drain-wait-{i}": Deployment(workspace="default", pipeline=f"drain-wait-{i}", version="1")
        for i in range(RETIREMENTS)
    }

    async def scenario() -> bool:
        for worker_id, deployment in workers.items():
            beat(registry, deployment, worker_id, "Running")
        retirement = new_retirement(settings, registry)
        for worker_id, deployment in workers.items():
            retirement.retire_in_background("default", deployment.pipeline, [worker_id])
        await asyncio.sleep(1.0)  # every retirement is waiting for its worker now
        probe = asyncio.create_task(asyncio.to_thread(lambda: True))
        await asyncio.wait([probe], timeout=5.0)
        free = probe.done()
        for worker_id, deployment in workers.items():
            beat(registry, deployment, worker_id, "Stopped")
        await retirement.close()
        await probe
        return free

    try:
        assert asyncio.run(scenario()), "a thread call waited behind the retirements' waits"
    finally:
        redis.stop()
