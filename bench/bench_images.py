"""Benchmark of an image pipeline: PNG bytes -> Pillow pre-step (its own environment) -> CNN
(ONNX) -> Python post-step, over HTTP and Kafka against the same three steps in process.

On a fresh embedded stack (`--broker tansu` or `kafka`), with 1 and 16 images per request:

- in process: `load_pipeline(...).run(batch)`, one batch after another (the pre-step still
  runs in its own process, as in a worker), rows/s and p50/p99 ms per batch, measured while
  the stack idles, before anything is deployed;
- HTTP: `POST /pipelines/images` (an Arrow file of PNG bytes), one request at a time
  (p50/p99), then `--clients` at once (rows/s);
- Kafka: Arrow streams to the input topic with a bare aiokafka producer, answers read off
  the result topic: one at a time (p50/p99), then a window of messages in flight (rows/s);
- the boundary a step in its own process crosses: a no-op step as a module (in process)
  against the same as an archive (its own process, weir's Python), per batch of 1 and 16
  PNG files and of 1 and 16 decoded images;
- the log store's bytes per image, logged with no limit and with the default log policy
  (rows over 64 KiB lose their largest inputs, here the PNG bytes).

Prints a table and saves ``<out>/images-<UTC timestamp>.json``.

    .venv/bin/python bench/bench_images.py --quick
    .venv/bin/python bench/bench_images.py --broker kafka
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._images import MODEL_OUTPUT, SIDE, cnn, photos, png_batch, requests, write_steps
from bench._images_report import console, ratios, show
from bench._images_timing import concurrent_rows, cpu_here, per_row, percentiles, timed_runs
from bench._results import RESULTS, finish
from bench._stack import CpuMeter, Replies, fresh_stack, new_producer
from control.sdk.client import Client
from control.sdk.config import DeploymentConfigBuilder
from control.settings import Settings
from engine import codecs
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.pipeline import load_pipeline
from engine.runtimes import get_runtime
from engine.runtimes.base import RuntimeOptions, sha256_file
from streams.messages import CONTENT_TYPE, REQUEST_ID

Broker = Literal["tansu", "kafka"]
IMAGES_PER_REQUEST = (1, 16)


@dataclass(frozen=True)
class Budget:
    """Time bounds and counts of every measurement."""

    seconds: float
    """Each latency or throughput run, per images-per-request."""
    clients: int
    """HTTP requests at once in the throughput runs."""
    window: int
    """Kafka messages in flight in the throughput runs."""
    boundary_runs: int
    logged_images: int
    """Images sent to each of the two log-policy pipelines."""


FULL = Budget(8.0, 4, 8, 60, 64)
QUICK = Budget(2.0, 2, 4, 15, 16)


def stack_for(broker: Broker) -> AbstractContextManager[tuple[Path, dict[str, Any]]]:
    """A fresh embedded stack on `broker`: the one place the bench chooses its broker."""
    if broker == "tansu":
        return fresh_stack()
    if "broker" not in Settings.model_fields:
        raise SystemExit(
            "--broker kafka needs `weir up --broker kafka` (the embedded Apache "
            "Kafka), which this checkout does not have yet"
        )
    return fresh_stack(broker=broker)


# -- in process ---------------------------------------------------------------------------
def load_steps(paths: dict[str, Path], names: list[str], outputs: dict[str, str] | None = None):
    """The named steps loaded in process, as a worker loads them."""
    refs = {}
    for name in names:
        path = paths[name]
        runtime = "onnx" if path.suffix == ".onnx" else "python"
        signature = get_runtime(runtime).inspect(path)
        refs[name] = ModelRef(
            name=name,
            version="bench",
            sha=sha256_file(path),
            runtime=runtime,
            inputs=signature.inputs,
            outputs=signature.outputs,
        )
    steps = [ModelStep(model=refs[n], outputs=(outputs or {}).get(n, {})) for n in names]
    by_sha = {refs[n].sha: paths[n] for n in names}
    return load_pipeline(
        "bench", PipelineSpec(steps=steps), lambda ref: by_sha[ref.sha], RuntimeOptions(threads=1)
    )


def in_process(paths: dict[str, Path], files: list[bytes], budget: Budget) -> dict[str, Any]:
    pipeline = load_steps(paths, ["pre", "cnn", "post"], {"cnn": {MODEL_OUTPUT: "probs"}})
    out: dict[str, Any] = {}
    try:
        for n in IMAGES_PER_REQUEST:
            cpu = cpu_here()
            out[str(n)] = timed_runs(pipeline.run, requests(files, n), budget.seconds, n)
            out[str(n)]["cpu_ms_per_row"] = {
                "all": round((cpu_here() - cpu) * 1e3 / (out[str(n)]["n"] + 1) / n, 2)
            }
    finally:
        pipeline.unload()
    return out


def boundary(paths: dict[str, Path], files: list[bytes], budget: Budget) -> dict[str, Any]:
    """Per batch, the no-op step in its own process against the same in process: wall ms,
    and CPU ms of this process and its children (the step's process) together."""
    decoded = codecs.batch_from_arrays(
        {
            "image": np.random.default_rng(0).random(
                (max(IMAGES_PER_REQUEST), 3, SIDE, SIDE), dtype=np.float32
            )
        }
    )
    kinds = {"png": lambda n: png_batch(files[:n]), "decoded": lambda n: decoded.slice(0, n)}
    out: dict[str, Any] = {}
    for variant in ("echo_py", "echo_zip"):
        step = load_steps(paths, [variant])
        try:
            for kind, make in kinds.items():
                for n in IMAGES_PER_REQUEST:
                    batch = make(n)
                    step.run(batch)
                    cpu, started = cpu_here(), time.perf_counter()
                    for _ in range(budget.boundary_runs):
                        step.run(batch)
                    figures = out.setdefault(f"{kind}_{n}", {"mb": round(batch.nbytes / 1e6, 2)})
                    figures[f"{variant}_ms"] = round(
                        (time.perf_counter() - started) * 1e3 / budget.boundary_runs, 3
                    )
                    figures[f"{variant}_cpu_ms"] = round(
                        (cpu_here() - cpu) * 1e3 / budget.boundary_runs, 3
                    )
        finally:
            step.unload()
    for figures in out.values():
        figures["own_process_adds_ms"] = round(figures["echo_zip_ms"] - figures["echo_py_ms"], 3)
        figures["own_process_adds_cpu_ms"] = round(
            figures["echo_zip_cpu_ms"] - figures["echo_py_cpu_ms"], 3
        )
    return out


# -- over HTTP ----------------------------------------------------------------------------
def over_http(
    url: str, token: str, files: list[bytes], budget: Budget, meter: CpuMeter
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": codecs.ARROW_FILE}
    out: dict[str, Any] = {}
    with httpx.Client(headers=headers, timeout=60) as http:

        def post(batch: pa.RecordBatch) -> None:
            response = http.post(url, content=codecs.encode(batch, codecs.ARROW_FILE))
            response.raise_for_status()

        for n in IMAGES_PER_REQUEST:
            latency = timed_runs(post, requests(files, n), budget.seconds, n)
            meter.start()
            rows = concurrent_rows(post, files, n, budget.clients, budget.seconds)
            out[str(n)] = {**latency, **per_row(meter.stop(), rows)}
    return out


def processes(stack: dict[str, Any], pipeline: Any) -> dict[str, list[int]]:
    """The stack's processes by role; a worker's children are its steps' own processes."""
    workers = [e["pid"] for e in pipeline.status()["engines"] if e.get("pid")]
    steps = [
        int(pid)
        for worker in workers
        for task in Path(f"/proc/{worker}/task").iterdir()
        for pid in (task / "children").read_text().split()
    ]
    return {
        "worker": workers,
        "step_process": steps,
        "broker": [stack["pids"]["kafka"]],
        "server": [stack["pids"]["server"]],
        "bench": [os.getpid()],
    }


# -- over Kafka ---------------------------------------------------------------------------
async def over_kafka(
    bootstrap: str, topics: dict[str, str], files: list[bytes], budget: Budget, meter: CpuMeter
) -> dict[str, Any]:
    producer = new_producer(bootstrap)
    await producer.start()
    replies = await Replies(bootstrap, topics["output"], fetch_wait_ms=5).start()
    out: dict[str, Any] = {}
    try:
        for n in IMAGES_PER_REQUEST:
            payloads = [
                codecs.encode(b, codecs.ARROW_STREAM) for b, _ in zip(requests(files, n), range(8))
            ]
            send = _sender(producer, replies, topics["input"])
            await send(payloads[0])  # warm up
            times, started, i = [], time.perf_counter(), 0
            while time.perf_counter() - started < budget.seconds or len(times) < 3:
                t = time.perf_counter()
                await send(payloads[i % len(payloads)])
                times.append((time.perf_counter() - t) * 1e3)
                i += 1
            meter.start()
            rows = await _windowed(send, payloads, n, budget.window, budget.seconds)
            out[str(n)] = {**percentiles(times), **per_row(meter.stop(), rows)}
    finally:
        await producer.stop()
        await replies.stop()
    return out


def _sender(producer: Any, replies: Replies, topic: str) -> Callable[[bytes], Any]:
    async def send(value: bytes) -> None:
        rid = uuid.uuid4().hex
        answer = replies.expect(rid)
        await producer.send(
            topic,
            value,
            headers=[(CONTENT_TYPE, codecs.ARROW_STREAM.encode()), (REQUEST_ID, rid.encode())],
        )
        reply = await asyncio.wait_for(answer, timeout=60)
        if reply.error:
            raise RuntimeError(f"the pipeline failed: {reply.error.decode()}")

    return send


async def _windowed(
    send: Callable[[bytes], Any], payloads: list[bytes], n: int, window: int, seconds: float
) -> int:
    """Rows answered with `window` messages in flight for `seconds`."""
    stop = time.perf_counter() + seconds

    async def lane(k: int) -> int:
        done = 0
        while time.perf_counter() < stop:
            await send(payloads[(k + done) % len(payloads)])
            done += n
        return done

    return sum(await asyncio.gather(*(lane(k) for k in range(window))))


# -- the log store ------------------------------------------------------------------------
def log_bytes_per_image(
    client: Client, home: Path, pipeline: Any, files: list[bytes], count: int
) -> dict[str, Any]:
    """Send `count` images in 16-image requests; the pipeline's log files' bytes per image."""
    batches = requests(files, 16)
    for _ in range(0, count, 16):
        pipeline.infer(pa.Table.from_batches([next(batches)]))
    logged = len(pipeline.logs(limit=count * 2))  # waits until they are in the store
    folder = home / "logstore" / "default" / pipeline.name
    size = sum(f.stat().st_size for f in folder.rglob("*.parquet"))
    return {"images": logged, "bytes": size, "bytes_per_image": round(size / max(logged, 1))}


# -- the plan -----------------------------------------------------------------------------
def run(broker: Broker, budget: Budget) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="weir-bench-images-"))
    paths = write_steps(root)
    paths["cnn"] = cnn(root / "cnn.onnx")
    files = photos(32)
    results: dict[str, Any] = {
        "broker": broker,
        "png_bytes_mean": round(np.mean([len(f) for f in files])),
    }
    with stack_for(broker) as (home, stack):
        console.print("in process ...")
        results["in_process"] = in_process(paths, files, budget)
        results["boundary"] = boundary(paths, files, budget)
        client = Client(settings=Settings.discover(home=home))
        pre = client.upload_model("pre", paths["pre"])
        model = client.upload_model("cnn", paths["cnn"])
        post = client.upload_model("post", paths["post"])

        def deploy(name: str, config: Any) -> Any:
            started = time.perf_counter()
            pipeline = (
                client.build_pipeline(name)
                .add_model_step(pre)
                .add_model_step(model, outputs={MODEL_OUTPUT: "probs"})
                .add_model_step(post)
            ).deploy(config, timeout_s=900, quiet=True)
            results.setdefault("deploy_s", {})[name] = round(time.perf_counter() - started, 1)
            return pipeline

        console.print("deploying (the first deploy may build the pre-step's environment) ...")
        pipeline = deploy("images", DeploymentConfigBuilder().build())
        meter = CpuMeter(processes(stack, pipeline))
        console.print("over HTTP ...")
        results["http"] = over_http(pipeline.url(), stack["token"], files, budget, meter)
        console.print("over Kafka ...")
        results["kafka"] = asyncio.run(
            over_kafka(stack["kafka_bootstrap"], pipeline.topics(), files, budget, meter)
        )
        pipeline.undeploy()
        console.print("log store ...")
        unlimited = DeploymentConfigBuilder().log_policy(max_row_bytes=None).build()
        results["logs"] = {}
        for name, config in (
            ("images-nolimit", unlimited),
            ("images-policy", DeploymentConfigBuilder().build()),
        ):
            logged = deploy(name, config)
            results["logs"][name] = log_bytes_per_image(
                client, home, logged, files, budget.logged_images
            )
            logged.undeploy()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--broker", choices=["tansu", "kafka"], default="tansu")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to save the JSON figures")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_before = os.getloadavg()
    results = run(args.broker, budget)
    results.update(ratios=ratios(results), quick=args.quick, budget=asdict(budget))
    show(results)
    path = finish("images", results, args.out, started, load_before)
    console.print(f"saved {path} ({results['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
