"""What one record costs the Kafka client: send and fetch, CPU per record, by record size.

A worker's hop sends a ~20 KB record (a 256-row message with its carried inputs) and fetches
it back; this measures that alone, against the embedded Tansu broker, for:

- aiokafka as weir's workers run it (acks=all, no linger, 1 MiB batches);
- "aiokafka+malloc": the same with glibc's malloc thresholds raised to 32 MiB (fresh
  megabyte buffers are mmap-ed, and fault their pages in, otherwise);
- confluent-kafka (librdkafka), if installed in this interpreter (not a weir dependency).

Each run is a fresh process on a topic of its own, sending records in groups of 16 per
partition (as a worker's chunk) with eight 20-byte headers, then reading them all back.
Figures: CPU of the calling thread per record (what a worker's event loop pays), CPU of the
whole process per record (librdkafka's own threads included) and minor page faults per
record; each against aiokafka's in the same run. Prints a table and saves
``bench/results/kafka-client-<UTC timestamp>.json``.

    .venv/bin/python bench/bench_kafka_client.py [--records 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench._results import save  # noqa: E402
from control.embedded import start_broker  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.clients import BATCH_BYTES  # noqa: E402
from streams.settings import WorkerSettings  # noqa: E402
from streams.topics import TopicSpec  # noqa: E402

SIZES = (400, 4_000, 20_000, 40_000)
PARTITIONS = 4
CHUNK = 16
FETCH_TIMEOUT_S = 60.0
"""A run that has not read back every record by then stops with an error."""
HEADERS = [(f"weir-h{i}", b"x" * 20) for i in range(8)]
MALLOC_32MIB = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(32 << 20)}
CLIENTS = {"aiokafka": {}, "aiokafka+malloc": MALLOC_32MIB, "confluent-kafka": {}}


class Meter:
    """CPU (this thread, this process) and minor page faults since it was made, per record."""

    def __init__(self) -> None:
        self._start = self._now()

    @staticmethod
    def _now() -> tuple[float, float, int]:
        return (
            time.thread_time(),
            time.process_time(),
            resource.getrusage(resource.RUSAGE_SELF).ru_minflt,
        )

    def per_record(self, records: int) -> dict[str, float]:
        thread, process, faults = (b - a for a, b in zip(self._start, self._now(), strict=True))
        return {
            "thread_us": round(thread / records * 1e6, 1),
            "process_us": round(process / records * 1e6, 1),
            "page_faults": round(faults / records, 1),
        }


async def _aiokafka(bootstrap: str, topic: str, value: bytes, records: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=0, max_batch_size=BATCH_BYTES
    )
    await producer.start()
    try:
        meter, deliveries = Meter(), []
        for i in range(records):
            deliveries.append(
                await producer.send(
                    topic, value, headers=HEADERS, partition=(i // CHUNK) % PARTITIONS
                )
            )
            if i % CHUNK == CHUNK - 1:
                await asyncio.sleep(0)  # a worker's loop yields between chunks
        await asyncio.gather(*deliveries)
        sent = meter.per_record(records)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        fetch_max_wait_ms=1,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=WorkerSettings().max_partition_fetch_bytes,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        meter, got, deadline = Meter(), 0, time.monotonic() + FETCH_TIMEOUT_S
        while got < records:
            _check_deadline(deadline, got, records)
            fetched = await consumer.getmany(timeout_ms=1000, max_records=500)
            got += sum(map(len, fetched.values()))
        return {"send": sent, "fetch": meter.per_record(got)}
    finally:
        await consumer.stop()


def _confluent(bootstrap: str, topic: str, value: bytes, records: int) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer, TopicPartition

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 0,
            "enable.idempotence": False,
            "batch.size": BATCH_BYTES,
        }
    )
    meter = Meter()
    for i in range(records):
        producer.produce(topic, value, partition=(i // CHUNK) % PARTITIONS, headers=HEADERS)
        producer.poll(0)
    producer.flush()
    sent = meter.per_record(records)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{topic}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 1,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    try:
        meter, got, deadline = Meter(), 0, time.monotonic() + FETCH_TIMEOUT_S
        while got < records:
            _check_deadline(deadline, got, records)
            got += sum(1 for m in consumer.consume(500, 1.0) if m.error() is None)
        return {"send": sent, "fetch": meter.per_record(got)}
    finally:
        consumer.close()


def _check_deadline(deadline: float, got: int, records: int) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(
            f"read back {got} of {records} records in {FETCH_TIMEOUT_S:.0f} s; "
            "is the broker still up?"
        )


def measure_one(client: str, bootstrap: str, size: int, records: int) -> dict[str, Any]:
    """One client and record size on a topic of its own (run in a fresh process)."""
    topic = f"bench.client.{uuid.uuid4().hex[:8]}"
    asyncio.run(
        ensure_topics(WorkerSettings(kafka_bootstrap=bootstrap), [TopicSpec(topic, PARTITIONS)])
    )
    value = os.urandom(size)
    if client.startswith("confluent"):
        return _confluent(bootstrap, topic, value, records)
    return asyncio.run(_aiokafka(bootstrap, topic, value, records))


def run(records: int) -> dict[str, Any]:
    clients = [
        c
        for c in CLIENTS
        if not c.startswith("confluent") or importlib.util.find_spec("confluent_kafka")
    ]
    broker = start_broker(Path(tempfile.mkdtemp(prefix="weir-bench-client-")))
    rows: list[dict[str, Any]] = []
    try:
        for size in SIZES:
            for client in clients:
                print(f"{client}, {size:,}-byte records ...", flush=True)
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        client,
                        broker.address,
                        str(size),
                        str(records),
                    ],
                    env={**os.environ, **CLIENTS[client]},
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    sys.exit(
                        f"the {client} run with {size}-byte records failed:\n{done.stderr[-2000:]}"
                    )
                rows.append(
                    {"client": client, "bytes": size, **json.loads(done.stdout.splitlines()[-1])}
                )
    finally:
        broker.stop()
    for row in rows:
        base = next(r for r in rows if r["bytes"] == row["bytes"] and r["client"] == "aiokafka")
        for part in ("send", "fetch"):
            row[part]["thread_vs_aiokafka"] = round(
                row[part]["thread_us"] / base[part]["thread_us"], 2
            )
    return {
        "time": datetime.now(UTC).isoformat(),
        "records": records,
        "confluent_kafka": "confluent-kafka" in clients,
        "runs": rows,
    }


def show(result: dict[str, Any]) -> None:
    table = Table(title="Kafka client CPU per record (us; faults per record)")
    for column in (
        "client",
        "bytes",
        "send thread",
        "send process",
        "send faults",
        "send vs aiokafka",
        "fetch thread",
        "fetch process",
        "fetch faults",
        "fetch vs aiokafka",
    ):
        table.add_column(column, justify="left" if column == "client" else "right")
    for r in result["runs"]:
        cells = [r["client"], f"{r['bytes']:,}"]
        for part in ("send", "fetch"):
            p = r[part]
            cells += [
                str(p["thread_us"]),
                str(p["process_us"]),
                str(p["page_faults"]),
                f"{p['thread_vs_aiokafka']:.2f}",
            ]
        table.add_row(*cells)
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    if not result["confluent_kafka"]:
        print(
            "confluent-kafka is not installed here: `pip install confluent-kafka` into this "
            "interpreter to compare it"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000, help="records per run")
    parser.add_argument(
        "--one",
        nargs=4,
        metavar=("CLIENT", "BOOTSTRAP", "BYTES", "RECORDS"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.one:
        client, bootstrap, size, records = args.one
        print(json.dumps(measure_one(client, bootstrap, int(size), int(records))))
        return
    result = run(args.records)
    show(result)
    print(f"saved {save('kafka-client', result)}")


if __name__ == "__main__":
    main()
