"""The baselines of bench_pipeline, measured on each pipeline's own stack while it idles:
raw onnxruntime, the worker's stages in process (no Kafka), and the bare aiokafka echo.

Each is measured before the pipeline is deployed and again once it is gone; ratios are
against their mean (`bracketed`): this machine's speed drifts within minutes.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._pipeline_load import Budget, Reader, headers, measure_echo


def raw_onnxruntime(
    paths: list[Path], batches: list[np.ndarray], seconds: float, threads: int
) -> dict[str, float]:
    """The sessions chained directly on the same numpy batches: rows/s, and ms per batch of
    wall time and of the calling thread's CPU (onnxruntime's one thread is the caller's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    sessions = [
        ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in paths
    ]
    names = [s.get_inputs()[0].name for s in sessions]

    def chain(x: np.ndarray) -> np.ndarray:
        for session, name in zip(sessions, names):
            x = session.run(None, {name: x})[0]
        return x

    for batch in batches:  # warm up
        chain(batch)
    n = rows = 0
    start, cpu = time.perf_counter(), time.thread_time()
    while time.perf_counter() - start < seconds or n < len(batches):
        batch = batches[n % len(batches)]
        chain(batch)
        n += 1
        rows += len(batch)
    elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
    return {
        "rows_per_s": round(rows / elapsed, 1),
        "ms_per_batch": round(elapsed / n * 1e3, 4),
        "cpu_ms_per_batch": round(cpu / n * 1e3, 4),
        "batches": n,
    }


def stage_path(
    paths: list[Path],
    payloads: list[bytes],
    seconds: float,
    threads: int,
    min_msgs: int = 64,
    *,
    pause_s: float = 0.0,
) -> dict[str, float]:
    """What a main worker's fused stage computes per message, in process with no Kafka:
    decode, every step on the micro-batch, encode and sink (ms of wall time and of CPU per
    message). Worker CPU minus this CPU is what the Kafka clients and the loop cost.
    `paths` are ONNX models, or Python steps (`.py`).

    With `pause_s`, messages go one at a time with that pause after each (its time not
    counted), as a lone message reaches a worker: its caches cold from what ran meanwhile."""
    from aiokafka.structs import ConsumerRecord

    from engine.definition import ModelRef, ModelStep, PipelineSpec
    from engine.pipeline import load_pipeline
    from engine.runtimes.base import RuntimeOptions
    from streams.plan import Layout, worker_stages
    from streams.settings import WorkerSettings
    from streams.stage import StepCounters
    from streams.topics import TopicMap

    refs = [
        ModelRef(
            name=f"m{i}",
            version=f"v{i}",
            sha=hashlib.sha256(p.read_bytes()).hexdigest(),
            runtime="python" if p.suffix == ".py" else "onnx",
        )
        for i, p in enumerate(paths)
    ]
    files = {ref.name: path for ref, path in zip(refs, paths)}
    spec = PipelineSpec(steps=[ModelStep(model=ref) for ref in refs])
    pipeline = load_pipeline(
        "bench", spec, lambda ref: files[ref.name], RuntimeOptions(threads=threads)
    )
    stages = worker_stages(
        pipeline, Layout("bench", "stages", "d1"), TopicMap.load(), "main", WorkerSettings()
    )
    counters = StepCounters()

    def record(
        topic: str, offset: int, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> ConsumerRecord:
        return ConsumerRecord(
            topic,
            0,
            offset,
            1_700_000_000_000,
            0,
            None,
            value,
            None,
            0,
            len(value or b""),
            tuple(headers),
        )

    def through_all(count: int) -> None:
        records = [
            record(stages[0].source, i, payloads[i % len(payloads)], headers(f"s{i}"))
            for i in range(count)
        ]
        for stage in stages:
            sent, done, incoming = [], 0, stage.receive(records)
            while done < len(incoming):
                chunk = stage.chunk(incoming, done)
                stage.run(chunk)
                out = stage.outgoing(chunk, counters)
                done += len(chunk)
                sent += [o for sent_for_one in out for o in sent_for_one]
            records = [record(o.topic, i, o.value, o.headers) for i, o in enumerate(sent)]

    each = 1 if pause_s else min_msgs
    through_all(min_msgs)  # warm up
    n, paused = 0, 0.0
    start, cpu = time.perf_counter(), time.thread_time()
    while time.perf_counter() - start - paused < seconds or n < min_msgs:
        through_all(each)
        n += each
        if pause_s:
            time.sleep(pause_s)
            paused += pause_s
    elapsed, cpu = time.perf_counter() - start - paused, time.thread_time() - cpu
    pipeline.unload()
    return {
        "ms_per_msg": round(elapsed / n * 1e3, 4),
        "cpu_ms_per_msg": round(cpu / n * 1e3, 4),
        "msgs": n,
    }


def own_compute(
    steps: dict[str, Path], batches: list[np.ndarray], seconds: float, threads: int
) -> dict[str, float]:
    """Each model's own compute per message: raw onnxruntime alone on `batches`, ms of the
    calling thread's CPU (wall time on a shared machine also counts others' turns)."""
    return {
        name: raw_onnxruntime([path], batches, seconds, threads)["cpu_ms_per_batch"]
        for name, path in steps.items()
    }


def baselines(
    at: Reader,
    paths: list[Path],
    batches: list[np.ndarray],
    payloads: list[bytes],
    budget: Budget,
    threads: int,
    tag: str,
) -> dict[str, Any]:
    """The bare aiokafka echo of `payloads`, raw onnxruntime and the stages in process on
    `batches` (the same rows), while the stack idles."""
    return {
        "echo": asyncio.run(measure_echo(at, payloads, len(batches[0]), budget, tag)),
        "raw_onnxruntime": raw_onnxruntime(paths, batches, budget.raw_s, threads),
        "stages_in_process": stage_path(paths, payloads, budget.raw_s, threads),
    }


def bracketed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The mean of each figure measured before and after a pipeline (both kept as well)."""

    def mean(a: Any, b: Any) -> Any:
        if isinstance(a, dict):
            return {k: mean(a[k], b[k]) for k in a if k in b}
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return round((a + b) / 2, 4)
        return a if a == b else None

    return {
        kind: {**mean(before[kind], after[kind]), "before": before[kind], "after": after[kind]}
        for kind in before
    }
