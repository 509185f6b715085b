"""The one package of weir that reaches into aiokafka's private attributes. Each reach-in
works around something aiokafka's public API does not offer; pyproject.toml pins aiokafka to
the versions tested, and `check_aiokafka` fails a worker at start-up, not mid-stream, if
the methods used are gone. Tests may reach in too, to stage faults.

- `fetches`: the consumer's fetch wait per fetch, fetch responses with holes, the fetch
  routine woken when a fetch ends (a race in aiokafka 0.14), what a consumer has still to
  read (aiokafka gives a partition's position only through a coroutine that may fetch, and
  tells nothing of what it buffered), and a fetch task that died silently.
- `groups`: metadata of a topic the consumer does not subscribe to, a metadata refresh on
  demand, the member id to rejoin as, and requests to a group's coordinator.
- `transactions`: a sooner retry of a new transaction's first partition, a transaction
  aiokafka dropped after an error, and transactional offsets as KIP-447 asks (the requests,
  which aiokafka lacks, in `kip447_requests`).

Example:
    check_aiokafka()
    await producer.start(); await consumer.start()
    transactional_offsets(producer, consumer)   # before consumer.subscribe(...)
    records = await consumer.getmany(timeout_ms=100)
    check_fetcher(consumer)
    set_fetch_wait(consumer, 5)
    ...
    await stop_consumer(consumer)
"""

from __future__ import annotations

from typing import Any

import aiokafka
import aiokafka.consumer.fetcher as aiokafka_fetcher
import aiokafka.producer.sender as aiokafka_sender
from aiokafka.producer.sender import TxnOffsetCommitHandler

from streams.aiokafka_internals.fetches import (
    check_fetcher,
    read_holes_again,
    set_fetch_wait,
    stop_consumer,
    unfetched_positions,
    unread_records,
    wake_fetcher_when_a_fetch_ends,
)
from streams.aiokafka_internals.groups import (
    ask_group_coordinator,
    member_id,
    refresh_metadata,
    rejoin_as,
    topic_partitions,
)
from streams.aiokafka_internals.transactions import (
    NEXT_TRANSACTION_RETRY_S,
    retry_next_transaction_sooner,
    transaction_forgotten,
    transactional_offsets,
)

__all__ = [
    "NEXT_TRANSACTION_RETRY_S",
    "ask_group_coordinator",
    "check_aiokafka",
    "check_fetcher",
    "member_id",
    "read_holes_again",
    "refresh_metadata",
    "rejoin_as",
    "retry_next_transaction_sooner",
    "set_fetch_wait",
    "stop_consumer",
    "topic_partitions",
    "transaction_forgotten",
    "transactional_offsets",
    "unfetched_positions",
    "unread_records",
    "wake_fetcher_when_a_fetch_ends",
]


def check_aiokafka() -> None:
    """Fail at start-up, not mid-stream, if aiokafka no longer has the methods that this
    package reaches into (pyproject.toml pins the versions they were tested with; the
    instance attributes it uses are read as the clients start)."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.consumer.subscription_state import Assignment, TopicPartitionState
    from aiokafka.producer.sender import Sender
    from aiokafka.producer.transaction_manager import TransactionManager

    wanted: dict[Any, tuple[str, ...]] = {
        AIOKafkaClient: ("_wait_on_metadata", "force_metadata_update"),
        GroupCoordinator: ("_do_fetch_commit_offsets", "_send_req", "coordinator_dead"),
        Assignment: ("tps", "state_value"),
        TopicPartitionState: ("has_valid_position", "position"),
        Sender: ("_do_txn_offset_commit", "_find_coordinator"),
        TxnOffsetCommitHandler: ("create_request", "handle_response"),
        TransactionManager: ("is_empty_transaction",),
        aiokafka_sender: ("BACKOFF_OVERRIDE",),
        aiokafka_fetcher: ("PartitionRecords",),
        aiokafka_fetcher.Fetcher: ("_notify",),
    }
    missing = [
        f"{owner.__name__}.{name}"
        for owner, names in wanted.items()
        for name in names
        if not hasattr(owner, name)
    ]
    if missing:
        raise RuntimeError(
            f"aiokafka {aiokafka.__version__} lacks {missing}, which weir "
            "relies on: install the version pyproject.toml names"
        )
