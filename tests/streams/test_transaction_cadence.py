"""When a worker's transaction commits on Apache Kafka (streams/transactions.py ExactlyOnce): at
its interval, not as soon as the loop is idle; later while the worker is behind its input
or while only uncommitted readers await its answers; at once, idle, after a send to a
boundary topic the next stage reads committed."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

from control.embedded import Service
from streams.admin import ensure_topics
from streams.transactions import ExactlyOnce
from streams.messages import Envelope
from streams.settings import WorkerSettings
from streams.topics import TopicSpec
from tests.streams._transactions import committed_answers, worker_clients


async def test_a_worker_behind_its_input_keeps_its_transaction_open_longer(
    kafka_only: None, kafka_service: Service
) -> None:
    """While committed input waits unread, a transaction commits `behind_interval_s` after
    it began, not `interval_s` (a saturated worker stops for fewer commits); once the
    input is read, at `interval_s` again."""
    bootstrap = kafka_service.address
    async with worker_clients(bootstrap, "eos-behind", isolation_level="read_committed") as (
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
    async with worker_clients(bootstrap, "eos-cadence") as (consumer, producers, tp):
        delivery = ExactlyOnce(producers, consumer, "eos-cadence", interval_s=1.0)
        output = "ws.eos-cadence.out"
        assert delivery.wait_ms(100) == 100  # nothing open: the loop's own wait
        await delivery.send(
            output, b"first", key=None, partition=0, headers=Envelope("first").headers()
        )
        delivery.done({tp: 1})
        await delivery.commit_if_due(idle=True)
        assert delivery.transaction_open  # idle, but the transaction is not due yet
        assert 0 < delivery.wait_ms(5000) <= 1000
        await delivery.send(
            output, b"second", key=None, partition=0, headers=Envelope("second").headers()
        )
        delivery.done({tp: 2})
        await asyncio.sleep(delivery.wait_ms(5000) / 1000 + 0.01)
        assert delivery.wait_ms(5000) == 0
        await delivery.commit_if_due(idle=True)
        assert not delivery.transaction_open  # handed over to commit
        await delivery.flush()  # the commit, beside
        assert await consumer.committed(tp) == 2
    seen = await committed_answers(bootstrap, "ws.eos-cadence.out", 2, timeout_s=5)
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
    async with worker_clients(bootstrap, "eos-uncommitted") as (consumer, producers, tp):

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
    seen = await committed_answers(bootstrap, output, 5, timeout_s=5)
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
    async with worker_clients(bootstrap, "eos-hop") as (consumer, producers, tp):
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
    seen = await committed_answers(bootstrap, hop, 3, timeout_s=5)
    assert [a.request_id for a in seen[:2]] == ["on", "again"]
    assert len(seen) == 3
