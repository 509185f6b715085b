"""What one HTTP inference costs weir's server, by part, and how the gateway holds a load.

On a fresh stack (broker of `--broker`, Redis, server) with the diabetes gradient-boosted
regressor deployed as a one-step pipeline, 1-row Arrow requests to `POST /pipelines/<name>`:

- sequential (one keep-alive connection): p50/p99, and the CPU each process spent per
  request; the server's main thread sampled (bench/_sample_main.py) and split by the asyncio
  task it ran (HTTP handling, the gateway, its reply reader, the log agent, aiokafka's
  fetcher and sender, the event loop itself);
- open loop at each `--rates` request rate, with a deadline (`?timeout=`): answered,
  refused (503) and failed, p50/p99, and the same CPU split.

Prints tables and saves ``<out>/gateway-<UTC timestamp>.json``.

    .venv/bin/python bench/bench_gateway.py --quick
    .venv/bin/python bench/bench_gateway.py --rates 100 500 1000 --env WEIR_HTTP_COALESCE=1
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._brokers import BROKERS
from bench._http_load import open_loop, sequential
from bench._peer_model import rows, train
from bench._results import RESULTS, save
from bench._sample_main import difference, snapshot
from bench._stack import CpuMeter
from bench._weir import WeirStack, weir_stack
from engine import codecs

console = Console(width=None if sys.stdout.isatty() else 160)

PARTS = (
    ("idle", ("idle",)),
    (
        "HTTP (uvicorn, starlette, fastapi, route)",
        ("uvicorn", "h11", "httptools", "starlette", "fastapi", "control/server"),
    ),
    ("gateway (request, produce, replies)", ("control/gateway",)),
    ("Kafka client tasks (aiokafka)", ("aiokafka",)),
    (
        "log agent (result rows, log store)",
        ("streams/log_agent", "streams/log_rows", "streams/logstore"),
    ),
    ("event loop", ("event loop", "asyncio")),
)
"""How the sampled server time is split: by the task's outermost coroutine's package."""


def arrow_body(count: int, offset: int = 0) -> bytes:
    return codecs.encode(
        codecs.batch_from_arrays({"float_input": rows(count, offset)}), codecs.ARROW_STREAM
    )


def by_part(seconds: dict[tuple[str, str], float]) -> dict[str, float]:
    """Sampled seconds grouped into PARTS (the rest as 'other: <task>')."""
    out: dict[str, float] = defaultdict(float)
    for (task, _package), s in seconds.items():
        for part, prefixes in PARTS:
            if task.startswith(prefixes):
                out[part] += s
                break
        else:
            out[f"other: {task}"] += s
    return dict(out)


def measured(stack: WeirStack, sample_dir: Path | None, run: Any) -> dict[str, Any]:
    """Run `run()` (a coroutine factory giving Outcomes) with CPU meters and the sampler,
    from a stack whose log agent has stored what earlier runs left, until it has stored
    this run's answers too (WeirStack.logs_stored)."""
    server = stack.pids["server"][0]
    stack.logs_stored()
    before = snapshot(sample_dir, server) if sample_dir else {}
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
    if sample_dir:
        spent = difference(snapshot(sample_dir, server), before)
        result["server_sampled_top"] = [
            [task, package, round(s * 1000 / answered, 3)]
            for (task, package), s in sorted(spent.items(), key=lambda kv: -kv[1])[:30]
        ]
        parts = by_part(spent)
        result["server_sampled_ms_per_request"] = {
            k: round(v * 1000 / answered, 3)
            for k, v in sorted(parts.items(), key=lambda kv: -kv[1])
            if k != "idle" and v * 1000 / answered >= 0.005
        }
    return result


def run_broker(broker: str, args: argparse.Namespace, model: Path) -> dict[str, Any]:
    env = dict(item.split("=", 1) for item in args.env)
    sample_dir = Path(tempfile.mkdtemp(prefix="weir-sample-")) if args.sample else None
    with weir_stack(broker, model, env=env, sample_dir=sample_dir) as stack:  # type: ignore[arg-type]
        url = stack.pipeline.url()
        headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": codecs.ARROW_STREAM}
        bodies = [arrow_body(1, i) for i in range(args.sequential + 20)]
        out: dict[str, Any] = {
            "sequential_1row": measured(stack, sample_dir, lambda: sequential(url, headers, bodies))
        }
        for rate in args.rates:
            body = arrow_body(1)
            out[f"open_{rate}"] = measured(
                stack,
                sample_dir,
                lambda r=rate, body=body: open_loop(
                    f"{url}?timeout={args.deadline_s}",
                    headers,
                    body,
                    r,
                    args.seconds,
                    args.connections,
                    args.deadline_s + 5,
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
        if "server_sampled_ms_per_request" in f:
            parts = ", ".join(f"{k} {v}" for k, v in f["server_sampled_ms_per_request"].items())
            console.print(f"  {run}: server main thread, ms per request: {parts}")


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
