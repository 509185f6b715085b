"""Where an exactly-once round trip's time goes on Apache Kafka, without the rest of weir.

A fresh embedded Apache Kafka; an echo loop built from weir's own Kafka pieces (the
worker's consumer and transactional producer options, streams.transactions.ExactlyOnce, the
worker loop's order of fetch, send and commit) answers 1-row requests sent open loop at
`--rate`/s (`--commit-interval-ms 0`: each transaction commits as soon as
nothing more has arrived, as before this bench was written). `--at-least-once` runs the
same loop with streams.delivery.AtLeastOnce (no transactions) for comparison.

Per request: the round-trip latency (p50/p99, from when it was due), and in the echo loop
how long each send waited for its acknowledgement (that includes AddPartitionsToTxn, and
its retries while the previous transaction's markers are written: counted), and how long
each commit took; the broker's CPU per request. Saves ``<out>/txn-<UTC timestamp>.json``.

    .venv/bin/python bench/bench_txn.py --rate 50
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.producer import sender as aiokafka_sender
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _kafka_load as kafka
from bench._brokers import start_broker
from bench._results import RESULTS, save
from bench._stack import CpuMeter
from streams.admin import ensure_topics
from streams.clients import consumer_options, producer_options
from streams.aiokafka_internals import transactional_offsets
from streams.delivery import AtLeastOnce
from streams.transactions import ExactlyOnce
from streams.settings import WAKING_FETCH_WAIT_MS, WorkerSettings
from streams.topics import TopicSpec

console = Console(width=None if sys.stdout.isatty() else 160)
IN, OUT, GROUP = "txn-in", "txn-out", "txn-echo"


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ms = np.asarray(values) * 1000
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


class Concurrent:
    """Counts AddPartitionsToTxn answers of CONCURRENT_TRANSACTIONS (the previous
    transaction's markers not yet written), which aiokafka retries after a back-off."""

    def __init__(self) -> None:
        self.count = 0
        handler = aiokafka_sender.AddPartitionsToTxnHandler
        original = handler.handle_response
        counter = self

        def handle_response(self: Any, resp: Any) -> Any:
            if any(code == 51 for _, parts in resp.errors for _, code in parts):
                counter.count += 1
            return original(self, resp)

        handler.handle_response = handle_response


def _timed(producer: AIOKafkaProducer, name: str, stats: dict[str, list[float]]) -> None:
    """Record how long each call of `producer.<name>` takes, in stats[name]."""
    original = getattr(producer, name)
    stats[name] = []

    async def timed(*args: Any) -> Any:
        began = time.perf_counter()
        try:
            return await original(*args)
        finally:
            stats[name].append(time.perf_counter() - began)

    setattr(producer, name, timed)


async def echo(
    settings: WorkerSettings,
    exactly_once: bool,
    interval_s: float,
    stop: asyncio.Event,
    stats: dict[str, list[float]],
) -> None:
    """The worker loop's order of work, with an echo for a model."""
    consumer = AIOKafkaConsumer(
        IN, **consumer_options(settings, GROUP, "echo", exactly_once=exactly_once)
    )
    producers = [
        AIOKafkaProducer(
            **producer_options(
                settings, "echo", transactional_id=f"echo-{n}" if exactly_once else None
            )
        )
        for n in range(2 if exactly_once else 1)
    ]
    for producer in producers:
        await producer.start()
    await consumer.start()
    if exactly_once:
        for producer in producers:
            transactional_offsets(producer, consumer)
            _timed(producer, "send_offsets_to_transaction", stats)
            _timed(producer, "commit_transaction", stats)
        delivery: Any = ExactlyOnce(tuple(producers), consumer, GROUP, interval_s=interval_s)
    else:
        delivery = AtLeastOnce(producers[0], consumer, interval_s=interval_s)
    background = asyncio.create_task(delivery.run())
    try:
        while not stop.is_set():
            records = await consumer.getmany(timeout_ms=delivery.wait_ms(100))
            for tp, msgs in records.items():
                for msg in msgs:
                    sent_at = time.perf_counter()
                    await delivery.send(
                        OUT, msg.value, key=msg.key, partition=None, headers=msg.headers
                    )
                    sent = delivery._open.sent if exactly_once else delivery._sent
                    acked = sent[-1]  # the record's delivery future
                    acked.add_done_callback(
                        lambda _, t=sent_at: stats["ack_s"].append(time.perf_counter() - t)
                    )
                delivery.done({tp: msgs[-1].offset + 1})
            began = time.perf_counter()
            was_open = exactly_once and delivery.transaction_open
            await delivery.commit_if_due(idle=not records)
            if was_open and not delivery.transaction_open:  # how long the loop waited
                stats["commit_s"].append(time.perf_counter() - began)
    finally:
        background.cancel()
        await asyncio.gather(background, return_exceptions=True)
        await consumer.stop()
        for producer in producers:
            await producer.stop()


async def measure(
    bootstrap: str, args: argparse.Namespace, pids: dict[str, list[int]]
) -> dict[str, Any]:
    settings = WorkerSettings(kafka_bootstrap=bootstrap, fetch_wait_ms=WAKING_FETCH_WAIT_MS)
    await ensure_topics(settings, [TopicSpec(IN, 1), TopicSpec(OUT, 1)])
    stop = asyncio.Event()
    stats: dict[str, list[float]] = {"ack_s": [], "commit_s": []}
    concurrent = Concurrent()
    loop_task = asyncio.create_task(
        echo(settings, not args.at_least_once, args.commit_interval_ms / 1000, stop, stats)
    )
    target = kafka.KafkaTarget(
        IN,
        OUT,
        request=lambda rid: (rid.encode(), []),
        reply_id=lambda m: m.key.decode() if m.key else None,
        failed=lambda m: False,
    )
    await kafka.open_loop(bootstrap, target, [b"x"], 10, 2.0, 10.0, WAKING_FETCH_WAIT_MS)
    for values in stats.values():
        values.clear()
    concurrent.count = 0
    meter = CpuMeter(pids).start()
    outcome = await kafka.open_loop(
        bootstrap, target, [b"x"], args.rate, args.seconds, 15.0, WAKING_FETCH_WAIT_MS
    )
    cpu = meter.stop()
    stop.set()
    await loop_task
    n = max(len(outcome.latency_s), 1)
    return {
        "round_trip": outcome.summary(1),
        "send_to_ack": _ms(stats["ack_s"]),
        "commit": _ms(stats["commit_s"]),
        **{
            name: _ms(stats.get(name, []))
            for name in ("send_offsets_to_transaction", "commit_transaction")
        },
        "concurrent_transactions": concurrent.count,
        "broker_cpu_ms_per_msg": round(cpu["broker"] * 1000 / n, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--at-least-once", action="store_true")
    parser.add_argument(
        "--commit-interval-ms",
        type=float,
        default=100.0,
        help="WEIR_COMMIT_INTERVAL_MS (0: commit as soon as the loop is idle, "
        "as weir did before 2026-12-03)",
    )
    parser.add_argument(
        "--retry-concurrent-ms",
        type=float,
        default=None,
        help="aiokafka's back-off before retrying AddPartitionsToTxn on "
        "CONCURRENT_TRANSACTIONS (its own: 20 ms)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.retry_concurrent_ms is not None:
        aiokafka_sender.BACKOFF_OVERRIDE = args.retry_concurrent_ms / 1000
    service = start_broker("kafka", Path(tempfile.mkdtemp(prefix="weir-txn-")))
    try:
        load = os.getloadavg()[0]
        out = asyncio.run(measure(service.address, args, {"broker": [service.proc.pid]}))
    finally:
        service.stop()
    out |= {
        "config": {k: str(v) for k, v in vars(args).items()},
        "load_average_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
    }
    console.print(out)
    console.print(f"saved {save('txn', out, args.out)}")


if __name__ == "__main__":
    main()
