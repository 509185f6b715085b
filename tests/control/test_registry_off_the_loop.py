"""What the server reads from the registry per inference request, on a schedule, or for a
console that polls, is read in a thread: a Redis that does not answer (a real redis-server
frozen with SIGSTOP) holds the gateway's deployment lookup, the Prometheus scrape, the
console's lag and series, or the supervisor's round, never the event loop that serves every
other request meanwhile. Before, each of them held the loop for the Redis client's timeout."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from control import redis_client, supervision
from control.embedded import Service, start_redis
from control.errors import RegistryUnavailable
from control.gateway import Gateway
from control.local_workers import LocalWorkers
from control.records import Deployment
from control.registry import Registry
from control.settings import Settings
from control.supervision import Supervisor
from streams.topics import TopicMap
from tests.control._asgi import InProcess, in_process

T = TypeVar("T")
TICK_S = 0.05
TIMEOUT_S = 0.5
"""The Redis client's timeout here (2 s in service): how long a call waits on a frozen Redis."""


@pytest.fixture
def redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """A redis-server of this test's own (it is frozen), its clients quick to give up."""
    monkeypatch.setattr(redis_client, "REDIS_TIMEOUT_S", TIMEOUT_S)
    service = start_redis(tmp_path / "redis")
    yield service
    os.kill(service.proc.pid, signal.SIGCONT)
    service.stop()


@pytest.fixture
async def server(redis: Service, tmp_path: Path) -> AsyncIterator[InProcess]:
    async for served in in_process(redis, tmp_path / "home"):
        served.state.registry.get_or_create_pipeline("default", "p")
        served.state.registry.set_deployment(
            Deployment(workspace="default", pipeline="p", version="v1")
        )
        yield served


async def loop_ticks_while(redis: Service, work: Awaitable[T]) -> tuple[int, T | Exception]:
    """How often the event loop ran a 50 ms tick while `work` waited on the frozen Redis,
    and what `work` returned or raised."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(TICK_S)
            ticks += 1

    os.kill(redis.proc.pid, signal.SIGSTOP)
    ticking = asyncio.create_task(tick())
    try:
        done: T | Exception = await work
    except Exception as exc:
        done = exc
    finally:
        ticking.cancel()
        os.kill(redis.proc.pid, signal.SIGCONT)
    return ticks, done


# Two tries of TIMEOUT_S each (redis_client): ~20 ticks of a free loop, none of a held one.
LEAST_TICKS = 8


async def test_a_frozen_redis_holds_the_gateways_lookup_not_the_loop(
    redis: Service, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:1", redis_url=redis.address)
    gateway = Gateway(
        settings, Registry(redis.address), TopicMap.load(), settings.worker_settings()
    )
    ticks, outcome = await loop_ticks_while(redis, gateway.deployment("default", "frozen"))
    assert isinstance(outcome, RegistryUnavailable), outcome
    assert ticks >= LEAST_TICKS, f"the event loop ran {ticks} times while the lookup waited"


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/metrics", {}),
    ("GET", "/pipelines/p/lag", {}),
    ("GET", "/pipelines/p/series", {}),
    ("POST", "/pipelines/p/deploy", {"json": {}}),
    ("POST", "/pipelines/p/undeploy", {}),
    ("DELETE", "/pipelines/p", {}),
    ("POST", "/models/m", {"params": {"filename": "m.onnx"}, "content": b"onnx"}),
    ("POST", "/models/m/configure", {"json": {"runtime": "onnx"}}),
]
"""Requests the server answers on its event loop (async routes) that read the registry."""


@pytest.mark.parametrize(("method", "path", "sent"), REQUESTS)
async def test_a_frozen_redis_holds_the_request_that_reads_it_not_the_loop(
    server: InProcess, redis: Service, method: str, path: str, sent: dict[str, Any]
) -> None:
    ticks, response = await loop_ticks_while(redis, server.http.request(method, path, **sent))
    assert not isinstance(response, Exception), response
    assert response.status_code == 503, response.text
    assert "Redis" in response.json()["message"]
    assert ticks >= LEAST_TICKS, f"the event loop ran {ticks} times while {path} waited"


async def test_a_frozen_redis_holds_the_supervisors_round_not_the_loop(
    redis: Service,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its first round looks over the remote workers, which reads the registry."""
    registry = Registry(redis.address)
    workers = LocalWorkers(Settings(home=tmp_path), registry)
    monkeypatch.setattr(supervision, "LOOK_EVERY_S", 0.01)
    monkeypatch.setattr(supervision, "SUPERVISE_EVERY_S", 0.01)
    supervising = asyncio.create_task(Supervisor(registry, workers, {}).run())
    failed = "worker supervision (reading the registry) failed"

    async def round_failed() -> None:
        while failed not in caplog.text:
            await asyncio.sleep(0.01)

    try:
        ticks, _ = await loop_ticks_while(redis, asyncio.wait_for(round_failed(), 10))
    finally:
        supervising.cancel()
        await asyncio.gather(supervising, return_exceptions=True)
    assert ticks >= LEAST_TICKS, f"the event loop ran {ticks} times while a round waited"
