"""streams/clients.py: the fetch wait, and what the broker tells it of records still unread."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer.subscription_state import SubscriptionState

import streams.clients
from control.embedded import Service
from streams.admin import ensure_topics
from streams.aiokafka_internals import unread_records
from streams.clients import FetchPace, connection_options
from streams.settings import WorkerSettings
from streams.topics import TopicSpec


class _Fetcher:
    def __init__(self) -> None:
        self._fetch_max_wait_ms = 0
        self._records: dict[TopicPartition, object] = {}
        """The fetched records it holds, by partition."""


class _Consumer:
    """What FetchPace reads of an aiokafka consumer: its fetcher and its assignment (aiokafka's
    own subscription state, assigned by hand)."""

    def __init__(self, subscription: SubscriptionState | None = None) -> None:
        self._fetcher = _Fetcher()
        self._subscription = subscription or SimpleNamespace(subscription=None)


def _assigned(tps: list[TopicPartition], at: int) -> tuple[_Consumer, list[Any]]:
    """A consumer assigned `tps` by hand, each at position `at`, and their states (call
    from a coroutine: aiokafka's subscription state wants a running loop)."""
    subscription = SubscriptionState()
    subscription.assign_from_user(set(tps))
    states = [subscription.subscription.assignment.state_value(tp) for tp in tps]
    for state in states:
        state.reset_to(at)
    return _Consumer(subscription), states


def _busy_pace(consumer: _Consumer) -> FetchPace:
    """A pace that stays busy through a test: 1 ms waits, 80 ms at most."""
    return FetchPace(
        consumer,  # type: ignore[arg-type]
        WorkerSettings(
            fetch_wait_ms=5, busy_fetch_wait_ms=1, busy_for_ms=1000, idle_fetch_wait_ms=80
        ),
    )


def test_the_fetch_wait_is_short_while_records_flow_and_long_once_idle() -> None:
    consumer = _Consumer()
    pace = FetchPace(
        consumer,
        WorkerSettings(  # type: ignore[arg-type]
            fetch_wait_ms=5,
            busy_fetch_wait_ms=1,
            busy_for_ms=50,
            idle_fetch_wait_ms=80,
            idle_after_s=0.2,
        ),
    )
    pace.saw(False)  # just started: counts as after a record
    assert consumer._fetcher._fetch_max_wait_ms == 1
    time.sleep(0.06)
    pace.saw(False)
    assert consumer._fetcher._fetch_max_wait_ms == 5
    pace.saw(True)
    assert consumer._fetcher._fetch_max_wait_ms == 1
    pace.saw(False)  # just after a record: still busy
    assert consumer._fetcher._fetch_max_wait_ms == 1
    time.sleep(0.25)
    pace.saw(False)  # idle for long: the longest wait
    assert consumer._fetcher._fetch_max_wait_ms == 80
    pace.saw(True)
    assert consumer._fetcher._fetch_max_wait_ms == 1


def test_aiokafka_still_reads_the_fetch_wait_where_the_pace_sets_it() -> None:
    import inspect

    from aiokafka.consumer.fetcher import Fetcher

    assert "self._fetch_max_wait_ms" in inspect.getsource(Fetcher)


def _answered_empty(state: Any) -> None:
    """A fetch response for the partition came, with no records (aiokafka stamps its time)."""
    state.timestamp = (state.timestamp or 0) + 1


def test_fetches_that_leave_records_on_the_broker_make_the_next_waits_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> list[int]:
        tp = TopicPartition("in", 0)
        consumer, (state,) = _assigned([tp], at=100)
        pace = _busy_pace(consumer)
        waits = []
        pace.saw(True)
        waits.append(consumer._fetcher._fetch_max_wait_ms)
        state.lso = 140  # the broker says 40 records lie past the position ...
        for _ in range(16):  # ... yet each fetch comes back empty
            _answered_empty(state)
            pace.saw(False)
            waits.append(consumer._fetcher._fetch_max_wait_ms)
        state.consumed_to(120)
        pace.saw(True)  # records come: the floor holds for FLOOR_HOLD_S ...
        waits.append(consumer._fetcher._fetch_max_wait_ms)
        monkeypatch.setattr(streams.clients, "FLOOR_HOLD_S", 0.0)
        for _ in range(3):  # ... then halves with each fetch that brings records
            pace.saw(True)
            waits.append(consumer._fetcher._fetch_max_wait_ms)
        state.consumed_to(140)  # read to the end: an empty fetch leaves the wait alone
        _answered_empty(state)
        pace.saw(False)
        waits.append(consumer._fetcher._fetch_max_wait_ms)
        state.lso = 150
        state.pause()  # a paused partition's records are not wanted
        for _ in range(3):
            _answered_empty(state)
            pace.saw(False)
        waits.append(consumer._fetcher._fetch_max_wait_ms)
        return waits

    # From the second empty answer in a row, each doubles the wait, up to the idle wait (80 ms).
    expected = [
        1,
        1,
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        80,
        80,
        80,
        80,
        80,
        80,
        80,
        80,
        80,
        40,
        20,
        10,
        10,
        10,
    ]
    assert asyncio.run(scenario()) == expected


def test_only_empty_answers_at_one_position_make_the_wait_longer() -> None:
    async def scenario() -> list[int]:
        tps = [TopicPartition("in", p) for p in range(3)]
        consumer, states = _assigned(tps, at=0)
        for state in states:
            state.lso = 1000
            _answered_empty(state)
        pace = _busy_pace(consumer)
        pace.saw(True)
        waits = []
        consumer._fetcher._records[tps[1]] = object()  # fetched, waiting its turn
        for round_ in range(1, 7):
            states[0].consumed_to(10 * round_)  # its records come each round
            _answered_empty(states[0])
            _answered_empty(states[1])
            pace.saw(True)  # the third partition's fetch has not come back yet
            waits.append(consumer._fetcher._fetch_max_wait_ms)
        _answered_empty(states[2])
        pace.saw(True)
        waits.append(consumer._fetcher._fetch_max_wait_ms)
        _answered_empty(states[2])  # the second empty answer in a row at one position
        pace.saw(True)
        waits.append(consumer._fetcher._fetch_max_wait_ms)
        return waits

    assert asyncio.run(scenario()) == [1, 1, 1, 1, 1, 1, 1, 2]


def test_a_reader_knows_from_the_broker_that_records_are_left_to_read(
    broker: str, kafka_service: Service
) -> None:
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    tp = TopicPartition(f"unread-{broker}", 0)

    async def scenario() -> list[bool]:
        await ensure_topics(settings, [TopicSpec(tp.topic, 1)])
        producer = AIOKafkaProducer(**connection_options(settings))
        reader = AIOKafkaConsumer(**connection_options(settings), enable_auto_commit=False)
        await producer.start()
        await reader.start()
        try:
            for n in range(10):
                await producer.send_and_wait(tp.topic, b"%d" % n, partition=0)
            reader.assign([tp])
            await reader.seek_to_beginning(tp)
            seen = [unread_records(reader)]  # nothing fetched yet: the broker has said nothing
            taken = 0
            while taken < 3:
                fetched = await reader.getmany(timeout_ms=1000, max_records=3 - taken)
                taken += sum(map(len, fetched.values()))
            seen.append(unread_records(reader))  # 7 records left
            reader.pause(tp)
            seen.append(unread_records(reader))  # ... in a paused partition: not wanted now
            reader.resume(tp)
            while taken < 10:
                fetched = await reader.getmany(timeout_ms=1000)
                taken += sum(map(len, fetched.values()))
            seen.append(unread_records(reader))  # read to the end
            return seen
        finally:
            await producer.stop()
            await reader.stop()

    assert asyncio.run(scenario()) == [False, True, False, False]
