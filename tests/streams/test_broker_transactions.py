"""What each embedded broker offers for exactly-once delivery. Apache Kafka gives producer
ids for idempotence and transactions, so weir's workers run exactly once there
(streams/transactions.py); Tansu refuses both, so weir delivers at least once and marks
repeats (streams/claims.py). If the Tansu leg starts failing, Tansu began to support them:
revisit that choice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from control.embedded import Service
from streams.admin import resolved, supports_transactions
from streams.settings import WAKING_FETCH_WAIT_MS, WAKING_IDLE_FETCH_WAIT_MS, WorkerSettings


@pytest.mark.parametrize(
    "options",
    [{"enable_idempotence": True}, {"transactional_id": "weir-exactly-once-probe"}],
    ids=["idempotent", "transactional"],
)
def test_only_apache_kafka_gives_producer_ids(
    broker: str, kafka_service: Service, options: dict[str, Any]
) -> None:
    async def start() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_service.address, request_timeout_ms=5000, **options
        )
        try:
            await producer.start()  # asks the broker for a producer id (InitProducerId)
        finally:
            await producer.stop()

    if broker == "kafka":
        asyncio.run(asyncio.wait_for(start(), 30))
    else:
        with pytest.raises(KafkaError):
            asyncio.run(asyncio.wait_for(start(), 30))


def test_workers_run_exactly_once_where_the_broker_has_transactions(
    broker: str, kafka_service: Service
) -> None:
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    assert asyncio.run(supports_transactions(settings)) is (broker == "kafka")
    assert asyncio.run(resolved(settings)).exactly_once is (broker == "kafka")
    chosen = settings.model_copy(update={"exactly_once": False})
    assert asyncio.run(resolved(chosen)).exactly_once is False  # a setting is not overruled


def test_fetch_waits_are_long_where_the_broker_answers_waiting_fetches_early(
    broker: str, kafka_service: Service
) -> None:
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    waits = asyncio.run(resolved(settings))
    names = ("fetch_wait_ms", "busy_fetch_wait_ms", "idle_fetch_wait_ms")
    expected = (
        [WAKING_FETCH_WAIT_MS] * 2 + [WAKING_IDLE_FETCH_WAIT_MS]
        if broker == "kafka"
        else [getattr(settings, name) for name in names]
    )  # Tansu: short, then longer
    assert [getattr(waits, name) for name in names] == expected
    chosen = asyncio.run(
        resolved(WorkerSettings(kafka_bootstrap=kafka_service.address, fetch_wait_ms=7))
    )
    assert chosen.fetch_wait_ms == 7  # a setting is not overruled
