"""A Kafka consumer whose background fetch task dies (aio-libs/aiokafka#796), on a real broker:
check_fetcher says so, the log agent replaces its consumer and logs every answer once, and a
worker's loop fails (so the worker exits and is restarted) instead of idling for good."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from control.embedded import Service
from streams.admin import ensure_topics
from streams.log_agent import LogAgent
from streams.aiokafka_internals import check_fetcher, stop_consumer
from streams.errors import FetcherDied
from streams.logstore import LogStore
from streams.loop import StageLoop
from streams.plan import Layout, worker_stages
from streams.settings import WorkerSettings
from streams.stage import StepCounters
from streams.topics import TopicMap
from tests.streams._answers import answers, send_answers, diabetes_pipeline

TOPICS = TopicMap.load()


def _kill_fetch_task(consumer: AIOKafkaConsumer) -> None:
    """What aiokafka's fetch task does on the assertion it fails mid-rebalance."""

    async def fails() -> None:
        try:
            raise AssertionError("assignment is not None and assignment.active")
        except AssertionError as exc:
            raise KafkaError("Unexpected error during data retrieval") from exc

    consumer._fetcher._fetch_task.cancel()
    consumer._fetcher._fetch_task = asyncio.ensure_future(fails())


async def test_check_fetcher_raises_once_the_fetch_task_has_died(kafka_service: Service) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_service.address, group_id="fetcher-died")
    await consumer.start()
    try:
        check_fetcher(consumer)  # alive: nothing to say
        _kill_fetch_task(consumer)
        await asyncio.sleep(0)
        with pytest.raises(FetcherDied, match="fetch task failed: KafkaError"):
            check_fetcher(consumer)
    finally:
        await stop_consumer(consumer)
        assert consumer._closed


async def _logged(store: LogStore, pipeline: str, want: int, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        count = store.count("ws", pipeline)
        if count >= want or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.2)


async def test_the_log_agent_replaces_a_consumer_whose_fetch_task_died(
    kafka_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    bootstrap = kafka_service.address
    output = TOPICS.output("ws", "fetcher-died")
    topic = output.name
    await ensure_topics(WorkerSettings(kafka_bootstrap=bootstrap), [output])
    store = LogStore(tmp_path / "logs")
    agent = LogAgent(WorkerSettings(kafka_bootstrap=bootstrap), TOPICS, store)
    await agent.start()
    try:
        await send_answers(bootstrap, topic, answers(diabetes_onnx, 0, 20))
        assert await _logged(store, "fetcher-died", 20) == 20
        first = agent._consumer
        assert first is not None
        _kill_fetch_task(first)
        await send_answers(bootstrap, topic, answers(diabetes_onnx, 20, 20))
        assert await _logged(store, "fetcher-died", 40) == 40
        assert agent._consumer is not first  # replaced, not left returning nothing
        ids = store.query("ws", "fetcher-died", limit=None).column("request_id").to_pylist()
        assert sorted(ids) == sorted(f"r{i}" for i in range(40))  # each once
    finally:
        await agent.stop()


async def test_a_worker_loop_whose_fetch_task_died_fails_so_the_worker_is_restarted(
    kafka_service: Service, diabetes_onnx: Path
) -> None:
    pipeline = diabetes_pipeline(diabetes_onnx)
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    stages = worker_stages(
        pipeline, Layout("ws", "fetcher-died-worker", "d1"), TOPICS, "main", settings
    )
    await ensure_topics(
        settings,
        [TOPICS.input("ws", "fetcher-died-worker"), TOPICS.output("ws", "fetcher-died-worker")],
    )
    loop = StageLoop(
        stages, settings, group_id="fetcher-died-worker", client_id="w", counters=StepCounters()
    )
    await loop.start()
    try:
        assert loop._consumer is not None
        _kill_fetch_task(loop._consumer)
        with pytest.raises(FetcherDied):  # the worker exits 1; its deployer restarts it
            await asyncio.wait_for(loop.run(asyncio.Event()), timeout=10)
    finally:
        await loop.close()
