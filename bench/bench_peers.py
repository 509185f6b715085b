"""weir side by side with MLServer: same machine, model, broker and messages, in one run.

MLServer (Seldon's inference server; REST, and Kafka mode from an input topic to an output
topic) is the closest peer. Both serve the same scikit-learn gradient-boosted regressor on
the diabetes data: MLServer its joblib file (mlserver-sklearn), weir its ONNX export as a
one-step pipeline; the run first checks that both give the same answers.

Each repetition starts every system afresh: a new broker (`--broker`), a new MLServer, a
new weir stack. Every Kafka consumer polls at the same fetch wait (`--fetch-wait-ms`;
5 ms on Tansu, 500 on Apache Kafka, which answers a waiting fetch when data arrives):
the bench client's, weir's (idle and busy), and MLServer's, through a bench-only shim
(bench/_mlserver_shim: MLServer has no setting for it; on Tansu, which holds every fetch
for the full wait, its stock 500 ms would measure the broker). Per system and repetition:

- Kafka mode: request/reply latency p50/p99 at a moderate fixed rate (1-row); then 1-row
  and 256-row requests open loop at rising rates until replies fall behind (a lost reply,
  p99 over 1 s, or replies slower than 90% of the rate): msgs/s and rows/s, lost and failed;
- REST/HTTP: 1-row and 256-row requests sequential (p50/p99, requests/s) and open loop at
  500 requests/s (weir also 1,000), with weir's deadline (`--deadline-s`; each request asks
  `?timeout=` for what is left of it once a connection is free): answered, refused (503)
  and failed;
- the CPU each process spent per request.

Prints min/median/max over `--repetitions` and the weir/MLServer ratios against the
issue's targets, and saves ``<out>/peers-<UTC timestamp>.json``. MLServer is installed
into a venv of its own under ~/.cache/weir/bench on first use (bench/_mlserver.py).

    .venv/bin/python bench/bench_peers.py --quick
    .venv/bin/python bench/bench_peers.py --broker tansu kafka --repetitions 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _http_load as http
from bench import _kafka_load as kafka
from bench import _mlserver as ml
from bench._brokers import BROKERS, Broker
from bench._peer_model import rows, train
from bench._peer_systems import System, run_mlserver, run_weir
from bench._peers_report import TARGETS, ratios, show
from bench._results import RESULTS, save
from bench._stack import CpuMeter

console = Console(width=None if sys.stdout.isatty() else 160)
SYSTEMS = ("mlserver", "weir")
FETCH_WAIT_MS = {"tansu": 5, "kafka": 500}
"""Every consumer's fetch wait, per broker: Tansu holds a fetch for its whole wait, so a
short one; Apache Kafka answers a waiting fetch when data arrives, so aiokafka's default
(MLServer's stock setting, and weir's on Kafka)."""


@dataclass(frozen=True)
class Plan:
    """Rates, counts and durations of one system's measurements."""

    latency_rate: float = 50.0
    latency_s: float = 6.0
    rates_1: tuple[float, ...] = (250, 500, 1000, 2000, 4000, 8000)
    rates_256: tuple[float, ...] = (25, 50, 100, 200, 400, 800, 1600, 3200)
    step_s: float = 4.0
    drain_s: float = 30.0
    sequential_1: int = 500
    sequential_256: int = 200
    open_s: float = 6.0
    connections: int = 128
    client_timeout_s: float = 10.0


QUICK = Plan(
    latency_s=2.0,
    rates_1=(500, 2000),
    rates_256=(50, 200),
    step_s=2.0,
    drain_s=15.0,
    sequential_1=200,
    sequential_256=50,
    open_s=2.0,
)


# -- measurements ---------------------------------------------------------------------
def metered(
    system: System, run: Callable[[], Any], count: Callable[[Any], int]
) -> tuple[Any, dict[str, float]]:
    """Run `run()` and give the CPU ms each process spent per request (`count(result)`):
    from a system that has finished what earlier loads left it, until it has finished this
    one's (weir's log rows, stored after the answers; `System.settle`)."""
    system.settle()
    meter = CpuMeter(system.pids).start()
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = run()
    after = resource.getrusage(resource.RUSAGE_SELF)
    stored_s = system.settle()
    cpu = meter.stop()
    if stored_s >= 1:
        console.print(f"    ({system.name} finished its part of this load {stored_s:g} s after it)")
    n = max(count(result), 1)
    per = {name: round(cpu[name] * 1000 / n, 3) for name in system.pids}
    per["client"] = round(
        (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000 / n, 3
    )
    return result, per


def answers(system: System) -> list[float]:
    """The system's REST answers for the bench's 64 check rows."""
    out = asyncio.run(
        http.sequential(
            system.url, system.headers, [system.encode(rows(64))], warmup=0, keep_bodies=True
        )
    )
    assert out.status == [200], f"{system.name} answered {out.status}"
    return system.predictions(out.bodies[0])


def same_answers(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Whether both systems gave the same answers on the check rows (float32 ONNX trees
    against scikit-learn's float64: equal to ~1e-5 relative)."""
    checked = {
        name: next((r["answers"] for r in runs[name] if "answers" in r), None) for name in SYSTEMS
    }
    if checked["weir"] is None or checked["mlserver"] is None:
        return {"rows": 0, "match": None, "max_abs_diff": None, "max_abs_answer": None}
    weir, mlserver = np.asarray(checked["weir"]), np.asarray(checked["mlserver"])
    diff, scale = float(np.max(np.abs(weir - mlserver))), float(np.max(np.abs(mlserver)))
    return {
        "rows": len(weir),
        "max_abs_diff": round(diff, 6),
        "max_abs_answer": round(scale, 3),
        "match": diff <= 1e-4 * scale,
        "first_three": [round(float(v), 4) for v in weir[:3]],
    }


def kafka_ladder(
    system: System, plan: Plan, nrows: int, rates: tuple[float, ...], fetch_wait_ms: int
) -> dict[str, Any]:
    """Open loop at each rate until replies fall behind; the best msgs/s reached (a floor,
    `at_top_rate`, where the system kept up with the last rate)."""
    values = [system.encode(rows(nrows, 37 * k)) for k in range(64)]
    steps = []
    for rate in rates:
        outcome, cpu = metered(
            system,
            lambda r=rate: asyncio.run(
                kafka.open_loop(
                    system.bootstrap,
                    system.target,
                    values,
                    r,
                    plan.step_s,
                    plan.drain_s,
                    fetch_wait_ms,
                )
            ),
            lambda o: len(o.latency_s),
        )
        step = {"rate": rate, **outcome.summary(nrows), "cpu_ms_per_msg": cpu}
        steps.append(step)
        console.print(f"    {system.name} kafka {nrows}-row at {rate:g}/s: {step}")
        if _behind(step):
            break
    best = max(steps, key=lambda s: s["msgs_per_s"])
    return {
        "msgs_per_s": best["msgs_per_s"],
        "rows_per_s": best["rows_per_s"],
        "kept_up_to": max([s["rate"] for s in steps if not _behind(s)] or [0]),
        "at_top_rate": not _behind(steps[-1]),
        "lost": sum(s["lost"] for s in steps),
        "failed": sum(s["failed"] for s in steps),
        "steps": steps,
    }


def _behind(step: dict[str, Any]) -> bool:
    """Replies fell behind: one lost or failed, p99 over 1 s, or under 90% of the rate."""
    return bool(
        step["lost"]
        or step["failed"]
        or step.get("p99_ms", 1e9) > 1000
        or step["msgs_per_s"] < 0.9 * step["rate"]
    )


def http_runs(system: System, plan: Plan, deadline_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for nrows, count in ((1, plan.sequential_1), (256, plan.sequential_256)):
        bodies = [system.encode(rows(nrows, 37 * k)) for k in range(count + 20)]
        result, cpu = metered(
            system,
            lambda b=bodies: asyncio.run(http.sequential(system.url, system.headers, b)),
            lambda o: len(o.status),
        )
        out[f"sequential_{nrows}"] = {
            **result.summary(),
            "cpu_ms_per_request": cpu,
            "rows_per_s": round(result.summary()["ok_per_s"] * nrows, 1),
        }
    deadline = deadline_s if system.name == "weir" else None  # MLServer takes none
    loads = [(1, 500.0), (256, 500.0)] + ([(1, 1000.0)] if system.name == "weir" else [])
    for nrows, rate in loads:
        body = system.encode(rows(nrows))
        result, cpu = metered(
            system,
            lambda b=body, r=rate: asyncio.run(
                http.open_loop(
                    system.url,
                    system.headers,
                    b,
                    r,
                    plan.open_s,
                    plan.connections,
                    plan.client_timeout_s,
                    deadline,
                )
            ),
            lambda o: len(o.status),
        )
        out[f"open_{nrows}_at_{rate:g}"] = {**result.summary(), "cpu_ms_per_request": cpu}
    return out


def measure(system: System, plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    checked = answers(system)
    console.print(f"  {system.name}: Kafka latency at {plan.latency_rate:g}/s ...")
    values = [system.encode(rows(1, k)) for k in range(64)]
    latency = asyncio.run(
        kafka.open_loop(
            system.bootstrap,
            system.target,
            values,
            plan.latency_rate,
            plan.latency_s,
            plan.drain_s,
            args.fetch_wait_ms,
        )
    ).summary(1)
    out: dict[str, Any] = {"answers": checked, "kafka_latency_1": latency}
    out["kafka_1"] = kafka_ladder(system, plan, 1, plan.rates_1, args.fetch_wait_ms)
    out["kafka_256"] = kafka_ladder(system, plan, 256, plan.rates_256, args.fetch_wait_ms)
    console.print(f"  {system.name}: REST/HTTP ...")
    out["http"] = http_runs(system, plan, args.deadline_s)
    return out


# -- the run ----------------------------------------------------------------------------
def run_broker(
    broker: Broker, args: argparse.Namespace, plan: Plan, venv: Path, models: tuple[Path, Path]
) -> dict[str, Any]:
    onnx_path, joblib_path = models
    env = dict(item.split("=", 1) for item in args.env)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
    for rep in range(args.repetitions):
        for name in SYSTEMS if rep % 2 == 0 else SYSTEMS[::-1]:
            console.print(f"{broker}, repetition {rep + 1}/{args.repetitions}: {name}")
            started = (
                run_mlserver(broker, venv, joblib_path, args.fetch_wait_ms)
                if name == "mlserver"
                else run_weir(broker, onnx_path, args.fetch_wait_ms, env)
            )
            load = os.getloadavg()[0]
            try:
                with started as system:
                    figures = measure(system, plan, args)
            except Exception as exc:  # one failed start or run must not lose the others
                console.print(f"[red]{name} failed in repetition {rep + 1}: {exc!r}[/]")
                figures = {"error": repr(exc)}
            runs[name].append(
                {**figures, "load_average_1m": [round(load, 2), round(os.getloadavg()[0], 2)]}
            )
    return {"runs": runs, "same_answers": same_answers(runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=BROKERS, nargs="+", default=list(BROKERS))
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=None,
        help="every consumer's fetch wait (default: 5 on Tansu, 500 on Kafka)",
    )
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=1.0,
        help="weir's deadline for each HTTP request under load (?timeout=)",
    )
    parser.add_argument("--env", nargs="*", default=[], help="WEIR_*=value for weir")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    venv = ml.ensure_venv()
    models = train(Path(tempfile.mkdtemp(prefix="weir-peer-model-")))
    results: dict[str, Any] = {
        "config": {**{k: str(v) for k, v in vars(args).items()}, "plan": vars(plan)},
        "machine": {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version()},
        "mlserver_versions": ml.installed_versions(venv),
        "targets": TARGETS,
    }
    for broker in args.broker:
        leg = argparse.Namespace(
            **{**vars(args), "fetch_wait_ms": args.fetch_wait_ms or FETCH_WAIT_MS[broker]}
        )
        results[broker] = run_broker(broker, leg, plan, venv, models)
        results[broker]["fetch_wait_ms"] = leg.fetch_wait_ms
        results[broker]["summary"] = ratios(results[broker]["runs"])
        show(console, broker, results[broker]["summary"], results[broker]["same_answers"])
    console.print(f"saved {save('peers', results, args.out)}")


if __name__ == "__main__":
    main()
