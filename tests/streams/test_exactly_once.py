"""Exactly once on Apache Kafka (streams/transactions.py ExactlyOnce,
streams/aiokafka_internals/transactions.py), on the real broker: each chunk's answers and
input offsets commit together, a worker restarted after a crash fences its predecessor's open
transaction, a worker a rebalance replaced cannot commit offsets, and a partition's next owner
reads no offset a transaction still commits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from control.embedded import Service
from streams.aiokafka_internals import transaction_forgotten
from streams.transactions import ExactlyOnce
from streams.errors import DeliveryFailed
from streams.loop import StageLoop
from streams.messages import Envelope
from tests.streams._loops import TOPICS, loops, run_until, send_rows
from tests.streams._transactions import committed_answers, worker_clients


async def _vanish(loop: StageLoop) -> None:
    """Cut a loop's connections as a killed process would: its group membership lapses
    after the session timeout, its open transaction stays open on the broker."""
    assert loop._consumer is not None and len(loop._producers) == 2
    loop._consumer._coordinator._heartbeat_task.cancel()
    await loop._consumer._client.close()
    for producer in loop._producers:
        await producer.client.close()


async def test_a_crashed_workers_open_transaction_is_never_seen_and_its_input_runs_once(
    kafka_only: None, kafka_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    """A worker runs half the input and commits; then it takes more and "dies" with its
    transaction open (its process is gone: nothing is flushed, nothing aborted). Its
    restart (same transactional id) fences it: what the dead one sent is never read
    committed, and every request is answered exactly once."""
    bootstrap, name = kafka_service.address, "eos-crash"
    output, source = TOPICS.output("ws", name).name, TOPICS.input("ws", name).name
    x = np.random.default_rng(5).random((40, 10), dtype=np.float32)
    [first] = await loops(bootstrap, name, tmp_path, diabetes_onnx, exactly_once=True)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await send_rows(producer, source, x[:20], partitions=4)
        await run_until(first, asyncio.ensure_future(committed_answers(bootstrap, output, 20)))
        [dead] = await loops(bootstrap, name, tmp_path, diabetes_onnx, exactly_once=True)
        await dead.start()
        stop = asyncio.Event()
        running = asyncio.create_task(dead.run(stop))
        await send_rows(producer, source, x[20:], partitions=4, first=20)
        while dead._counters.processed < 5:  # it is running the second half, uncommitted...
            await asyncio.sleep(0.01)
        running.cancel()  # ...when it dies: no flush, no abort, no goodbye to the group
        await asyncio.gather(running, return_exceptions=True)
        await _vanish(dead)
        [restarted] = await loops(bootstrap, name, tmp_path, diabetes_onnx, exactly_once=True)
        await run_until(
            restarted,
            asyncio.ensure_future(committed_answers(bootstrap, output, 40, timeout_s=60)),
        )
    finally:
        await producer.stop()
    answers = await committed_answers(bootstrap, output, 40, timeout_s=10)
    assert sorted(a.request_id for a in answers) == sorted(f"r{i}" for i in range(40))
    assert not any(a.redelivered for a in answers)  # nothing to mark: there are no repeats


async def test_a_worker_whose_group_moved_on_cannot_commit_offsets(
    kafka_only: None, kafka_service: Service
) -> None:
    """KIP-447: the transactional offset commit carries the consumer's group generation; a
    stale one is refused and the transaction aborts, its records never read committed."""
    bootstrap = kafka_service.address
    async with worker_clients(bootstrap, "eos-fence") as (consumer, (producer, _), tp):
        async with producer.transaction():  # the current generation: accepted
            await producer.send("ws.eos-fence.out", b"kept")
            await producer.send_offsets_to_transaction({tp: 7}, "eos-fence")
            assert not transaction_forgotten(producer)
        assert await consumer.committed(tp) == 7
        consumer._coordinator.generation -= 1  # as if a rebalance had replaced this worker
        await producer.begin_transaction()
        await producer.send("ws.eos-fence.out", b"never seen")
        with pytest.raises(KafkaError, match="ILLEGAL_GENERATION"):
            await producer.send_offsets_to_transaction({tp: 9}, "eos-fence")
        assert transaction_forgotten(producer)  # so its abort will not reach the broker
        await producer.abort_transaction()
        assert await consumer.committed(tp) == 7
    seen = await committed_answers(bootstrap, "ws.eos-fence.out", 1, timeout_s=5)
    assert len(seen) == 1  # "kept"; the aborted record is not read committed


async def test_a_transaction_the_group_refused_is_never_committed_later(
    kafka_only: None, kafka_service: Service
) -> None:
    """A worker whose group moved on has its commit refused (DeliveryFailed), and stays
    failed: its records are never read committed, not even when something asks it to go on
    and commit again (a rebalance's flush swallows the error; the worker must restart, and
    its successor's InitProducerId aborts the transaction the broker still holds open)."""
    bootstrap, output = kafka_service.address, "ws.eos-refused.out"
    async with worker_clients(bootstrap, "eos-refused") as (consumer, producers, tp):
        delivery = ExactlyOnce(producers, consumer, "eos-refused", interval_s=30.0)
        consumer._coordinator.generation -= 1  # as if a rebalance had replaced this worker
        lost = Envelope("lost").headers()
        await delivery.send(output, b"never seen", key=None, partition=0, headers=lost)
        delivery.done({tp: 1})
        with pytest.raises(DeliveryFailed, match="moved on"):
            await delivery.flush()
        consumer._coordinator.generation += 1  # current again (as after rejoining)
        kept = Envelope("later").headers()
        with pytest.raises(DeliveryFailed):
            await delivery.send(output, b"later", key=None, partition=0, headers=kept)
            delivery.done({tp: 2})
            await delivery.flush()
        assert await consumer.committed(tp) is None
    seen = await committed_answers(bootstrap, output, 1, timeout_s=5)
    assert "lost" not in [a.request_id for a in seen]


async def test_a_due_transaction_commits_beside_the_loop_and_the_next_commits_after_it(
    kafka_only: None, kafka_service: Service
) -> None:
    """A commit takes ~20-30 ms on Apache Kafka, and the loop does not wait for it: a due
    transaction commits on its producer while the next records go out on the other one.
    The next transaction commits only after it, so offsets and answers stay in order."""
    bootstrap, output = kafka_service.address, "ws.eos-beside.out"
    async with worker_clients(bootstrap, "eos-beside") as (consumer, producers, tp):
        delivery = ExactlyOnce(producers, consumer, "eos-beside", interval_s=0.0)
        for offset, name in enumerate(("first", "second", "third"), 1):
            await delivery.send(output, name.encode(), key=None, partition=0, headers=[])
            delivery.done({tp: offset})
            await delivery.commit_if_due(idle=False)  # due at once (interval 0)
            assert not delivery.transaction_open
            assert delivery.pending  # handed over: the commit has not ended yet
        await delivery.flush()
        assert not delivery.pending
        assert await consumer.committed(tp) == 3
    seen = await committed_answers(bootstrap, output, 3, timeout_s=5)
    assert len(seen) == 3


async def test_a_commit_that_fails_beside_the_loop_fails_the_worker_and_nothing_commits_after(
    kafka_only: None, kafka_service: Service
) -> None:
    """A commit refused beside the loop (the group moved on) fails the delivery, as one the
    loop waited for would: `run()` raises (the worker restarts), and the transaction sent
    on the other producer meanwhile never commits: its offsets would skip the refused
    transaction's input."""
    bootstrap, output = kafka_service.address, "ws.eos-refused-beside.out"
    async with worker_clients(bootstrap, "eos-refused-beside") as (consumer, producers, tp):
        delivery = ExactlyOnce(producers, consumer, "eos-refused-beside", interval_s=0.0)
        background = asyncio.create_task(delivery.run())
        consumer._coordinator.generation -= 1  # as if a rebalance had replaced this worker
        await delivery.send(output, b"lost", key=None, partition=0, headers=[])
        delivery.done({tp: 1})
        await delivery.commit_if_due(idle=False)
        await delivery.send(output, b"after it", key=None, partition=0, headers=[])
        delivery.done({tp: 2})
        with pytest.raises(DeliveryFailed, match="moved on"):
            await asyncio.wait_for(background, 30)
        consumer._coordinator.generation += 1  # current again (as after rejoining)
        with pytest.raises(DeliveryFailed):
            await delivery.flush()
        assert await consumer.committed(tp) is None
    assert await committed_answers(bootstrap, output, 1, timeout_s=3) == []


async def test_a_partitions_next_owner_reads_no_offset_a_transaction_still_commits(
    kafka_only: None, kafka_service: Service
) -> None:
    """KIP-447: offsets committed in a transaction are read only once it has finished. A
    new owner that read the offset before them (Kafka's answer without `require_stable`,
    until the commit markers are written) would answer those records a second time."""
    bootstrap = kafka_service.address
    async with worker_clients(bootstrap, "eos-stable") as (consumer, (producer, _), tp):
        await producer.begin_transaction()
        await producer.send_offsets_to_transaction({tp: 7}, "eos-stable")
        read = asyncio.ensure_future(consumer.committed(tp))
        await asyncio.sleep(1.0)
        assert not read.done()  # neither the pending offset nor the one before it
        await producer.commit_transaction()
        assert await asyncio.wait_for(read, 30) == 7
