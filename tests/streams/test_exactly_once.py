"""Exactly once on Apache Kafka (streams/delivery.py ExactlyOnce, streams/aiokafka_internals.py), on
the real broker: each chunk's answers and input offsets commit together, a worker restarted
after a crash fences its predecessor's open transaction, a worker a rebalance replaced cannot
commit offsets, and a partition's next owner reads no offset a transaction still commits."""

from __future__ import annotations

import asyncio
from typing import Any
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from control.embedded import Service
from streams.admin import ensure_topics
from streams.aiokafka_internals import (
    transaction_forgotten,
    transactional_offsets,
)
from streams.delivery import ExactlyOnce
from streams.errors import DeliveryFailed
from streams.loop import StageLoop
from streams.messages import Envelope
from streams.settings import WorkerSettings
from streams.topics import TopicSpec
from tests.streams._loops import TOPICS, loops, run_until, send_rows


@pytest.fixture
def kafka_only(broker: str) -> None:
    if broker != "kafka":
        pytest.skip(
            "transactions: Apache Kafka only (Tansu refuses them: test_broker_transactions.py)"
        )


async def _committed_answers(
    bootstrap: str, topic: str, count: int, timeout_s: float = 30.0
) -> list[Envelope]:
    """The answers on `topic` a read_committed reader sees, once `count` came (or time ran
    out), and a little after, so a repeat would be seen too."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    answers: list[Envelope] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        quiet_until = None
        while asyncio.get_running_loop().time() < deadline:
            fetched = await consumer.getmany(timeout_ms=200)
            answers += [Envelope.parse(r.headers) for batch in fetched.values() for r in batch]
            if len(answers) >= count and quiet_until is None:
                quiet_until = asyncio.get_running_loop().time() + 1.0
            if quiet_until is not None and asyncio.get_running_loop().time() > quiet_until:
                break
    finally:
        await consumer.stop()
    return answers


@asynccontextmanager
async def _worker_clients(
    bootstrap: str, name: str, *, isolation_level: str = "read_uncommitted"
) -> AsyncIterator[
    tuple[AIOKafkaConsumer, tuple[AIOKafkaProducer, AIOKafkaProducer], TopicPartition]
]:
    """A worker's pair of clients on topics `ws.<name>.in` and `.out`: a consumer in group
    `name`, assigned the input's one partition, and two transactional producers (a worker
    sends on one while the other commits) whose offset commits carry the consumer's
    generation."""
    topic = TopicSpec(f"ws.{name}.in", 1)
    await ensure_topics(
        WorkerSettings(kafka_bootstrap=bootstrap), [topic, TopicSpec(f"ws.{name}.out", 1)]
    )
    consumer = AIOKafkaConsumer(
        topic.name,
        bootstrap_servers=bootstrap,
        group_id=name,
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    producers = tuple(
        AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{name}-{n}")
        for n in (1, 2)
    )
    await consumer.start()
    for producer in producers:
        await producer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for producer in producers:
            transactional_offsets(producer, consumer)
        yield consumer, producers, TopicPartition(topic.name, 0)
    finally:
        for producer in producers:
            await producer.stop()
        await consumer.stop()


async def _vanish(loop: StageLoop) -> None:
    """Cut a loop's connections as a killed process would: its group membership lapses
    after the session timeout, its open transaction stays open on the broker."""
    assert loop._consumer is not None and loop._producer is not None
    assert loop._second_producer is not None
    loop._consumer._coordinator._heartbeat_task.cancel()
    await loop._consumer._client.close()
    for producer in (loop._producer, loop._second_producer):
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
        await run_until(first, asyncio.ensure_future(_committed_answers(bootstrap, output, 20)))
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
            asyncio.ensure_future(_committed_answers(bootstrap, output, 40, timeout_s=60)),
        )
    finally:
        await producer.stop()
    answers = await _committed_answers(bootstrap, output, 40, timeout_s=10)
    assert sorted(a.request_id for a in answers) == sorted(f"r{i}" for i in range(40))
    assert not any(a.redelivered for a in answers)  # nothing to mark: there are no repeats


async def test_a_worker_whose_group_moved_on_cannot_commit_offsets(
    kafka_only: None, kafka_service: Service
) -> None:
    """KIP-447: the transactional offset commit carries the consumer's group generation; a
    stale one is refused and the transaction aborts, its records never read committed."""
    bootstrap = kafka_service.address
    async with _worker_clients(bootstrap, "eos-fence") as (consumer, (producer, _), tp):
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
    seen = await _committed_answers(bootstrap, "ws.eos-fence.out", 1, timeout_s=5)
    assert len(seen) == 1  # "kept"; the aborted record is not read committed


async def test_a_transaction_the_group_refused_is_never_committed_later(
    kafka_only: None, kafka_service: Service
) -> None:
    """A worker whose group moved on has its commit refused (DeliveryFailed), and stays
    failed: its records are never read committed, not even when something asks it to go on
    and commit again (a rebalance's flush swallows the error; the worker must restart, and
    its successor's InitProducerId aborts the transaction the broker still holds open)."""
    bootstrap, output = kafka_service.address, "ws.eos-refused.out"
    async with _worker_clients(bootstrap, "eos-refused") as (consumer, producers, tp):
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
    seen = await _committed_answers(bootstrap, output, 1, timeout_s=5)
    assert "lost" not in [a.request_id for a in seen]


async def test_a_due_transaction_commits_beside_the_loop_and_the_next_commits_after_it(
    kafka_only: None, kafka_service: Service
) -> None:
    """A commit takes ~20-30 ms on Apache Kafka, and the loop does not wait for it: a due
    transaction commits on its producer while the next records go out on the other one.
    The next transaction commits only after it, so offsets and answers stay in order."""
    bootstrap, output = kafka_service.address, "ws.eos-beside.out"
    async with _worker_clients(bootstrap, "eos-beside") as (consumer, producers, tp):
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
    seen = await _committed_answers(bootstrap, output, 3, timeout_s=5)
    assert len(seen) == 3


async def test_a_commit_that_fails_beside_the_loop_fails_the_worker_and_nothing_commits_after(
    kafka_only: None, kafka_service: Service
) -> None:
    """A commit refused beside the loop (the group moved on) fails the delivery, as one the
    loop waited for would: `run()` raises (the worker restarts), and the transaction sent
    on the other producer meanwhile never commits: its offsets would skip the refused
    transaction's input."""
    bootstrap, output = kafka_service.address, "ws.eos-refused-beside.out"
    async with _worker_clients(bootstrap, "eos-refused-beside") as (consumer, producers, tp):
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
    assert await _committed_answers(bootstrap, output, 1, timeout_s=3) == []


async def test_a_partitions_next_owner_reads_no_offset_a_transaction_still_commits(
    kafka_only: None, kafka_service: Service
) -> None:
    """KIP-447: offsets committed in a transaction are read only once it has finished. A
    new owner that read the offset before them (Kafka's answer without `require_stable`,
    until the commit markers are written) would answer those records a second time."""
    bootstrap = kafka_service.address
    async with _worker_clients(bootstrap, "eos-stable") as (consumer, (producer, _), tp):
        await producer.begin_transaction()
        await producer.send_offsets_to_transaction({tp: 7}, "eos-stable")
        read = asyncio.ensure_future(consumer.committed(tp))
        await asyncio.sleep(1.0)
        assert not read.done()  # neither the pending offset nor the one before it
        await producer.commit_transaction()
        assert await asyncio.wait_for(read, 30) == 7


async def test_a_worker_behind_its_input_keeps_its_transaction_open_longer(
    kafka_only: None, kafka_service: Service
) -> None:
    """While committed input waits unread, a transaction commits `behind_interval_s` after
    it began, not `interval_s` (a saturated worker stops for fewer commits); once the
    input is read, at `interval_s` again."""
    bootstrap = kafka_service.address
    async with _worker_clients(bootstrap, "eos-behind", isolation_level="read_committed") as (
        consumer,
        producers,
        tp,
    ):
        consumer.seek(tp, 0)
        feeder = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await feeder.start()
        try:  # one batch: the consumer's first fetch holds all three
            batch = feeder.create_batch()
            for i in range(3):
                batch.append(key=None, value=f"request {i}".encode(), timestamp=None)
            await (await feeder.send_batch(batch, tp.topic, partition=0))
        finally:
            await feeder.stop()
        first = await consumer.getmany(tp, timeout_ms=10_000, max_records=1)
        assert len(first[tp]) == 1
        delivery = ExactlyOnce(
            producers, consumer, "eos-behind", interval_s=0.2, behind_interval_s=60.0
        )
        await delivery.send(
            "ws.eos-behind.out", b"a", key=None, partition=0, headers=Envelope("a").headers()
        )
        delivery.done({tp: 1})
        await asyncio.sleep(0.3)
        await delivery.commit_if_due(idle=False)
        assert delivery.transaction_open  # two requests wait unread: not due for a minute
        rest: list[Any] = []
        while len(rest) < 2:
            rest += (await consumer.getmany(tp, timeout_ms=10_000)).get(tp, [])
        delivery.done({tp: 3})
        await delivery.commit_if_due(idle=False)
        assert not delivery.transaction_open  # caught up: 0.2 s after it began, long past
        await delivery.flush()  # the commit, beside
        assert await consumer.committed(tp) == 3


async def test_an_idle_worker_commits_its_transaction_after_the_interval_not_at_once(
    kafka_only: None, kafka_service: Service
) -> None:
    """Records that come while a transaction is open join it (no new transaction, whose
    AddPartitionsToTxn Apache Kafka refuses until the last commit's markers are written);
    an idle loop waits no longer than until the transaction is due, and it commits then."""
    bootstrap = kafka_service.address
    async with _worker_clients(bootstrap, "eos-cadence") as (consumer, producers, tp):
        delivery = ExactlyOnce(producers, consumer, "eos-cadence", interval_s=1.0)
        assert delivery.wait_ms(100) == 100  # nothing open: the loop's own wait
        await delivery.send(
            "ws.eos-cadence.out",
            b"first",
            key=None,
            partition=0,
            headers=Envelope("first").headers(),
        )
        delivery.done({tp: 1})
        await delivery.commit_if_due(idle=True)
        assert delivery.transaction_open  # idle, but the transaction is not due yet
        assert 0 < delivery.wait_ms(5000) <= 1000
        await delivery.send(
            "ws.eos-cadence.out",
            b"second",
            key=None,
            partition=0,
            headers=Envelope("second").headers(),
        )
        delivery.done({tp: 2})
        await asyncio.sleep(delivery.wait_ms(5000) / 1000 + 0.01)
        assert delivery.wait_ms(5000) == 0
        await delivery.commit_if_due(idle=True)
        assert not delivery.transaction_open  # handed over to commit
        await delivery.flush()  # the commit, beside
        assert await consumer.committed(tp) == 2
    seen = await _committed_answers(bootstrap, "ws.eos-cadence.out", 2, timeout_s=5)
    assert len(seen) == 2


async def test_a_transaction_of_answers_only_uncommitted_readers_await_stays_open_longer(
    kafka_only: None, kafka_service: Service
) -> None:
    """Answers to the HTTP gateway (marked REPLY_UNCOMMITTED: its reply reader reads them as
    they are sent) hold their transaction open for `uncommitted_interval_s`; one answer
    someone may await committed, or a record to a topic another worker reads committed (a
    boundary, a challenger's), brings back `interval_s`."""
    bootstrap, output = kafka_service.address, "ws.eos-uncommitted.out"
    http = Envelope("http", reply_uncommitted=True).headers()
    async with _worker_clients(bootstrap, "eos-uncommitted") as (consumer, producers, tp):

        def delivery_to(**read_committed: set[str]) -> ExactlyOnce:
            return ExactlyOnce(
                producers,
                consumer,
                "eos-uncommitted",
                interval_s=0.2,
                uncommitted_interval_s=60.0,
                **read_committed,
            )

        delivery = delivery_to()
        await delivery.send(output, b"http", key=None, partition=0, headers=http)
        delivery.done({tp: 1})
        await asyncio.sleep(0.3)
        await delivery.commit_if_due(idle=True)
        assert delivery.transaction_open  # past interval_s, but nobody waits for this commit
        assert delivery.wait_ms(5000) == 5000
        kafka = Envelope("kafka").headers()
        await delivery.send(output, b"kafka", key=None, partition=0, headers=kafka)
        delivery.done({tp: 2})
        assert delivery.wait_ms(5000) == 0
        await delivery.commit_if_due(idle=True)
        assert not delivery.transaction_open  # handed over to commit
        await delivery.flush()  # the commit, beside
        assert await consumer.committed(tp) == 2
        await delivery.send(output, b"http again", key=None, partition=0, headers=http)
        delivery.done({tp: 3})
        await asyncio.sleep(0.3)
        await delivery.commit_if_due(idle=True)
        assert delivery.transaction_open  # the next transaction starts unawaited again
        await delivery.flush()
        # a boundary's next stage, a challenger's shadow worker: they read committed
        for offset, read_committed in enumerate(({"hops": {output}}, {"fans_out_to": {output}}), 4):
            other = delivery_to(**read_committed)
            await other.send(output, b"on", key=None, partition=0, headers=http)
            other.done({tp: offset})
            await asyncio.sleep(0.3)
            await other.commit_if_due(idle=False)
            assert not other.transaction_open, read_committed
            await other.flush()
    seen = await _committed_answers(bootstrap, output, 5, timeout_s=5)
    assert [a.request_id for a in seen] == ["http", "kafka", "http", "http", "http"]


async def test_a_transaction_that_sent_to_a_boundary_commits_as_soon_as_the_loop_is_idle(
    kafka_only: None, kafka_service: Service
) -> None:
    """A record for the next stage of a cut chain (a boundary topic, read committed) is not
    held for the interval: the loop fetches without waiting while one is open, and its
    first idle turn commits it, or the first once `hop_gap_s` has passed since the last
    such commit. Sends elsewhere keep the interval."""
    bootstrap = kafka_service.address
    hop = "ws.eos-hop.out"
    async with _worker_clients(bootstrap, "eos-hop") as (consumer, producers, tp):
        delivery = ExactlyOnce(
            producers, consumer, "eos-hop", interval_s=60.0, hops={hop}, hop_gap_s=0.5
        )
        await ensure_topics(
            WorkerSettings(kafka_bootstrap=bootstrap), [TopicSpec("ws.eos-hop.dlq", 1)]
        )
        await delivery.send("ws.eos-hop.dlq", b"elsewhere", key=None, partition=0, headers=[])
        delivery.done({tp: 1})
        await delivery.commit_if_due(idle=True)
        assert delivery.transaction_open  # no boundary record: the interval holds
        assert delivery.wait_ms(5000) > 0
        await delivery.send(hop, b"on", key=None, partition=0, headers=Envelope("on").headers())
        delivery.done({tp: 2})
        assert delivery.wait_ms(5000) == 0  # fetch what waits, without waiting for more
        await delivery.commit_if_due(idle=False)
        assert delivery.transaction_open  # records still to run go in the same transaction
        await delivery.commit_if_due(idle=True)
        assert not delivery.transaction_open  # handed over to commit
        await delivery.flush()  # the commit, beside
        assert await consumer.committed(tp) == 2
        assert delivery.wait_ms(5000) == 5000  # the next transaction starts afresh
        await delivery.send(
            hop, b"again", key=None, partition=0, headers=Envelope("again").headers()
        )
        delivery.done({tp: 3})
        await delivery.commit_if_due(idle=True)
        assert delivery.transaction_open  # committed a moment ago: not before the gap
        assert 0 < delivery.wait_ms(5000) <= 500
        await asyncio.sleep(delivery.wait_ms(5000) / 1000 + 0.01)
        await delivery.commit_if_due(idle=True)
        assert not delivery.transaction_open
        await asyncio.sleep(0.5)
        await delivery.send("ws.eos-hop.dlq", b"elsewhere", key=None, partition=0, headers=[])
        await delivery.flush()  # a commit without a boundary record starts no gap
        await delivery.send(hop, b"third", key=None, partition=0, headers=[])
        await delivery.commit_if_due(idle=True)
        assert not delivery.transaction_open
        await delivery.flush()
    seen = await _committed_answers(bootstrap, hop, 3, timeout_s=5)
    assert [a.request_id for a in seen[:2]] == ["on", "again"]
    assert len(seen) == 3
