"""A worker's hop at a steady rate, on aiokafka and on librdkafka: what one record costs.

`bench_kafka_client` measures the clients on records sent and fetched in bulk; at 500 HTTP
requests/s a worker fetches and sends one record at a time, where each request's own
overhead counts. Here an echo process (`bench/_hop_echo.py`) reads every record of one
topic and sends it on to another, as a worker's hop with no model, while this process sends
400-byte records at `--rate` and reads the echoes back (uncommitted, as weir's HTTP gateway
does). Each client runs in turns on one fresh broker, with a warm-up before each measured
round. Per record: the echo's CPU, the broker's and this process's; the hop's p50 and p99
(send to echo read back, this process's clock).

It runs on Apache Kafka, the broker of the 500/s target: Tansu lists a partition's batches
from its first on every fetch, and plain clients at its 5 ms fetch wait fell seconds behind
500 records/s within 20 s (weir's readers pace their waits against that, streams.clients).
confluent-kafka is not a weir dependency: install it into the interpreter to compare it.

    .venv/bin/python bench/bench_client_hop.py [--transactions] [--rate 500] [--pairs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench._brokers import start_broker  # noqa: E402
from bench._results import finish  # noqa: E402
from bench._stack import cpu_seconds  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.settings import WorkerSettings  # noqa: E402
from streams.topics import TopicSpec  # noqa: E402

ECHO = Path(__file__).resolve().parent / "_hop_echo.py"
IN, OUT = "hop.in", "hop.out"
PARTITIONS = 4
RECORD_BYTES = 400
"""About a 1-row request record with its headers."""
FETCH_WAIT_MS = 500
"""Every reader's fetch wait: Apache Kafka answers a waiting fetch as soon as data arrives."""
WARM_S = 5.0
BROKER_WARM_S = 20.0
"""The first round's warm-up: a fresh broker's JIT compiler is busy for its first seconds."""
STAMP = struct.Struct("d")


@dataclass(frozen=True)
class Setup:
    """What every round of one run shares."""

    bootstrap: str
    broker_pid: int
    rate: float
    seconds: float


async def _round(setup: Setup, warm_s: float, echo_pid: int) -> dict[str, Any]:
    producer = AIOKafkaProducer(bootstrap_servers=setup.bootstrap, acks="all", linger_ms=0)
    reader = AIOKafkaConsumer(
        OUT,
        bootstrap_servers=setup.bootstrap,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        auto_offset_reset="latest",
    )
    await producer.start()
    await reader.start()
    hops: list[float] = []
    reading = True

    async def read() -> None:
        while reading:
            fetched = await reader.getmany(timeout_ms=200)
            now = time.perf_counter()
            hops.extend(now - STAMP.unpack_from(r.value)[0] for rs in fetched.values() for r in rs)

    reader_task = asyncio.create_task(read())
    try:
        await _send(producer, setup.rate, warm_s)
        hops.clear()
        before = (cpu_seconds(echo_pid), cpu_seconds(setup.broker_pid), time.process_time())
        sent = await _send(producer, setup.rate, setup.seconds)
        await asyncio.sleep(1.0)  # the last echoes
        after = (cpu_seconds(echo_pid), cpu_seconds(setup.broker_pid), time.process_time())
    finally:
        reading = False
        await reader_task
        await producer.stop()
        await reader.stop()
    echo_ms, broker_ms, bench_ms = (
        (b - a) / sent * 1e3 for a, b in zip(before, after, strict=True)
    )
    hops.sort()
    return {
        "sent": sent,
        "echoed": len(hops),
        "echo_cpu_ms": round(echo_ms, 3),
        "broker_cpu_ms": round(broker_ms, 3),
        "bench_cpu_ms": round(bench_ms, 3),
        "p50_ms": round(hops[len(hops) // 2] * 1e3, 2) if hops else None,
        "p99_ms": round(hops[int(len(hops) * 0.99)] * 1e3, 2) if hops else None,
    }


async def _send(producer: AIOKafkaProducer, rate: float, seconds: float) -> int:
    """Send one record every 1/rate s for `seconds`; how many were sent."""
    padding = b"x" * (RECORD_BYTES - STAMP.size)
    start, sent = time.perf_counter(), 0
    while (due := start + sent / rate) < start + seconds:
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        await producer.send(
            IN, STAMP.pack(time.perf_counter()) + padding, partition=sent % PARTITIONS
        )
        sent += 1
    return sent


def run(rate: float, seconds: float, pairs: int, transactions: bool) -> dict[str, Any]:
    clients = ["aiokafka"] + (["confluent"] if importlib.util.find_spec("confluent_kafka") else [])
    home = Path(tempfile.mkdtemp(prefix="weir-bench-hop-"))
    broker = start_broker("kafka", home)
    rounds: list[dict[str, Any]] = []
    try:
        setup = Setup(broker.address, broker.proc.pid, rate, seconds)
        settings = WorkerSettings(kafka_bootstrap=broker.address)
        asyncio.run(
            ensure_topics(settings, [TopicSpec(IN, PARTITIONS), TopicSpec(OUT, PARTITIONS)])
        )
        for turn in range(pairs):
            for client in clients if turn % 2 == 0 else clients[::-1]:  # neither always first
                group = f"hop-{client}-{turn}"
                args = [sys.executable, str(ECHO), client, broker.address, group]
                args.append(str(FETCH_WAIT_MS))
                echo = subprocess.Popen(
                    args + (["--transactions"] if transactions else []), stdout=subprocess.PIPE
                )
                try:
                    assert echo.stdout is not None
                    if echo.stdout.readline().strip() != b"ready":
                        sys.exit(f"the {client} echo did not start (exit {echo.wait()})")
                    print(f"{client}, round {turn + 1} ...", flush=True)
                    warm_s = BROKER_WARM_S if not rounds else WARM_S
                    row = asyncio.run(_round(setup, warm_s, echo.pid))
                finally:
                    echo.kill()
                    echo.wait()
                rounds.append({"client": client, "round": turn + 1, **row})
    finally:
        broker.stop()
        shutil.rmtree(home, ignore_errors=True)
    return {
        "broker": "kafka",
        "rate": rate,
        "seconds": seconds,
        "transactions": transactions,
        "record_bytes": RECORD_BYTES,
        "rounds": rounds,
    }


FIGURES = ("echo_cpu_ms", "broker_cpu_ms", "bench_cpu_ms", "p50_ms", "p99_ms")


def medians(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each client's median figures over its rounds that echoed anything."""
    rounds = result["rounds"]
    return {
        client: {f: statistics.median(r[f] for r in rows) for f in FIGURES}
        for client in {r["client"] for r in rounds}
        if (rows := [r for r in rounds if r["client"] == client and r["p50_ms"]])
    }


def show(result: dict[str, Any]) -> None:
    """Every round, then each client's medians as a ratio of aiokafka's."""
    mode = "transactions" if result["transactions"] else "at least once"
    table = Table(title=f"One hop at {result['rate']:.0f} records/s, Apache Kafka, {mode}")
    for column in ("client", "round", "sent", "echoed", *FIGURES):
        table.add_column(column, justify="left" if column == "client" else "right")
    for r in result["rounds"]:
        table.add_row(*(str(r[c]) for c in ("client", "round", "sent", "echoed", *FIGURES)))
    base = result["median"].get("aiokafka")
    for client, figures in sorted(result["median"].items()):
        if base is not None:
            ratios = (f"{figures[f] / base[f]:.2f}x" for f in FIGURES)
            table.add_row(f"{client}, median vs aiokafka", "", "", "", *ratios)
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="records sent per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="each measured round")
    parser.add_argument("--pairs", type=int, default=2, help="rounds of each client, in turns")
    parser.add_argument(
        "--transactions", action="store_true", help="the echo commits in transactions"
    )
    args = parser.parse_args()
    started, load = time.perf_counter(), os.getloadavg()
    result = run(args.rate, args.seconds, args.pairs, args.transactions)
    result["median"] = medians(result)
    show(result)
    print(
        f"saved {finish('client-hop', result, Path(__file__).resolve().parent / 'results', started, load)}"
    )


if __name__ == "__main__":
    main()
