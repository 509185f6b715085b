"""The log agent's `sync()` on a real broker: read-your-writes, with transaction markers too.

On Apache Kafka the workers' answers are sent in transactions, and each commit leaves a
marker after the answers: the partition's end is one past the last answer. `sync()` must
see that nothing but markers is left, rather than wait out its timeout (it did: every
log query on Kafka took its 10 s and could answer before the rows were stored).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from control.embedded import Service
from streams.admin import ensure_topics
from streams.log_agent import METADATA_MAX_AGE_MS, LogAgent
from streams.logstore import LogStore
from streams.messages import Envelope
from streams.settings import WorkerSettings
from streams.topics import TopicMap
from tests.streams._answers import answers, send_answers, stored_ids

TOPICS = TopicMap.load()


async def _answered_then_synced(
    broker: str,
    kafka_service: Service,
    agent: LogAgent,
    pipeline: str,
    results: list[tuple[str, bytes]],
    timeout_s: float,
) -> bool:
    """Send `results` to the pipeline's result topic as its worker does (in a transaction on
    Apache Kafka), then `sync()`: whether it returned True within `timeout_s`."""
    topic = TOPICS.output("ws", pipeline).name
    transactional = broker == "kafka"
    await send_answers(
        kafka_service.address, topic, results, transactional=transactional, partitions=1
    )
    return await agent.sync("ws", pipeline, timeout_s=timeout_s)


async def test_sync_returns_once_the_answers_are_stored_markers_or_not(
    broker: str, kafka_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    output = TOPICS.output("ws", "sync-markers")
    await ensure_topics(settings, [output])
    store = LogStore(tmp_path / "logs")
    agent = LogAgent(settings, TOPICS, store)
    await agent.start()
    try:
        results = answers(diabetes_onnx, 0, 5)
        assert await _answered_then_synced(
            broker, kafka_service, agent, "sync-markers", results, 8.0
        )
        assert stored_ids(store, "sync-markers") == [request_id for request_id, _ in results]
    finally:
        await agent.stop()


async def test_sync_waits_for_answers_whose_transaction_is_still_open(
    broker: str, kafka_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    """The HTTP gateway reads answers before their transaction commits, so a caller can
    query the logs before the log agent (reading committed) can see its answer. sync()
    took the partition's end as the last stable offset, short of that answer, and returned
    at once: the query missed the caller's own answer (CI, test_observability on Kafka)."""
    if broker != "kafka":
        pytest.skip("transactions: Apache Kafka only (Tansu refuses them)")
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    output = TOPICS.output("ws", "sync-open")
    await ensure_topics(settings, [output])
    store = LogStore(tmp_path / "logs")
    agent = LogAgent(settings, TOPICS, store)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_service.address, transactional_id="sync-open"
    )
    await agent.start()
    await producer.start()
    try:
        results = answers(diabetes_onnx, 0, 4)
        await producer.begin_transaction()
        for request_id, value in results:
            headers = Envelope(request_id=request_id, version="v1").headers()
            await producer.send_and_wait(output.name, value, headers=headers, partition=0)
        syncing = asyncio.create_task(agent.sync("ws", "sync-open", timeout_s=30.0))
        await asyncio.sleep(1.0)
        assert not syncing.done(), "sync() returned while the answers' transaction was open"
        await producer.commit_transaction()
        assert await syncing
        assert stored_ids(store, "sync-open") == [request_id for request_id, _ in results]
    finally:
        await producer.stop()
        await agent.stop()


async def test_an_unreadable_answer_is_skipped_and_the_next_ones_are_stored(
    kafka_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    """An answer that is not Arrow (a client wrote to the result topic) held up every
    pipeline's logging: the log agent's write failed on it and read it again, for ever."""
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    output = TOPICS.output("ws", "sync-unreadable")
    await ensure_topics(settings, [output])
    store = LogStore(tmp_path / "logs")
    agent = LogAgent(settings, TOPICS, store)
    await agent.start()
    try:
        await send_answers(
            kafka_service.address, output.name, [("bad", b"not arrow")], partitions=1
        )
        assert await agent.sync("ws", "sync-unreadable", timeout_s=8.0)  # written: nothing
        results = answers(diabetes_onnx, 0, 3)
        await send_answers(kafka_service.address, output.name, results, partitions=1)
        assert await agent.sync("ws", "sync-unreadable", timeout_s=8.0)
        assert stored_ids(store, "sync-unreadable") == [request_id for request_id, _ in results]
    finally:
        await agent.stop()


async def test_sync_waits_for_a_pipeline_whose_topics_are_newer_than_the_agents_metadata(
    broker: str, kafka_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    """A query right after a new pipeline's first answer came before the agent's consumer
    knew its topics: sync() found no partitions to wait for, returned at once, and the
    query answered from a store without the row (CI, test_observability and
    test_validations_logs on Kafka). Now sync() waits, and has the consumer look for the
    topics at once (its metadata's age, METADATA_MAX_AGE_MS, is longer than this wait)."""
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    store = LogStore(tmp_path / "logs")
    agent = LogAgent(settings, TOPICS, store)
    await agent.start()
    try:
        output = TOPICS.output("ws", "sync-new-topic")  # made after the agent started
        await ensure_topics(settings, [output])
        results = answers(diabetes_onnx, 0, 3)
        assert await _answered_then_synced(
            broker, kafka_service, agent, "sync-new-topic", results, 15.0
        )
        assert stored_ids(store, "sync-new-topic") == [request_id for request_id, _ in results]
    finally:
        await agent.stop()


async def test_topics_made_after_the_agent_started_are_read_once_it_is_told_to_look(
    broker: str, kafka_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    """What the deployer does after it made a new pipeline's topics: the rows are stored
    without a query asking for them, long before the agent would look by itself."""
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    store = LogStore(tmp_path / "logs")
    await ensure_topics(settings, [TOPICS.output("ws", "there-first")])
    agent = LogAgent(settings, TOPICS, store)
    await agent.start()
    try:
        # Once the agent stores rows it has joined its group with the topics there were.
        await _stored(broker, kafka_service, store, "there-first", answers(diabetes_onnx, 0, 2))
        await ensure_topics(settings, [TOPICS.output("ws", "told-to-look")])
        agent.look_for_new_topics()
        await _stored(broker, kafka_service, store, "told-to-look", answers(diabetes_onnx, 2, 3))
    finally:
        await agent.stop()


async def _stored(
    broker: str,
    kafka_service: Service,
    store: LogStore,
    pipeline: str,
    results: list[tuple[str, bytes]],
) -> None:
    """Send `results` to the pipeline's result topic; fail unless they are stored within half
    the time the agent takes to look for new topics by itself."""
    topic = TOPICS.output("ws", pipeline).name
    transactional = broker == "kafka"
    await send_answers(
        kafka_service.address, topic, results, transactional=transactional, partitions=1
    )
    wanted = sorted(request_id for request_id, _ in results)
    deadline = asyncio.get_running_loop().time() + METADATA_MAX_AGE_MS / 2000
    while stored_ids(store, pipeline) != wanted:
        assert asyncio.get_running_loop().time() < deadline, f"{pipeline}'s rows not stored"
        await asyncio.sleep(0.2)


async def test_sync_of_a_pipeline_without_topics_returns_at_once(
    kafka_service: Service, tmp_path: Path
) -> None:
    agent = LogAgent(
        WorkerSettings(kafka_bootstrap=kafka_service.address), TOPICS, LogStore(tmp_path)
    )
    await agent.start()
    try:
        assert await agent.sync("ws", "never-deployed", timeout_s=15.0)
    finally:
        await agent.stop()
