"""Fixtures shared by the tests of streams/."""

from __future__ import annotations

import pytest


@pytest.fixture
def kafka_only(broker: str) -> None:
    if broker != "kafka":
        pytest.skip(
            "transactions: Apache Kafka only (Tansu refuses them: test_broker_transactions.py)"
        )
