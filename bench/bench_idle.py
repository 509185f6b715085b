"""What an idle stack costs: the CPU of every process with one pipeline deployed and no
traffic, and what the first request after idling then waits.

On a fresh stack (broker of `--broker`, Redis, weir server with its log agent and reply
readers) it measures, from /proc/<pid>/stat (utime + stime) over `--seconds` each:

- the stack before anything is deployed (the broker's own idle cost, a JVM on Apache Kafka,
  is not weir's doing);
- the stack idle with the diabetes gradient-boosted regressor deployed as a one-step
  pipeline (its worker too), `--rounds` times, each after `--settle` seconds without
  traffic, then once more after `--long-idle` seconds (a stack idles for minutes: its
  consumers' fetch waits have backed off, and the Apache Kafka broker's JIT has settled);
  one 1-row request follows each round: the first request after idling; weir's share is
  the total less the broker's CPU with nothing deployed;
- against it, the p50 of `--warm` requests sent back to back (same run).

CPU is given in % of one core, per process and in total. Prints a table and saves
``<out>/idle-<UTC timestamp>.json``.

    .venv/bin/python bench/bench_idle.py --broker both
    .venv/bin/python bench/bench_idle.py --broker tansu --seconds 5 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._brokers import BROKERS
from bench._http_load import sequential
from bench._peer_model import rows, train
from bench._results import RESULTS, save
from bench._stack import CpuMeter
from bench._weir import weir_stack
from engine import codecs

console = Console(width=None if sys.stdout.isatty() else 160)
PROCESSES = ("broker", "redis", "server", "worker")


def idle_cpu(pids: dict[str, list[int]], settle_s: float, seconds: float) -> dict[str, float]:
    """% of one core each process (and all of them) spent over `seconds`, after `settle_s`
    without traffic."""
    time.sleep(settle_s)
    cpu = CpuMeter(pids).start()
    time.sleep(seconds)
    spent = cpu.stop()
    percent = {name: round(100 * spent[name] / spent["wall_s"], 2) for name in pids}
    return {
        **percent,
        "total": round(sum(percent.values()), 2),
        "machine": round(100 * spent["machine"] / spent["wall_s"], 2),
    }


def latencies_ms(url: str, headers: dict[str, str], count: int) -> list[float]:
    """Latency of `count` 1-row requests sent one after another on one connection."""
    bodies = [
        codecs.encode(codecs.batch_from_arrays({"float_input": rows(1, i)}), codecs.ARROW_STREAM)
        for i in range(count)
    ]
    out = asyncio.run(sequential(url, headers, bodies, warmup=0))
    if set(out.status) != {200}:
        raise SystemExit(f"requests failed with HTTP status {sorted(set(out.status))}")
    return [round(s * 1000, 2) for s in out.latency_s]


def run_broker(broker: str, args: argparse.Namespace, model: Path) -> dict[str, Any]:
    env = dict(item.split("=", 1) for item in args.env)
    out: dict[str, Any] = {}

    def before_deploy(pids: dict[str, list[int]]) -> None:
        out["no_pipeline"] = idle_cpu(pids, args.settle, args.seconds)

    with weir_stack(
        broker,
        model,
        env=env,  # type: ignore[arg-type]
        before_deploy=before_deploy,
    ) as stack:
        url = stack.pipeline.url()
        headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": codecs.ARROW_STREAM}
        warm = latencies_ms(url, headers, args.warm + 5)[5:]  # the first few warm things up
        rounds = []
        for settle_s in [args.settle] * args.rounds + [args.long_idle]:
            cpu = idle_cpu(stack.pids, settle_s, args.seconds)
            first = latencies_ms(url, headers, 1)[0]
            rounds.append({"settle_s": settle_s, "cpu_percent": cpu, "first_request_ms": first})
    broker_alone = out["no_pipeline"]["broker"]
    for r in rounds:  # the broker's own idle cost is not weir's
        r["cpu_percent"]["weir"] = round(r["cpu_percent"]["total"] - broker_alone, 2)
    out.update(
        idle=rounds,
        warm_ms=warm,
        warm_p50_ms=round(statistics.median(warm), 2),
        first_after_idle_ms=[r["first_request_ms"] for r in rounds],
        idle_total_percent=[r["cpu_percent"]["total"] for r in rounds],
        idle_weir_percent=[r["cpu_percent"]["weir"] for r in rounds],
    )
    return out


def show(broker: str, figures: dict[str, Any]) -> None:
    table = Table(title=f"an idle weir stack on {broker}: % of one core")
    for column in ("measured", *PROCESSES, "total", "weir*", "machine**", "next request ms"):
        table.add_column(column)
    base = figures["no_pipeline"]
    table.add_row(
        "nothing deployed",
        *(str(base.get(p, "-")) for p in PROCESSES),
        str(base["total"]),
        "-",
        str(base["machine"]),
        "-",
    )
    for r in figures["idle"]:
        cpu = r["cpu_percent"]
        table.add_row(
            f"1 pipeline, {r['settle_s']:.0f} s idle",
            *(str(cpu.get(p, "-")) for p in PROCESSES),
            str(cpu["total"]),
            str(cpu["weir"]),
            str(cpu["machine"]),
            str(r["first_request_ms"]),
        )
    console.print(table)
    console.print(
        f"  warm requests (back to back): p50 {figures['warm_p50_ms']} ms, "
        f"max {max(figures['warm_ms'])} ms; * weir: the total less the broker's "
        "CPU with nothing deployed; ** machine: every process on it, other work "
        "included"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=(*BROKERS, "both"), default="both")
    parser.add_argument("--seconds", type=float, default=10.0, help="each CPU measurement")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds without traffic before each measurement"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--long-idle",
        type=float,
        default=120.0,
        help="seconds without traffic before the last measurement",
    )
    parser.add_argument("--warm", type=int, default=30, help="requests sent back to back")
    parser.add_argument("--env", nargs="*", default=[], help="WEIR_*=value for the server")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model, _ = train(Path(tempfile.mkdtemp(prefix="weir-gbr-")))
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    for broker in BROKERS if args.broker == "both" else (args.broker,):
        results[broker] = run_broker(broker, args, model)
        show(broker, results[broker])
    console.print(f"saved {save('idle', results, args.out)}")


if __name__ == "__main__":
    main()
