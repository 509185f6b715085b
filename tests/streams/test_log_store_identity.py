"""Each log store has log agents of its own: two stacks on one broker each log every answer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path


from control.embedded import Service
from streams.admin import ensure_topics
from streams.log_agent import LogAgent
from streams.logstore import LogStore
from streams.settings import WorkerSettings
from streams.topics import TopicMap
from tests.streams._answers import answers, send_answers, stored_ids
from tests.streams.test_logstore import rows

TOPICS = TopicMap.load()


def test_a_store_keeps_its_id_and_a_new_one_takes_rows_from_now(tmp_path: Path) -> None:
    before_ms = int(time.time() * 1000)
    store_id, since_ms = LogStore(tmp_path / "a").identity()
    assert LogStore(tmp_path / "a").identity() == (store_id, since_ms)  # read, not made again
    assert before_ms <= since_ms <= int(time.time() * 1000)
    assert LogStore(tmp_path / "b").identity()[0] != store_id


def test_a_store_that_held_rows_before_it_had_an_id_takes_every_answer(tmp_path: Path) -> None:
    LogStore(tmp_path).append("ws", "p", rows(3))
    assert LogStore(tmp_path).identity()[1] == 0


async def test_two_stores_on_one_broker_each_log_every_answer(
    kafka_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    """Every server's log agent was in one group (`weir.log-agent`): a second stack on the
    same broker took partitions of the first one's result topics and logged their rows in
    its own store, so the first one's logs lacked them (CI, test_observability on Kafka)."""
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    output = TOPICS.output("ws", "two-stores")
    assert output.partitions == 4
    await ensure_topics(settings, [output])
    stores = [LogStore(tmp_path / name) for name in ("first", "second")]
    agents = [LogAgent(settings, TOPICS, store) for store in stores]
    await asyncio.gather(*(agent.start() for agent in agents))
    try:
        results = answers(diabetes_onnx, 0, 12)
        await send_answers(kafka_service.address, output.name, results, partitions=4)
        for agent, store in zip(agents, stores, strict=True):
            assert await agent.sync("ws", "two-stores", timeout_s=15.0)
            assert stored_ids(store, "two-stores") == sorted(rid for rid, _ in results)
    finally:
        await asyncio.gather(*(agent.stop() for agent in agents))


async def test_a_new_store_does_not_take_the_answers_given_before_it(
    kafka_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    output = TOPICS.output("ws", "new-store")
    await ensure_topics(settings, [output])
    await send_answers(
        kafka_service.address, output.name, answers(diabetes_onnx, 0, 4), partitions=4
    )
    await asyncio.sleep(0.05)  # a later millisecond than the answers' timestamps
    store = LogStore(tmp_path / "logs")
    agent = LogAgent(settings, TOPICS, store)
    await agent.start()
    try:
        later = answers(diabetes_onnx, 4, 4)
        await send_answers(kafka_service.address, output.name, later, partitions=4)
        assert await agent.sync("ws", "new-store", timeout_s=15.0)
        assert stored_ids(store, "new-store") == sorted(rid for rid, _ in later)
    finally:
        await agent.stop()
