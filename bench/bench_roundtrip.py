"""weir's request/reply round trip alone: over Kafka at a fixed rate, and over HTTP.

A short run for one change at a time (bench_peers measures everything, beside MLServer, and
takes long): on a fresh stack (`--broker`, Redis, server, the diabetes gradient-boosted
regressor as a one-step pipeline), with `--env` WEIR_* settings:

- Kafka mode: 1-row requests produced straight to the input topic at `--rate`/s for
  `--seconds`, each answer's latency from when it was due (p50/p99);
- HTTP: `--sequential` 1-row Arrow requests one after another on one connection (p50/p99),
  then open loop at each `--http-rates` rate with a 1 s deadline (answered, refused, p50/p99);
- the CPU each process spent per request.

Every consumer's fetch wait is bench_peers' (5 ms on Tansu, 500 ms on Apache Kafka).
Prints one line per measurement and saves ``<out>/roundtrip-<UTC timestamp>.json``.

    .venv/bin/python bench/bench_roundtrip.py --broker kafka
    .venv/bin/python bench/bench_roundtrip.py --broker kafka --env WEIR_COALESCE_REQUESTS=1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _http_load as http
from bench import _kafka_load as kafka
from bench._brokers import BROKERS
from bench._peer_model import rows, train
from bench._results import RESULTS, save
from bench._peer_systems import arrow, run_weir
from bench.bench_peers import FETCH_WAIT_MS, metered

console = Console(width=None if sys.stdout.isatty() else 160)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=BROKERS, default="kafka")
    parser.add_argument("--rate", type=float, default=50.0, help="Kafka-mode requests/s")
    parser.add_argument("--seconds", type=float, default=6.0, help="Kafka-mode duration")
    parser.add_argument("--sequential", type=int, default=300, help="sequential HTTP requests")
    parser.add_argument("--http-rates", type=float, nargs="*", default=[500.0])
    parser.add_argument("--http-seconds", type=float, default=6.0)
    parser.add_argument("--env", nargs="*", default=[], help="WEIR_*=value for weir")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    wait_ms = FETCH_WAIT_MS[args.broker]
    env = dict(item.split("=", 1) for item in args.env)
    onnx_path, _ = train(Path(tempfile.mkdtemp(prefix="weir-roundtrip-model-")))
    out: dict[str, Any] = {
        "config": {k: str(v) for k, v in vars(args).items()},
        "load_average_1m": [round(os.getloadavg()[0], 2)],
    }
    with run_weir(args.broker, onnx_path, wait_ms, env) as system:
        values = [arrow(rows(1, k)) for k in range(64)]
        asyncio.run(
            kafka.open_loop(system.bootstrap, system.target, values, 20, 1.0, 10.0, wait_ms)
        )  # warm up
        result, cpu = metered(
            system,
            lambda: asyncio.run(
                kafka.open_loop(
                    system.bootstrap, system.target, values, args.rate, args.seconds, 15.0, wait_ms
                )
            ),
            lambda o: len(o.latency_s),
        )
        out["kafka"] = {**result.summary(1), "cpu_ms_per_msg": cpu}
        console.print(f"kafka 1-row at {args.rate:g}/s: {out['kafka']}")
        bodies = [arrow(rows(1, 37 * k)) for k in range(args.sequential + 20)]
        result, cpu = metered(
            system,
            lambda: asyncio.run(http.sequential(system.url, system.headers, bodies)),
            lambda o: len(o.status),
        )
        out["http_sequential"] = {**result.summary(), "cpu_ms_per_request": cpu}
        console.print(f"http 1-row sequential: {out['http_sequential']}")
        for rate in args.http_rates:
            result, cpu = metered(
                system,
                lambda r=rate: asyncio.run(
                    http.open_loop(
                        system.url + "?timeout=1",
                        system.headers,
                        arrow(rows(1)),
                        r,
                        args.http_seconds,
                        128,
                        10.0,
                    )
                ),
                lambda o: len(o.status),
            )
            out[f"http_open_{rate:g}"] = {**result.summary(), "cpu_ms_per_request": cpu}
            console.print(f"http 1-row at {rate:g}/s: {out[f'http_open_{rate:g}']}")
    out["load_average_1m"].append(round(os.getloadavg()[0], 2))
    console.print(f"saved {save('roundtrip', out, args.out)}")


if __name__ == "__main__":
    main()
