"""streams.aiokafka_internals.retry_next_transaction_sooner: while the broker still writes
the last commit's markers it refuses a new transaction's first partition
(CONCURRENT_TRANSACTIONS); aiokafka then asks again after NEXT_TRANSACTION_RETRY_S, not its
own 20 ms. The answer is handed to aiokafka's own handler, as its sender would."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import aiokafka.errors as Errors
import aiokafka.producer.sender as aiokafka_sender
import pytest
from aiokafka.producer.sender import AddPartitionsToTxnHandler
from aiokafka.structs import TopicPartition

from streams.aiokafka_internals import NEXT_TRANSACTION_RETRY_S, retry_next_transaction_sooner


@pytest.fixture
def aiokafkas_own_backoff() -> Iterator[None]:
    """aiokafka's wait as it ships, put back afterwards (the setting is process-wide)."""
    before = aiokafka_sender.BACKOFF_OVERRIDE
    aiokafka_sender.BACKOFF_OVERRIDE = 0.02
    yield
    aiokafka_sender.BACKOFF_OVERRIDE = before


def _wait_after_refusal(*, partitions_in_transaction: set[TopicPartition]) -> float | None:
    """How long aiokafka's sender waits before asking again, after the broker answered
    AddPartitionsToTxn with CONCURRENT_TRANSACTIONS."""
    sender = SimpleNamespace(
        _retry_backoff=0.1, _txn_manager=SimpleNamespace(txn_partitions=partitions_in_transaction)
    )
    handler = AddPartitionsToTxnHandler(sender, [TopicPartition("answers", 0)])
    refused = SimpleNamespace(errors=[("answers", [(0, Errors.ConcurrentTransactions.errno)])])
    wait: float | None = handler.handle_response(refused)
    return wait


def test_a_new_transactions_first_partition_is_asked_for_again_sooner(
    aiokafkas_own_backoff: None,
) -> None:
    assert _wait_after_refusal(partitions_in_transaction=set()) == 0.02  # aiokafka's own
    retry_next_transaction_sooner()
    assert _wait_after_refusal(partitions_in_transaction=set()) == NEXT_TRANSACTION_RETRY_S


def test_a_transaction_already_under_way_keeps_the_usual_backoff(
    aiokafkas_own_backoff: None,
) -> None:
    """Past its first partition, a refusal is not the last commit's markers: aiokafka's
    retry backoff stands."""
    retry_next_transaction_sooner()
    under_way = {TopicPartition("answers", 1)}
    assert _wait_after_refusal(partitions_in_transaction=under_way) == 0.1
