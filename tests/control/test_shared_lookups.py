"""control/shared_lookups.py, and the gateway's deployment lookup that uses it: a blocking
lookup runs in a thread, shared by the callers asking meanwhile, and a Redis that does not
answer (a real redis-server, frozen with SIGSTOP) does not hold the server's event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import pytest

from control.embedded import start_redis
from control.errors import RegistryUnavailable
from control.gateway import Gateway
from control.registry import Registry
from control.settings import Settings
from control.shared_lookups import SharedLookups
from streams.topics import TopicMap

TICK_S = 0.05


class Gate:
    """A blocking lookup that waits until it is let through; counts its calls."""

    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer
        self.calls = 0
        self.opened = threading.Event()

    def __call__(self, key: str) -> str:
        self.calls += 1
        self.opened.wait(10)
        if isinstance(self.answer, Exception):
            raise self.answer
        return f"{self.answer} {key}"


async def test_callers_asking_for_one_key_meanwhile_share_one_lookup() -> None:
    gate = Gate("found")
    lookups = SharedLookups[str, str](gate)
    waiting = [asyncio.create_task(lookups.get("a")) for _ in range(5)]
    other = asyncio.create_task(lookups.get("b"))
    await asyncio.sleep(TICK_S)
    gate.opened.set()
    assert await asyncio.gather(*waiting, other) == [*["found a"] * 5, "found b"]
    assert gate.calls == 2
    assert await lookups.get("a") == "found a" and gate.calls == 3  # done: asked again


async def test_a_cancelled_caller_leaves_the_lookup_to_the_others_and_errors_reach_all() -> None:
    gate = Gate(LookupError("no such key"))
    lookups = SharedLookups[str, str](gate)
    first, second = (asyncio.create_task(lookups.get("a")) for _ in range(2))
    await asyncio.sleep(TICK_S)
    first.cancel()
    gate.opened.set()
    with pytest.raises(LookupError, match="no such key"):
        await second
    assert first.cancelled() and gate.calls == 1


async def test_a_frozen_redis_does_not_hold_the_event_loop(tmp_path: Path) -> None:
    """The gateway's lookup waits on a Redis that does not answer for the client's timeout;
    meanwhile the loop serves on (before, the lookup ran on the loop and held it)."""
    redis = start_redis(tmp_path / "redis")
    settings = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:1", redis_url=redis.address)
    gateway = Gateway(
        settings, Registry(redis.address), TopicMap.load(), settings.worker_settings()
    )
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(TICK_S)
            ticks += 1

    os.kill(redis.proc.pid, signal.SIGSTOP)
    ticking = asyncio.create_task(tick())
    try:
        with pytest.raises(RegistryUnavailable):
            await gateway.deployment("default", "frozen")
    finally:
        ticking.cancel()
        os.kill(redis.proc.pid, signal.SIGCONT)
        redis.stop()
    assert ticks >= 5, f"the event loop ran {ticks} times while the lookup waited"
