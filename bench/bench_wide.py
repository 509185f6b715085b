"""Benchmark of wide rows: an MLP over 512 features through weir's Kafka path, against raw
onnxruntime on the same batches, in one run (issue #20, "Wide rows").

The MLP is 512 -> 384 -> 384 -> 1 (bench/_wide.py). Requests are 256-row Arrow streams with
one `tensor` column. Measured, in order:

- raw onnxruntime: the MLP on the same 256 x 512 float32 batches, one thread (as a worker
  with cpus=1 runs it), rows/s; again at the end, and the ratios are against the mean;
- the 1-step pipeline (the MLP alone) fed 512-feature requests (0.5 MB each), and the
  3-step chain (a Python step widening 10 features to 512, the MLP, a Python step passing
  its output on) fed 10-feature requests: each on a fresh embedded stack, produced open
  loop to the input topic at `--load` times raw onnxruntime's rows/s for `--seconds`, the
  answers read off the result topic; rows/s answered, and the CPU each process spent per
  message (worker, broker, server with its log agent, Redis, the bench client);
- each pipeline's stage path in process, without Kafka (decode, every step, finish,
  encode, sink), as a worker runs it on fetches of 64 messages: the best ratio to raw
  onnxruntime the pipeline could reach if Kafka cost nothing;
- where the 1-step pipeline's time goes, per message: in process, each codec part, the log agent's
  ingest of the answers; the Kafka client (aiokafka as a worker runs it) sending and
  fetching one request-sized and one answer-sized record; with `--sample`, the worker's
  main thread sampled during a second load run, and with `--profile` its functions under
  cProfile during a third (bench/_sample_main.py).

Prints a table with the ratios and the targets and saves ``<out>/wide-<UTC timestamp>.json``.

    .venv/bin/python bench/bench_wide.py --quick
    .venv/bin/python bench/bench_wide.py --sample --profile
    .venv/bin/python bench/bench_wide.py --broker kafka
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _kafka_load as kafka
from bench import _wide as wide
from bench._brokers import BROKERS, Broker, start_broker
from bench._pipeline_baselines import raw_onnxruntime, stage_path
from bench._results import RESULTS, finish
from bench._sample_main import difference, profiled_phase, snapshot, top
from bench._stack import CpuMeter
from bench._weir import SAMPLE_SHIM, WeirStack, kafka_target, weir_stack
from bench._wide_report import TARGETS, console, show
from bench.bench_kafka_client import measure_one

FETCH_WAIT_MS = {"tansu": 5, "kafka": 500}
"""The bench client's fetch wait, per broker (as bench_peers: Tansu holds a fetch for its
whole wait; Apache Kafka answers a waiting fetch when data arrives)."""


@dataclass(frozen=True)
class Budget:
    """Durations and counts of every measurement."""

    seconds: float
    """Each open-loop run sends for this long (at the offered rate)."""
    drain_s: float
    raw_s: float
    parts_s: float
    warmup_msgs: int
    client_records: int
    """Records of each size the Kafka client measurement sends and fetches."""


FULL = Budget(seconds=5.0, drain_s=40.0, raw_s=3.0, parts_s=1.0, warmup_msgs=20, client_records=120)
QUICK = Budget(seconds=1.5, drain_s=20.0, raw_s=0.5, parts_s=0.2, warmup_msgs=5, client_records=20)


# -- over Kafka ---------------------------------------------------------------------------
def measure(
    stack: WeirStack,
    values: list[bytes],
    rate: float,
    budget: Budget,
    fetch_wait_ms: int,
    sample_dir: Path | None = None,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    """A warm-up (every message answered, none failed), then `rate` messages/s open loop:
    rows/s answered, CPU ms per answered message by process, and the worker's sampled main
    thread (ms per message by task and package) with `sample_dir`, or its functions under
    cProfile with `profile_dir`."""
    aim = kafka_target(stack)
    warm = asyncio.run(
        kafka.open_loop(
            stack.bootstrap, aim, values, 20.0, budget.warmup_msgs / 20.0, 60.0, fetch_wait_ms
        )
    )
    if warm.failed or len(warm.latency_s) < warm.sent:
        raise RuntimeError(
            f"warm-up: {warm.summary(wide.ROWS)}; see the worker's log under "
            f"{stack.home / 'run' / 'logs'}"
        )
    pids = {**stack.pids, "bench": [os.getpid()]}
    [worker] = stack.pids["worker"]
    before = snapshot(sample_dir, worker) if sample_dir else {}
    meter = CpuMeter(pids).start()

    def load() -> kafka.KafkaOutcome:
        return asyncio.run(
            kafka.open_loop(
                stack.bootstrap, aim, values, rate, budget.seconds, budget.drain_s, fetch_wait_ms
            )
        )

    outcome, dump = profiled_phase(profile_dir, worker, load) if profile_dir else (load(), None)
    cpu = meter.stop()
    answered = max(len(outcome.latency_s), 1)
    out: dict[str, Any] = {
        "offered_msgs_per_s": round(rate, 1),
        **outcome.summary(wide.ROWS),
        "cpu_ms_per_msg": {name: round(cpu[name] * 1e3 / answered, 3) for name in pids},
        "cpu_s": cpu,
    }
    if sample_dir:
        spent = difference(snapshot(sample_dir, worker), before)
        most = sorted(spent.items(), key=lambda kv: -kv[1])[:12]
        out["worker_sampled_ms_per_msg"] = [
            [task, package, round(s * 1e3 / answered, 3)] for (task, package), s in most
        ]
    if dump is not None and dump.exists():
        out["worker_cprofile_ms_per_msg"] = top(dump, answered)
    return out


def pipeline_run(
    broker: Broker,
    paths: dict[str, Path],
    steps: list[str],
    values: list[bytes],
    rate: float,
    budget: Budget,
    env: dict[str, str],
    *,
    sample_dir: Path | None = None,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    """`steps` deployed on a fresh stack and measured (see `measure`)."""
    chain = [(name.replace("_", "-"), paths[name]) for name in steps]
    if profile_dir is not None:
        env = {**env, "PYTHONPATH": str(SAMPLE_SHIM), "WEIR_BENCH_CPROFILE_DIR": str(profile_dir)}
    with weir_stack(
        broker, paths["mlp"], name=f"wide-{len(steps)}", env=env, sample_dir=sample_dir, steps=chain
    ) as stack:
        started = time.perf_counter()
        figures = measure(
            stack, values, rate, budget, FETCH_WAIT_MS[broker], sample_dir, profile_dir
        )
        figures["measured_s"] = round(time.perf_counter() - started, 1)
        return figures


def client_costs(broker: Broker, sizes: dict[str, int], records: int) -> dict[str, Any]:
    """The Kafka client's CPU per record sent and fetched, for records of `sizes` bytes, on
    a fresh broker (bench_kafka_client's measurement of aiokafka as a worker runs it)."""
    home = Path(tempfile.mkdtemp(prefix="weir-bench-wide-client-"))
    service = start_broker(broker, home)
    try:
        return {
            label: {"bytes": size, **measure_one("aiokafka", service.address, size, records)}
            for label, size in sizes.items()
        }
    finally:
        service.stop()


# -- the run --------------------------------------------------------------------------------
def run(
    broker: Broker, budget: Budget, load: float, env: dict[str, str], sample: bool, profile: bool
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="weir-bench-wide-"))
    paths = wide.write_models(root)
    wide_batches, narrow_batches = wide.batches(wide.FEATURES), wide.batches(wide.NARROW, seed=1)
    requests = {
        "one_step": [wide.request(b) for b in wide_batches],
        "three_step": [wide.request(b) for b in narrow_batches],
    }
    steps = {"one_step": ["mlp"], "three_step": ["widen", "mlp", "pass_on"]}
    results: dict[str, Any] = {"broker": broker, "load": load, "env": env}
    raw_before = raw_onnxruntime([paths["mlp"]], wide_batches, budget.raw_s, threads=1)
    rate = load * raw_before["rows_per_s"] / wide.ROWS
    console.print(
        f"raw onnxruntime {raw_before['rows_per_s']:,.0f} rows/s; offering "
        f"{rate:.0f} msgs/s to each pipeline"
    )
    for kind in ("one_step", "three_step"):
        console.print(f"{kind}: fresh stack, deploy, load ...")
        results[kind] = pipeline_run(broker, paths, steps[kind], requests[kind], rate, budget, env)
    console.print("where the 1-step pipeline's time goes ...")
    parts = results["parts"] = wide.parts(paths["mlp"], requests["one_step"], budget.parts_s)
    console.print("each pipeline's stage path in process (no Kafka) ...")
    with threadpool_limits(1):  # numpy's BLAS on one thread, as in a worker with cpus=1
        results["in_process"] = {
            kind: stage_path(
                [paths[name] for name in steps[kind]], requests[kind], budget.parts_s, threads=1
            )
            for kind in TARGETS
        }
    results["kafka_client"] = client_costs(
        broker,
        {"request": parts["request_bytes"], "answer": parts["answer_bytes"]},
        budget.client_records,
    )
    if sample:
        console.print("one_step again, its worker sampled ...")
        results["one_step_sampled"] = pipeline_run(
            broker,
            paths,
            steps["one_step"],
            requests["one_step"],
            rate,
            budget,
            env,
            sample_dir=Path(tempfile.mkdtemp(prefix="weir-sample-")),
        )
    if profile:
        console.print("one_step again, its worker under cProfile ...")
        shorter = Budget(**{**asdict(budget), "seconds": min(budget.seconds, 2.0)})
        results["one_step_cprofile"] = pipeline_run(  # shorter: cProfile slows the worker
            broker,
            paths,
            steps["one_step"],
            requests["one_step"],
            rate,
            shorter,
            env,
            profile_dir=Path(tempfile.mkdtemp(prefix="weir-cprofile-")),
        )
    raw_after = raw_onnxruntime([paths["mlp"]], wide_batches, budget.raw_s, threads=1)
    results["raw_onnxruntime"] = {
        "rows_per_s": round((raw_before["rows_per_s"] + raw_after["rows_per_s"]) / 2, 1),
        "before": raw_before,
        "after": raw_after,
    }
    results["ratios"] = {
        kind: round(results[kind]["rows_per_s"] / results["raw_onnxruntime"]["rows_per_s"], 3)
        for kind in TARGETS
    }
    model_ms = (raw_before["ms_per_batch"] + raw_after["ms_per_batch"]) / 2
    for kind in TARGETS:
        results[kind]["ceilings"] = ceilings(results[kind]["cpu_ms_per_msg"], model_ms)
        results["in_process"][kind]["x_raw"] = round(
            model_ms / results["in_process"][kind]["ms_per_msg"], 3
        )
    return results


def ceilings(cpu_ms_per_msg: dict[str, float], model_ms: float) -> dict[str, float]:
    """The best ratio to raw onnxruntime the measured CPU allows: the worker alone on a core
    of its own (the model's ms per batch over the worker's CPU ms per message), and every
    process's CPU spread over all the machine's cores."""
    total = sum(cpu_ms_per_msg.values())
    return {
        "worker_alone": round(model_ms / max(cpu_ms_per_msg["worker"], 1e-9), 3),
        "all_cores": round(model_ms * (os.cpu_count() or 1) / max(total, 1e-9), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=BROKERS, default="tansu")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="how long each open-loop run sends (default 5; --quick 1.5)",
    )
    parser.add_argument(
        "--load",
        type=float,
        default=1.0,
        help="offered rows/s as a multiple of raw onnxruntime's (default 1.0)",
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="also run the 1-step pipeline with its worker's main thread sampled",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run the 1-step pipeline with its worker under cProfile",
    )
    parser.add_argument(
        "--env",
        nargs="*",
        default=[],
        metavar="WEIR_X=VALUE",
        help="settings for the stack's server and workers",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to save the JSON figures")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else FULL
    if args.seconds is not None:
        budget = Budget(**{**asdict(budget), "seconds": args.seconds})
    env = dict(item.split("=", 1) for item in args.env)
    started, load_before = time.perf_counter(), os.getloadavg()
    results = run(args.broker, budget, args.load, env, args.sample, args.profile)
    results.update(quick=args.quick, budget=asdict(budget))
    show(results)
    path = finish("wide", results, args.out, started, load_before)
    console.print(f"saved {path} ({results['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
