"""streams/loop.py without a broker: where a stage's chunks run."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.pipeline import load_pipeline
from engine.runtimes.base import sha256_file
from streams.loop import CLIENT_TURNS, SLOW_S, StageLoop
from streams.plan import Layout, worker_stages
from streams.settings import WorkerSettings
from streams.stage import StepCounters
from streams.topics import TopicMap


@pytest.fixture
def loop(diabetes_onnx: Path) -> StageLoop:
    ref = ModelRef(name="diabetes", version="1", sha=sha256_file(diabetes_onnx), runtime="onnx")
    pipeline = load_pipeline(
        "v1", PipelineSpec(steps=[ModelStep(model=ref)]), lambda _: diabetes_onnx
    )
    settings = WorkerSettings(kafka_bootstrap="127.0.0.1:1")
    stages = worker_stages(pipeline, Layout("ws", "p", "d1"), TopicMap.load(), "main", settings)
    return StageLoop(stages, settings, group_id="g", client_id="c", counters=StepCounters())


def _where(sleep_s: float = 0.0) -> str:
    time.sleep(sleep_s)
    return threading.current_thread().name


async def test_quick_chunks_run_on_the_loop_and_slow_ones_on_the_compute_thread(
    loop: StageLoop,
) -> None:
    here = threading.current_thread().name
    topic = loop.topics[0]
    assert (await loop._call(topic, _where)).startswith("weir-compute")  # unknown yet: thread
    # Once a call was quick (the thread's start may make the first one slow), it runs inline.
    places = [await loop._call(topic, _where) for _ in range(5)]
    assert places[-1] == here and places.count(here) >= 4
    assert await loop._call(topic, _where, SLOW_S * 2) == here  # found slow only afterwards...
    assert (await loop._call(topic, _where)).startswith("weir-compute")  # ...so back it goes
    await loop.close()


async def test_before_long_inline_chunks_of_a_queue_the_kafka_clients_get_the_event_loop(
    loop: StageLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("streams.loop.FETCH_AHEAD_S", 0.05)  # above a busy machine's hiccups
    topic = loop.topics[0]
    turns: list[int] = []

    async def client() -> None:  # like aiokafka's fetcher: a few steps, each after a yield
        for _ in range(CLIENT_TURNS):
            turns.append(1)
            await asyncio.sleep(0)

    for _ in range(3):  # unknown at first: on the thread; then inline
        await loop._call(topic, _where)
    task = asyncio.create_task(client())
    await loop._let_clients_send(topic, queued=10)
    assert not turns  # quick chunks: straight on
    await loop._call(topic, time.sleep, 0.08)  # inline (under QUICK_S), but long
    await loop._let_clients_send(topic, queued=1)
    assert not turns  # a lone message: answered first
    await loop._let_clients_send(topic, queued=2)
    assert len(turns) == CLIENT_TURNS
    await task
    await loop.close()
