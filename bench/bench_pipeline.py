"""Benchmark of the streaming path: weir pipelines against raw onnxruntime and a bare Kafka echo.

Measures issue #20's targets, on one broker per run (`--broker tansu|kafka`), every
measurement on a fresh stack of its own (Tansu's fetches slow down with every record batch a
partition holds, so nothing is measured on a stack an earlier one filled):

- configs (throughput and latency): the cheap ridge regressor, 1 step, 1- and 256-row
  messages (against the bare aiokafka echo); the compute-heavy MLP, 256-row messages, alone,
  as the last of a fused 3-step chain (two tiny models before it), and in that chain with
  its middle step as a sidekick (its own worker, over boundary topics). Throughput:
  messages produced pipelined (bounded in-flight window) to the input topic with a bare
  aiokafka producer, answers read off the output topic by request id, each process's CPU
  meanwhile; latency: one message at a time, end-to-end p50/p99, measured first while the
  topics hold only the warm-up. Each is bracketed by its baselines (`_pipeline_baselines`:
  raw onnxruntime on one thread, as a worker with cpus=1 has; the stages in process; the
  echo), measured on its stack before the pipeline is deployed and once it is gone.
- extra fused steps: per model, the 3-step chain and its last model alone deployed side by
  side, one message to each in turn (configs measured minutes apart on different stacks
  differ by more than a step), against the extra steps' models' own compute per message
  measured on the same stack just before;
- the sidekick boundary: the heavy fused chain and the same chain with its middle step as a
  sidekick, side by side, one message to each in turn.

Prints the figures and the targets met or missed (`_pipeline_report`), and saves
``<out>/pipeline-<UTC timestamp>.json``.

    ./dev bench bench_pipeline --quick --broker tansu
    ./dev bench bench_pipeline --broker kafka
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._pipeline_baselines import baselines, bracketed, own_compute, stage_path
from bench._pipeline_deploy import deploy, rss_mb, settle, upload
from bench._pipeline_load import (
    FULL,
    QUICK,
    Budget,
    encode,
    make_batches,
    measure,
    paired_latency,
    reader,
)
from bench._pipeline_report import TARGETS, console, derive, show
from bench._results import RESULTS, save
from bench._stack import CpuMeter, chain_model, fresh_stack, log_tail
from control.demo.models import diabetes_data, diabetes_regressor, heavy_mlp
from control.records import DeploymentConfig
from control.sdk.client import Client
from control.settings import Settings

ROWS = (1, 256)
EXTRA_STEPS = ("chain-a", "chain-b")
"""The tiny models a 3-step chain runs before its model: each an extra fused step."""
LONE_MSGS, LONE_PAUSE_S = 200, 0.01
"""The stages in process are also measured one message at a time, this many with this
pause after each: as in a latency run, where each message meets caches gone cold."""
SIDEKICK_STEP = "chain-b"
"""The heavy 3-step chain's middle step, run as a sidekick in the sidekick config."""


@dataclass(frozen=True)
class Config:
    """One pipeline measured for throughput and latency on a stack of its own."""

    model: str
    steps: int
    rows: int
    sidekick: bool = False

    @property
    def chain(self) -> list[str]:
        return [*EXTRA_STEPS, self.model][-self.steps :]

    @property
    def name(self) -> str:
        return f"bench-{self.model}-{self.steps}-{self.rows}" + (
            "-sidekick" if self.sidekick else ""
        )


CONFIGS = (
    Config("cheap", 1, 1),
    Config("cheap", 1, 256),
    Config("heavy", 1, 256),
    Config("heavy", 3, 256),
    Config("heavy", 3, 256, sidekick=True),
)


# -- the measurements ---------------------------------------------------------------------
def measure_config(
    config: Config,
    files: dict[str, Path],
    batches: list[np.ndarray],
    payloads: list[bytes],
    budget: Budget,
    threads: int,
    results: dict[str, Any],
) -> dict[str, Any]:
    """On a fresh stack: the baselines, then `config` deployed and measured, then once it is
    gone the baselines again. Deploy time, logs and broker memory go into `results`."""
    steps = {n: files[n] for n in config.chain}
    paths = list(steps.values())
    with fresh_stack() as (home, stack):
        at = reader(stack["kafka_bootstrap"])
        console.print(f"{config.name}: baselines on a fresh stack ...")
        before = baselines(at, paths, batches, payloads, budget, threads, "before")
        client = Client(settings=Settings.discover(home=home))
        started = time.perf_counter()
        pipeline = deploy(
            client,
            config.name,
            upload(client, steps),
            sidekick=SIDEKICK_STEP if config.sidekick else None,
        )
        results["deploy_s"][config.name] = round(time.perf_counter() - started, 2)
        status = pipeline.status()
        engines = status["engines"] + status["sidekicks"]
        pids = {
            "worker": [int(e["pid"]) for e in status["engines"]],
            "sidekick": [int(e["pid"]) for e in status["sidekicks"]],
            "broker": [stack["pids"]["kafka"]],
            "server": [stack["pids"]["server"]],
            "redis": [stack["pids"]["redis"]],
            "bench": [os.getpid()],
        }
        console.print(
            f"{config.name}: deployed in {results['deploy_s'][config.name]} s; measuring ..."
        )
        topics = pipeline.topics()
        try:
            measured = asyncio.run(
                measure(
                    at,
                    topics["input"],
                    topics["output"],
                    payloads,
                    config.rows,
                    budget,
                    pids,
                    weir=True,
                )
            )
        finally:
            results["worker_log_tails"][config.name] = {
                e["name"]: log_tail(home / "run" / "logs" / f"worker-{e['name']}.log")
                for e in engines
            }
            pipeline.undeploy()
            results["broker_rss_mb"][config.name] = rss_mb(stack["pids"]["kafka"])
            results["server_log_tails"][config.name] = log_tail(home / "run" / "server.log")
        settle(pids["worker"] + pids["sidekick"])
        console.print(f"{config.name}: baselines again ...")
        after = baselines(at, paths, batches, payloads, budget, threads, "after")
    return {
        **asdict(config),
        "pipeline": config.name,
        "reader": asdict(at),
        **measured,
        **bracketed(before, after),
    }


def in_process(
    model: str,
    chain: dict[str, Path],
    batches: list[np.ndarray],
    payloads: list[bytes],
    budget: Budget,
    threads: int,
) -> dict[str, Any]:
    """At one message size: the extra steps' models' own compute per message, and the stages
    in process (the last model alone, then all three), back to back and one at a time."""
    figures = {
        "own_compute_ms": own_compute(
            {n: chain[n] for n in EXTRA_STEPS}, batches, budget.raw_s, threads
        )
    }
    for kind, paths in (("one_step", [chain[model]]), ("steps", list(chain.values()))):
        figures[f"stages_{kind}"] = stage_path(paths, payloads, budget.raw_s, threads)
        figures[f"stages_{kind}_lone"] = stage_path(
            paths, payloads, 0.0, threads, LONE_MSGS, pause_s=LONE_PAUSE_S
        )
    return figures


def extra_steps(
    model: str,
    files: dict[str, Path],
    batches: dict[int, list[np.ndarray]],
    payloads: dict[int, list[bytes]],
    budget: Budget,
    threads: int,
) -> list[dict[str, Any]]:
    """What each extra fused step adds, at each message size, on a fresh stack: first, while
    it idles, the extra steps' models' own compute per message and the stages in process (the
    last model alone, then all three; back to back and one message at a time); then the
    3-step chain and its last model alone deployed side by side, the latency of one message
    to each in turn, and each one's worker CPU per message meanwhile."""
    chain = {n: files[n] for n in (*EXTRA_STEPS, model)}
    console.print(f"{model}: extra fused steps, on a fresh stack ...")
    with fresh_stack() as (home, stack):
        at = reader(stack["kafka_bootstrap"])
        out = [
            {
                "model": model,
                "rows": rows,
                **in_process(model, chain, batches[rows], payloads[rows], budget, threads),
            }
            for rows in ROWS
        ]
        client = Client(settings=Settings.discover(home=home))
        models = upload(client, chain)
        pipelines = {
            "one_step": deploy(client, f"bench-{model}-one-step", models[-1:]),
            "steps": deploy(client, f"bench-{model}-steps", models),
        }
        pids = {
            kind: [int(e["pid"]) for e in p.status()["engines"]] for kind, p in pipelines.items()
        }
        for figures in out:
            meter = CpuMeter(pids).start()
            one, many = asyncio.run(
                paired_latency(
                    at, [p.topics() for p in pipelines.values()], payloads[figures["rows"]], budget
                )
            )
            cpu = meter.stop()
            figures.update(
                one_step=one,
                steps=many,
                worker_cpu_ms_per_msg={
                    kind: round(cpu[kind] / (lat["n"] + budget.warmup_msgs) * 1e3, 4)
                    for kind, lat in (("one_step", one), ("steps", many))
                },
            )
    return out


def sidekick_boundary(
    files: dict[str, Path], payloads: list[bytes], budget: Budget
) -> dict[str, Any]:
    """On a fresh stack, the heavy 3-step chain fused and with its middle step as a sidekick,
    deployed side by side: the latency of one 256-row message to each in turn."""
    chain = {n: files[n] for n in (*EXTRA_STEPS, "heavy")}
    console.print("heavy 3-step: fused against a sidekick middle step, on a fresh stack ...")
    with fresh_stack() as (home, stack):
        at = reader(stack["kafka_bootstrap"])
        client = Client(settings=Settings.discover(home=home))
        models = upload(client, chain)
        pipelines = [
            deploy(client, "bench-heavy-fused", models),
            deploy(client, "bench-heavy-sidekick", models, sidekick=SIDEKICK_STEP),
        ]
        fused, sidekick = asyncio.run(
            paired_latency(at, [p.topics() for p in pipelines], payloads, budget)
        )
    return {"rows": 256, "sidekick_step": SIDEKICK_STEP, "fused": fused, "sidekick": sidekick}


def run(budget: Budget) -> dict[str, Any]:
    threads = max(1, int(np.ceil(DeploymentConfig().cpus)))  # what a default deployment gives ORT
    x, _ = diabetes_data()
    batches = {1: make_batches(x, 1, 64), 256: make_batches(x, 256, 8)}
    payloads = {rows: [encode(b) for b in bs] for rows, bs in batches.items()}
    results: dict[str, Any] = {
        "configs": [],
        "deploy_s": {},
        "broker_rss_mb": {},
        "server_log_tails": {},
        "worker_log_tails": {},
        "ort_threads": threads,
    }
    with tempfile.TemporaryDirectory(prefix="weir-bench-models-") as models_dir:
        folder = Path(models_dir)
        files = {
            "cheap": diabetes_regressor(folder / "cheap.onnx"),
            "heavy": heavy_mlp(folder / "heavy.onnx"),
            "chain-a": chain_model(folder / "chain-a.onnx", 0),
            "chain-b": chain_model(folder / "chain-b.onnx", 1),
        }
        for config in CONFIGS:
            results["configs"].append(
                measure_config(
                    config,
                    files,
                    batches[config.rows],
                    payloads[config.rows],
                    budget,
                    threads,
                    results,
                )
            )
        results["extra_steps"] = [
            figures
            for model in ("cheap", "heavy")
            for figures in extra_steps(model, files, batches, payloads, budget, threads)
        ]
        results["sidekick_boundary"] = sidekick_boundary(files, payloads[256], budget)
    return results


def _versions(*names: str) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = package_version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (a few minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to save the JSON figures")
    parser.add_argument(
        "--broker",
        choices=("tansu", "kafka"),
        default=None,
        help="the embedded broker each fresh stack starts (default: WEIR_BROKER, else tansu)",
    )
    args = parser.parse_args(argv)
    if args.broker:
        os.environ["WEIR_BROKER"] = args.broker  # read by each stack's Settings
    budget = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_before = os.getloadavg()
    if load_before[0] > 0.5 * (os.cpu_count() or 1):
        console.print(
            f"[yellow]the machine is busy (load {load_before[0]:.2f}): other processes "
            'compete for the CPUs and the figures will be low; see "others\' cores"[/yellow]'
        )
    results = run(budget)
    checks = derive(results)
    results.update(
        broker=os.environ.get("WEIR_BROKER", "tansu"),
        targets=TARGETS,
        checks=checks,
        quick=args.quick,
        budget=asdict(budget),
        elapsed_s=round(time.perf_counter() - started, 1),
        machine={
            "cpu_count": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "affinity": len(os.sched_getaffinity(0)),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        packages=_versions("onnxruntime", "aiokafka", "pyarrow"),
        env={k: v for k, v in os.environ.items() if k.startswith("WEIR_") and "TOKEN" not in k},
    )
    show(results, checks)
    path = save("pipeline", results, args.out)
    console.print(f"saved {path} ({results['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
