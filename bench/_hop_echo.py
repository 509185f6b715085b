"""The echo process of `bench_client_hop`: a worker's hop with nothing but the Kafka client.

It reads each record of `hop.in` and sends its value to the same partition of `hop.out`,
on aiokafka (weir's client) or librdkafka (confluent-kafka), and commits its input as weir's
workers do: in transactions of ~300 ms (`--transactions`, Apache Kafka), or offsets every
~100 ms beside the sends (at least once). It prints "ready" once its partitions are
assigned.

    python bench/_hop_echo.py aiokafka|confluent BOOTSTRAP GROUP FETCH_WAIT_MS [--transactions]
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sys
import threading
import time
from typing import Any

IN, OUT = "hop.in", "hop.out"
TRANSACTION_S = 0.3
"""How long a transaction stays open (weir's `commit_interval_uncommitted_ms`)."""
COMMIT_S = 0.1
"""How often the at-least-once echo commits its offsets."""
ASSIGNED_TIMEOUT_S = 60.0


async def aiokafka_echo(bootstrap: str, group: str, fetch_wait_ms: int, transactions: bool) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        IN,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        fetch_max_wait_ms=fetch_wait_ms,
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=0,
        enable_idempotence=transactions,
        transactional_id=f"{group}-echo" if transactions else None,
    )
    await consumer.start()
    await producer.start()
    deadline = time.monotonic() + ASSIGNED_TIMEOUT_S
    while not consumer.assignment() and time.monotonic() < deadline:
        await consumer.getmany(timeout_ms=100)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    last, offsets = loop.time(), {}
    if transactions:
        await producer.begin_transaction()
    while True:
        fetched = await consumer.getmany(timeout_ms=500)
        sends = []
        for tp, records in fetched.items():
            for record in records:
                sends.append(await producer.send(OUT, record.value, partition=tp.partition))
            offsets[tp] = records[-1].offset + 1
        if sends:
            await asyncio.gather(*sends)
        if offsets and loop.time() - last >= (TRANSACTION_S if transactions else COMMIT_S):
            if transactions:
                await producer.send_offsets_to_transaction(offsets, group)
                await producer.commit_transaction()
                await producer.begin_transaction()
            else:
                await consumer.commit(offsets)
            last, offsets = loop.time(), {}


async def confluent_echo(
    bootstrap: str, group: str, fetch_wait_ms: int, transactions: bool
) -> None:
    """librdkafka's calls block, so its consumer runs on a thread of its own that hands
    fetched messages to the event loop, and a second thread serves delivery reports, the
    way an asyncio worker would use it."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    loop = asyncio.get_running_loop()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
            "fetch.wait.max.ms": fetch_wait_ms,
            "isolation.level": "read_committed",
            "enable.auto.offset.store": False,
        }
    )
    producer_config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 0,
        "enable.idempotence": transactions,
    }
    if transactions:
        producer_config["transactional.id"] = f"{group}-echo"
    producer = Producer(producer_config)
    if transactions:
        producer.init_transactions()
        producer.begin_transaction()
    consumer.subscribe([IN])
    deadline = time.monotonic() + ASSIGNED_TIMEOUT_S
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.1)
    group_metadata = consumer.consumer_group_metadata()  # stable: no rebalance in a round
    fetched: asyncio.Queue[list[Any]] = asyncio.Queue()
    # A call on the consumer from another thread waits until this thread's poll returns
    # (up to its timeout), so the loop leaves its offsets here and this thread stores them.
    processed: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()

    def consume() -> None:
        committed = time.monotonic()
        while True:
            while not processed.empty():
                consumer.store_offsets(offsets=processed.get())
            if not transactions and time.monotonic() - committed >= COMMIT_S:
                with contextlib.suppress(KafkaException):  # nothing stored since the last
                    consumer.commit(asynchronous=True)
                committed = time.monotonic()
            first = consumer.poll(0.5)
            if first is not None:
                batch = [first, *consumer.consume(num_messages=499, timeout=0)]
                loop.call_soon_threadsafe(fetched.put_nowait, batch)

    def serve_deliveries() -> None:
        while True:
            producer.poll(0.5)

    threading.Thread(target=consume, daemon=True).start()
    threading.Thread(target=serve_deliveries, daemon=True).start()
    print("ready", flush=True)
    last, offsets = loop.time(), {}
    while True:
        try:
            batch = await asyncio.wait_for(fetched.get(), 0.5)
        except TimeoutError:
            batch = []
        sends = []
        for message in batch:
            if message.error() is not None:
                continue
            delivered = loop.create_future()

            def report(_error: object, _message: object, delivered: Any = delivered) -> None:
                loop.call_soon_threadsafe(delivered.set_result, None)

            producer.produce(
                OUT, message.value(), partition=message.partition(), on_delivery=report
            )
            sends.append(delivered)
            offsets[message.partition()] = message.offset() + 1
        if sends:
            await asyncio.gather(*sends)
        if offsets and loop.time() - last >= (TRANSACTION_S if transactions else COMMIT_S):
            positions = [TopicPartition(IN, p, o) for p, o in offsets.items()]
            if transactions:

                def commit(positions: list[Any] = positions) -> None:
                    producer.send_offsets_to_transaction(positions, group_metadata)
                    producer.commit_transaction()
                    producer.begin_transaction()

                await loop.run_in_executor(None, commit)
            else:
                processed.put(positions)
            last, offsets = loop.time(), {}


def main() -> None:
    client, bootstrap, group, fetch_wait_ms = sys.argv[1:5]
    transactions = "--transactions" in sys.argv[5:]
    echo = aiokafka_echo if client == "aiokafka" else confluent_echo
    asyncio.run(echo(bootstrap, group, int(fetch_wait_ms), transactions))


if __name__ == "__main__":
    main()
