"""What the embedded broker (Tansu) offers for exactly-once delivery: neither the
idempotent producer nor transactions. So weir does not rely on them; repeats after a
crash are marked instead (streams/claims.py, README "Delivery guarantees"). If this
test starts failing, Tansu began to support them: revisit that choice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from control.embedded import Service


@pytest.mark.parametrize("options", [{"enable_idempotence": True},
                                     {"transactional_id": "weir-exactly-once-probe"}],
                         ids=["idempotent", "transactional"])
def test_the_embedded_broker_refuses_producer_ids(kafka_service: Service,
                                                   options: dict[str, Any]) -> None:
    async def start() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_service.address,
                                    request_timeout_ms=5000, **options)
        try:
            await producer.start()  # asks the broker for a producer id (InitProducerId)
        finally:
            await producer.stop()

    with pytest.raises(KafkaError):
        asyncio.run(asyncio.wait_for(start(), 30))
