"""What one HTTP inference costs weir's server, by part, and how the gateway holds a load.

On a fresh stack (broker of `--broker`, Redis, server) with the diabetes gradient-boosted
regressor deployed as a one-step pipeline, 1-row Arrow requests to `POST /pipelines/<name>`:

- sequential (one keep-alive connection): p50/p99, and the CPU each process spent per
  request; the server sampled from outside with py-spy (bench/_pyspy.py) and its CPU split
  by part (HTTP framework, request decode, gateway, answer rows and encode, reply reader,
  aiokafka's tasks, log agent);
- open loop at each `--rates` request rate, with a deadline (`--deadline-s`; each request
  asks `?timeout=` for what is left of it once a connection is free): answered,
  refused (503) and failed, p50/p99, and the same CPU split.

Prints tables and saves ``<out>/gateway-<UTC timestamp>.json``.

    .venv/bin/python bench/bench_gateway.py --quick
    .venv/bin/python bench/bench_gateway.py --rates 100 500 1000 --env WEIR_COALESCE_REQUESTS=1
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._brokers import BROKERS
from bench._http_load import open_loop, sequential
from bench._peer_model import rows, train
from bench._results import RESULTS, save
from bench._pyspy import parts, recording
from bench._stack import CpuMeter
from bench._weir import WeirStack, weir_stack
from engine import codecs

console = Console(width=None if sys.stdout.isatty() else 160)

SERVER_PARTS = (
    ("log agent (result rows, Parquet)", ("LogAgent", "streams/log")),
    ("request decode (Arrow)", ("decode (engine/codecs.py",)),
    ("answer rows (split, joined)", ("Pending.result",)),
    ("answer encode", ("encode (engine/codecs.py",)),
    ("gateway (admission, request record, produce)", ("Gateway.",)),
    ("reply reader (fetches, decode)", ("Replies._run",)),
    ("Kafka client tasks (aiokafka)", ("aiokafka/",)),
    (
        "HTTP (uvicorn, starlette, fastapi, weir's middlewares, route)",
        ("uvicorn/", "starlette/", "fastapi/", "control/server"),
    ),
)
"""The server's parts, each by the frames its samples hold (the first match wins: a
request's stack holds HTTP frames around the gateway's and the codecs')."""


def arrow_body(count: int, offset: int = 0) -> bytes:
    return codecs.encode(
        codecs.batch_from_arrays({"float_input": rows(count, offset)}), codecs.ARROW_STREAM
    )


def measured(stack: WeirStack, sample: bool, run: Any) -> dict[str, Any]:
    """Run `run()` (a coroutine factory giving Outcomes) with CPU meters (and py-spy on the
    server if `sample`), from a stack whose log agent has stored what earlier runs left,
    until it has stored this run's answers too (WeirStack.logs_stored)."""
    server = stack.pids["server"][0]
    stack.logs_stored()
    with recording(server) if sample else nullcontext() as raw:
        meter = CpuMeter(stack.pids).start()
        client0 = resource.getrusage(resource.RUSAGE_SELF)
        outcomes = asyncio.run(run())
        client1 = resource.getrusage(resource.RUSAGE_SELF)
        stack.logs_stored()
        cpu = meter.stop()
    cpu["client"] = round(
        client1.ru_utime + client1.ru_stime - client0.ru_utime - client0.ru_stime, 3
    )
    summary = outcomes.summary()
    answered = max(summary["ok"] + summary["refused_503"], 1)
    result: dict[str, Any] = {
        **summary,
        "cpu_s": cpu,
        "cpu_ms_per_request": {
            k: round(cpu[k] * 1000 / answered, 3) for k in ("server", "worker", "broker", "client")
        },
    }
    if raw is not None:  # the server's measured CPU, split in py-spy's shares
        samples = parts(raw.read_text(), SERVER_PARTS)
        total = max(samples.total(), 1)
        result["server_cpu_ms_per_request_by_part"] = {
            name: round(n / total * result["cpu_ms_per_request"]["server"], 3)
            for name, n in samples.most_common()
        }
    return result


def run_broker(broker: str, args: argparse.Namespace, model: Path) -> dict[str, Any]:
    env = dict(item.split("=", 1) for item in args.env)
    with weir_stack(broker, model, env=env) as stack:  # type: ignore[arg-type]
        url = stack.pipeline.url()
        headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": codecs.ARROW_STREAM}
        bodies = [arrow_body(1, i) for i in range(args.sequential + 20)]
        out: dict[str, Any] = {
            "sequential_1row": measured(
                stack, args.sample, lambda: sequential(url, headers, bodies)
            )
        }
        for round_number, rate in enumerate(args.rates, 1):
            body = arrow_body(1)
            name = f"open_{rate}"
            if name in out:  # a rate given again (a warmed broker's round): keep every row
                name += f"_round{round_number}"
            out[name] = measured(
                stack,
                args.sample,
                lambda r=rate, body=body: open_loop(
                    url,
                    headers,
                    body,
                    r,
                    args.seconds,
                    args.connections,
                    args.deadline_s + 5,
                    args.deadline_s,
                ),
            )
    return out


def show(broker: str, figures: dict[str, Any]) -> None:
    table = Table(title=f"weir HTTP gateway on {broker}: 1-row requests")
    for column in (
        "run",
        "ok/s",
        "p50 ms",
        "p99 ms",
        "503",
        "failed",
        "503 max ms",
        "server CPU ms/req",
        "worker",
        "broker",
        "client",
    ):
        table.add_column(column)
    for run, f in figures.items():
        cpu = f["cpu_ms_per_request"]
        table.add_row(
            run,
            str(f["ok_per_s"]),
            str(f.get("p50_ms", "-")),
            str(f.get("p99_ms", "-")),
            str(f["refused_503"]),
            str(f["failed"]),
            str(f.get("refused_max_ms", "-")),
            str(cpu["server"]),
            str(cpu["worker"]),
            str(cpu["broker"]),
            str(cpu["client"]),
        )
    console.print(table)
    for run, f in figures.items():
        if "server_cpu_ms_per_request_by_part" in f:
            by_part = f["server_cpu_ms_per_request_by_part"]
            split = ", ".join(f"{k} {v}" for k, v in by_part.items())
            console.print(f"  {run}: server CPU by part (py-spy), ms per request: {split}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=BROKERS, nargs="+", default=["tansu"])
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--rates", type=float, nargs="*", default=[100, 500, 1000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--deadline-s", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--env", nargs="*", default=[], help="WEIR_*=value for the server")
    parser.add_argument("--no-sample", dest="sample", action="store_false")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.sequential, args.seconds, args.rates = 300, 3.0, args.rates[:2]
    model, _ = train(Path(tempfile.mkdtemp(prefix="weir-gbr-")))
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    for broker in args.broker:
        results[broker] = run_broker(broker, args, model)
        show(broker, results[broker])
    console.print(f"saved {save('gateway', results, args.out)}")


if __name__ == "__main__":
    main()
