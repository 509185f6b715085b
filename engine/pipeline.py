"""A pipeline version's compute as plain functions over record batches.

Messages between steps carry the step's working columns plus the pipeline's
original input under `in.<field>` (so the last step can log it); a runtime only
ever sees the working columns. `CompiledPipeline.run` runs every step in
process, as tests and the benchmarks' baseline do; the stream layer runs
`run_step` in one agent per step and `finish` in the last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from engine.definition import ModelRef, PipelineSpec, Step
from engine.errors import StepFailed, WeirError
from engine.runtimes import get_runtime
from engine.runtimes.base import Runtime, RuntimeOptions

IN_PREFIX = "in."
OUT_PREFIX = "out."
TIME = "time"
CHECK_FAILURES = "check_failures"
ANOMALY_COUNT = "anomaly.count"
META_VERSION = "metadata.pipeline_version"
META_MODEL = "metadata.model"
META_ELAPSED = "metadata.elapsed_ns"

ArtifactPath = Callable[[ModelRef], Path]


def split_carried(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """(working columns, carried `in.*` columns) of an inter-step message."""
    names = batch.schema.names
    working = [n for n in names if not n.startswith(IN_PREFIX)]
    carried = [n for n in names if n.startswith(IN_PREFIX)]
    return batch.select(working), batch.select(carried)


def _join(left: pa.RecordBatch, right: pa.RecordBatch) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [*left.columns, *right.columns], names=[*left.schema.names, *right.schema.names]
    )


def _prefixed(batch: pa.RecordBatch, prefix: str) -> pa.RecordBatch:
    return batch.rename_columns([prefix + n for n in batch.schema.names])


class StepRunner:
    """One step of a version with its loaded runtimes."""

    def __init__(self, step: Step, runtimes: dict[tuple[str, str], Runtime]) -> None:
        self.step = step
        self.runtime = runtimes[(step.model.name, step.model.version)]

    @property
    def label(self) -> str:
        return self.step.summary()

    def run(self, working: pa.RecordBatch) -> pa.RecordBatch:
        """The step's outputs for `working` (one row out per row in)."""
        try:
            out = self.runtime.predict(working)
        except WeirError:
            raise
        except Exception as exc:  # a bug in a runtime must not kill the worker
            raise StepFailed(self.label, f"{type(exc).__name__}: {exc}") from exc
        if out.num_rows != working.num_rows:
            raise StepFailed(self.label, f"returned {out.num_rows} rows for {working.num_rows}")
        return out


@dataclass
class CompiledPipeline:
    """A version's steps, loaded and ready to run."""

    version: str
    spec: PipelineSpec
    steps: list[StepRunner]
    runtimes: dict[tuple[str, str], Runtime]

    @staticmethod
    def start(batch: pa.RecordBatch) -> pa.RecordBatch:
        """Turn a pipeline input into the first step's message (input carried along)."""
        return _join(batch, _prefixed(batch, IN_PREFIX))

    def run_step(self, index: int, message: pa.RecordBatch) -> pa.RecordBatch:
        """Run step `index` on an inter-step message; returns the next message."""
        working, carried = split_carried(message)
        return _join(self.steps[index].run(working), carried)

    def finish(self, message: pa.RecordBatch, *, started_ns: int) -> pa.RecordBatch:
        """The result rows: time, in.*, out.*, check failures and metadata."""
        working, carried = split_carried(message)
        n = message.num_rows
        now_ns = time.time_ns()
        last = self.steps[-1].step.model if self.steps else None
        extra = {
            TIME: pa.array([now_ns // 1_000_000] * n, pa.timestamp("ms", tz="UTC")),
            CHECK_FAILURES: pa.array([[] for _ in range(n)], pa.list_(pa.string())),
            ANOMALY_COUNT: pa.array([0] * n, pa.int32()),
            META_VERSION: pa.array([self.version] * n, pa.string()),
            META_MODEL: pa.array([last.label() if last else ""] * n, pa.string()),
            META_ELAPSED: pa.array([max(now_ns - started_ns, 0)] * n, pa.int64()),
        }
        head = pa.RecordBatch.from_pydict({TIME: extra.pop(TIME)})
        body = _join(_join(head, carried), _prefixed(working, OUT_PREFIX))
        return _join(body, pa.RecordBatch.from_pydict(extra))

    def run(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Every step in process: input batch in, result rows out."""
        started = time.time_ns()
        message = self.start(batch)
        for index in range(len(self.steps)):
            message = self.run_step(index, message)
        return self.finish(message, started_ns=started)

    def unload(self) -> None:
        for runtime in self.runtimes.values():
            runtime.unload()


def load_pipeline(
    version: str, spec: PipelineSpec, artifact_path: ArtifactPath,
    options: RuntimeOptions = RuntimeOptions(),
) -> CompiledPipeline:
    """Load every model of `spec` (each checked against its sha256) and compose the steps."""
    runtimes: dict[tuple[str, str], Runtime] = {}
    for ref in spec.models():
        runtime = get_runtime(ref.runtime)(ref)
        runtime.load(artifact_path(ref), options)
        runtimes[(ref.name, ref.version)] = runtime
    steps = [StepRunner(step, runtimes) for step in spec.steps]
    return CompiledPipeline(version, spec, steps, runtimes)
