"""streams/placement.py: where a stage's chunks run."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from streams.placement import CLIENT_TURNS, SLOW_S, Placement


@pytest.fixture
def placement() -> Iterator[Placement]:
    placement = Placement()
    yield placement
    placement.close()


def _where(sleep_s: float = 0.0) -> str:
    time.sleep(sleep_s)
    return threading.current_thread().name


async def test_quick_chunks_run_on_the_loop_and_slow_ones_on_the_compute_thread(
    placement: Placement,
) -> None:
    here = threading.current_thread().name
    topic = "ws.p.in"
    assert (await placement.call(topic, _where)).startswith("weir-compute")  # unknown yet: thread
    # Once a call was quick (the thread's start may make the first one slow), it runs inline.
    places = [await placement.call(topic, _where) for _ in range(5)]
    assert places[-1] == here and places.count(here) >= 4
    assert await placement.call(topic, _where, SLOW_S * 2) == here  # found slow only afterwards...
    assert (await placement.call(topic, _where)).startswith("weir-compute")  # ...so back it goes


async def test_before_long_inline_chunks_of_a_queue_the_kafka_clients_get_the_event_loop(
    placement: Placement, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("streams.placement.FETCH_AHEAD_S", 0.05)  # above a busy machine's hiccups
    topic = "ws.p.in"
    turns: list[int] = []

    async def client() -> None:  # like aiokafka's fetcher: a few steps, each after a yield
        for _ in range(CLIENT_TURNS):
            turns.append(1)
            await asyncio.sleep(0)

    for _ in range(3):  # unknown at first: on the thread; then inline
        await placement.call(topic, _where)
    task = asyncio.create_task(client())
    await placement.let_clients_send(topic, queued=10)
    assert not turns  # quick chunks: straight on
    await placement.call(topic, time.sleep, 0.08)  # inline (under QUICK_S), but long
    await placement.let_clients_send(topic, queued=1)
    assert not turns  # a lone message: answered first
    await placement.let_clients_send(topic, queued=2)
    assert len(turns) == CLIENT_TURNS
    await task
