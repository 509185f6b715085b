"""A pipeline version's compute as plain functions over record batches.

Messages between steps carry the step's working columns plus carried columns:
the pipeline's original input under `in.<field>` (so the last step can log it)
and, for models a validation refers to, their inputs and outputs under
`_v.<model>.<inputs|outputs>.<field>` (so the last step can check them). A
runtime only ever sees the working columns. `CompiledPipeline.run` runs every
step in process, as tests and the benchmarks' baseline do; the stream layer
runs `run_step` in one agent per step and `finish` in the last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine import codecs, expressions
from engine.definition import ModelRef, PipelineSpec, Step, Validation
from engine.errors import ExpressionError, StepFailed, WeirError
from engine.runtimes import get_runtime
from engine.runtimes.base import Runtime, RuntimeOptions

IN_PREFIX = "in."
OUT_PREFIX = "out."
CHECK_PREFIX = "_v."
ANOMALY_PREFIX = "anomaly."
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
    carried = [n for n in names if n.startswith((IN_PREFIX, CHECK_PREFIX))]
    working = [n for n in names if n not in carried]
    return batch.select(working), batch.select(carried)


def _join(left: pa.RecordBatch, right: pa.RecordBatch) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [*left.columns, *right.columns], names=[*left.schema.names, *right.schema.names]
    )


def _prefixed(batch: pa.RecordBatch, prefix: str) -> pa.RecordBatch:
    return batch.rename_columns([prefix + n for n in batch.schema.names])


class StepRunner:
    """One step of a version with its loaded runtimes."""

    def __init__(self, step: Step, runtimes: dict[tuple[str, str], Runtime],
                 checked: bool = False) -> None:
        self.step = step
        self.runtime = runtimes[(step.model.name, step.model.version)]
        self.checked = checked
        """Carry this step's inputs and outputs along because a validation reads them."""

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
    checks: list[tuple[Validation, expressions.Expression]]

    @staticmethod
    def start(batch: pa.RecordBatch) -> pa.RecordBatch:
        """Turn a pipeline input into the first step's message (input carried along)."""
        return _join(batch, _prefixed(batch, IN_PREFIX))

    def run_step(self, index: int, message: pa.RecordBatch) -> pa.RecordBatch:
        """Run step `index` on an inter-step message; returns the next message."""
        working, carried = split_carried(message)
        runner = self.steps[index]
        out = runner.run(working)
        if runner.checked:
            base = f"{CHECK_PREFIX}{runner.step.model.name}."
            carried = _join(_join(carried, _prefixed(working, base + "inputs.")),
                            _prefixed(out, base + "outputs."))
        return _join(out, carried)

    def finish(self, message: pa.RecordBatch, *, started_ns: int) -> pa.RecordBatch:
        """The result rows: time, in.*, out.*, check failures, anomaly.* and metadata."""
        working, carried = split_carried(message)
        carried, checked = _split_checked(carried)
        n = message.num_rows
        now_ns = time.time_ns()
        last = self.steps[-1].step.model if self.steps else None
        failed = self._checks(checked, n)
        count = np.sum(list(failed.values()), axis=0, dtype=np.int32) if failed else np.zeros(n, np.int32)
        extra = {
            TIME: pa.array(np.full(n, now_ns // 1_000_000), pa.timestamp("ms", tz="UTC")),
            CHECK_FAILURES: pa.array(count, pa.int32()),
            ANOMALY_COUNT: pa.array(count, pa.int32()),
            **{ANOMALY_PREFIX + name: pa.array(mask, pa.bool_()) for name, mask in failed.items()},
            META_VERSION: pa.array([self.version] * n, pa.string()),
            META_MODEL: pa.array([last.label() if last else ""] * n, pa.string()),
            META_ELAPSED: pa.array([max(now_ns - started_ns, 0)] * n, pa.int64()),
        }
        head = pa.RecordBatch.from_pydict({TIME: extra.pop(TIME)})
        body = _join(_join(head, carried), _prefixed(working, OUT_PREFIX))
        return _join(body, pa.RecordBatch.from_pydict(extra))

    def _checks(self, checked: pa.RecordBatch, n: int) -> dict[str, np.ndarray]:
        """Each validation's failure mask (True where the row fails it)."""
        if not self.checks:
            return {}
        tensors = _tensors(checked)
        failed = {}
        for validation, expr in self.checks:
            try:
                failed[validation.name] = ~expressions.check(expr, tensors)
            except ExpressionError as exc:
                raise StepFailed(f"validation {validation.name!r}", str(exc)) from exc
        return failed

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
    checks = compile_validations(spec)
    referenced = set().union(*(expressions.models_referenced(e) for _, e in checks))
    steps = [StepRunner(step, runtimes, checked=step.model.name in referenced)
             for step in spec.steps]
    return CompiledPipeline(version, spec, steps, runtimes, checks)


def compile_validations(spec: PipelineSpec) -> list[tuple[Validation, expressions.Expression]]:
    """Parse each validation's AST; refuse references to models the pipeline does not run."""
    names = {ref.name for ref in spec.models()}
    checks = []
    for validation in spec.validations:
        expr = expressions.from_json(validation.expression)
        unknown = expressions.models_referenced(expr) - names
        if unknown:
            raise ExpressionError(
                f"validation {validation.name!r} refers to {sorted(unknown)}, which the pipeline "
                f"does not run (its models: {sorted(names)}); add the model as a step or fix "
                "the expression")
        checks.append((validation, expr))
    return checks


def _split_checked(carried: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    names = carried.schema.names
    checked = [n for n in names if n.startswith(CHECK_PREFIX)]
    return carried.select([n for n in names if n not in checked]), carried.select(checked)


def _tensors(checked: pa.RecordBatch) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """`_v.<model>.<kind>.<field>` columns as the evaluator's {model: {kind: {field: array}}}."""
    tensors: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for name, column in zip(checked.schema.names, checked.columns):
        model, kind, field = name[len(CHECK_PREFIX):].split(".", 2)
        by_kind = tensors.setdefault(model, {"inputs": {}, "outputs": {}})
        by_kind[kind][field] = codecs.column_to_ndarray(column, name=field)
    return tensors
