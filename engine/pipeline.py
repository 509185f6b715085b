"""A pipeline version's compute as plain functions over record batches.

Messages between steps carry the step's working columns plus carried columns
(see engine.steps): the pipeline's input under `in.<field>`, the original row
index, and what validations, splits and shadows add. A runtime only ever sees
the working columns. `CompiledPipeline.run` runs every step in process, as
tests and the benchmarks' baseline do; the stream layer runs a span of steps with
`run_step` (a shadow's champion with `run_champion`, its challengers apart with
`run_challenger` and `finish_shadow`) and `finish` at the end of the path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine import codecs, expressions
from engine.columns import (
    ANOMALY_COUNT,
    ANOMALY_PREFIX,
    CHECK_FAILURES,
    IN_PREFIX,
    META_ELAPSED,
    META_MODEL,
    META_ROW,
    META_SHADOW,
    META_VERSION,
    OUT_MODEL_SPLIT,
    OUT_PREFIX,
    SHADOW_OUT_PREFIX,
    TIME,
    TIME_TYPE,
)
from engine.definition import ModelRef, PipelineSpec, Validation
from engine.errors import ExpressionError, StepFailed
from engine.runtimes import get_runtime
from engine.runtimes.base import Runtime, RuntimeOptions
from engine.steps import (
    CARRIED_PREFIXES,
    CHECK_PREFIX,
    META_PREFIX,
    MODEL_SPLIT,
    ROW,
    SHADOW_PREFIX,
    ShadowRunner,
    StepRunner,
    join,
    make_runner,
)

ArtifactPath = Callable[[ModelRef], Path]
Started = int | np.ndarray
"""When requests started, ns: one value for every row, or one per row (0: unknown)."""
Checks = list[tuple[Validation, expressions.Expression]]


def split_carried(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """(working columns, carried columns) of an inter-step message."""
    names = batch.schema.names
    carried = [n for n in names if n.startswith(CARRIED_PREFIXES)]
    return batch.select([n for n in names if n not in carried]), batch.select(carried)


@dataclass
class CompiledPipeline:
    """A version's steps, loaded and ready to run."""

    version: str
    spec: PipelineSpec
    steps: list[StepRunner]
    runtimes: dict[tuple[str, str], Runtime]
    checks: Checks = field(default_factory=list)

    @staticmethod
    def start(batch: pa.RecordBatch, requests: Sequence[int] | None = None) -> pa.RecordBatch:
        """Turn a pipeline input into the first step's message (input and row index carried).

        :param requests: the row counts of the requests `batch` holds one after another,
            if several: each request's rows are numbered from 0.
        """
        names = batch.schema.names
        index = np.arange(batch.num_rows, dtype=np.int32)
        if requests is not None and len(requests) > 1:
            counts = np.asarray(requests, np.int32)
            index -= np.repeat(np.cumsum(counts) - counts, counts)
        return pa.RecordBatch.from_arrays(
            [*batch.columns, *batch.columns, pa.array(index)],
            names=[*names, *(IN_PREFIX + n for n in names), ROW],
        )

    def run_step(self, index: int, message: pa.RecordBatch) -> pa.RecordBatch:
        """Run step `index` on an inter-step message; returns the next message."""
        return _apply(self.steps[index].run, message)

    # -- a shadow's parts: its challengers run apart, in workers of their own ------------
    def shadow_runner(self, index: int) -> ShadowRunner:
        runner = self.steps[index]
        if not isinstance(runner, ShadowRunner):
            raise TypeError(f"step {index} is not a shadow deploy")
        return runner

    def run_champion(self, index: int, message: pa.RecordBatch) -> pa.RecordBatch:
        """The champion of shadow step `index`; returns the next message."""
        return _apply(self.shadow_runner(index).run_champion, message)

    def run_challenger(
        self, index: int, challenger: int, message: pa.RecordBatch
    ) -> pa.RecordBatch:
        """Challenger `challenger` of shadow step `index`: its `_s.<model>.*` outputs and the
        message's carried columns (turned into log rows by `finish_shadow`)."""
        working, carried = split_carried(message)
        return join(self.shadow_runner(index).run_challenger(challenger, working), carried)

    def finish_shadow(
        self, index: int, challenger: int, message: pa.RecordBatch, *, started_ns: Started
    ) -> pa.RecordBatch:
        """A challenger's log rows: `out_<model>.*`, which challenger, the rows' index in
        their request, and the metadata every log row has (no checks run on them)."""
        ref = self.shadow_runner(index).challengers[challenger]
        n = message.num_rows
        time_ms, elapsed = _times(n, started_ns)
        names, columns = [TIME], [time_ms]
        meta: dict[str, pa.Array] = {}
        for name, column in zip(message.schema.names, message.columns):
            if name.startswith(SHADOW_PREFIX):
                names.append(SHADOW_OUT_PREFIX + name[len(SHADOW_PREFIX) :])
                columns.append(column)
            elif name.startswith(META_PREFIX):
                meta[name] = column
        zeros = pa.array(np.zeros(n, np.int32))
        for name, column in (
            (CHECK_FAILURES, zeros),
            (ANOMALY_COUNT, zeros),
            *self._metadata(ref.label(), meta, n, elapsed),
            (META_SHADOW, codecs.repeated(ref.name, n)),
        ):
            names.append(name)
            columns.append(column)
        return pa.RecordBatch.from_arrays(columns, names=names)

    def finish(self, message: pa.RecordBatch, *, started_ns: Started) -> pa.RecordBatch:
        """The result rows: time, in.*, out.*, check failures, anomaly.* and metadata.

        :param started_ns: when each row's request started (one value, or one per row;
            0 where unknown): a row's `time` is its request's start, so a request
            processed again after a crash gives identical rows.
        """
        n = message.num_rows
        time_ms, elapsed = _times(n, started_ns)
        names: list[str] = [TIME]
        columns: list[pa.Array] = [time_ms]
        inputs, outputs, shadows, checked, meta = [], [], [], [], {}
        for name, column in zip(message.schema.names, message.columns):
            if name.startswith(IN_PREFIX):
                inputs.append((name, column))
            elif name.startswith(CHECK_PREFIX):
                checked.append((name, column))
            elif name.startswith(SHADOW_PREFIX):
                shadows.append((SHADOW_OUT_PREFIX + name[len(SHADOW_PREFIX) :], column))
            elif name.startswith(META_PREFIX):
                meta[name] = column
            else:
                outputs.append((OUT_PREFIX + name, column))
        if MODEL_SPLIT in meta:
            outputs.append((OUT_MODEL_SPLIT, meta[MODEL_SPLIT]))
        failed = self._checks(checked)
        count = pa.array(
            np.sum(list(failed.values()), axis=0, dtype=np.int32)
            if failed
            else np.zeros(n, np.int32)
        )
        last = self.steps[-1].last_model if self.steps else None
        tail = [
            (CHECK_FAILURES, count),
            (ANOMALY_COUNT, count),
            *((ANOMALY_PREFIX + name, pa.array(mask, pa.bool_())) for name, mask in failed.items()),
            *self._metadata(last.label() if last else "", meta, n, elapsed),
        ]
        for name, column in (*inputs, *outputs, *shadows, *tail):
            names.append(name)
            columns.append(column)
        return pa.RecordBatch.from_arrays(columns, names=names)

    def _metadata(
        self, model: str, meta: dict[str, pa.Array], n: int, elapsed: pa.Array
    ) -> list[tuple[str, pa.Array]]:
        """The metadata.* columns every result and challenger log row has."""
        return [
            (META_VERSION, codecs.repeated(self.version, n)),
            (META_MODEL, codecs.repeated(model, n)),
            (META_ELAPSED, elapsed),
            (META_ROW, meta.get(ROW, pa.array(np.arange(n, dtype=np.int32)))),
        ]

    def _checks(self, checked: list[tuple[str, pa.Array]]) -> dict[str, np.ndarray]:
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


def _apply(
    run: Callable[[pa.RecordBatch], tuple[pa.RecordBatch, pa.RecordBatch]], message: pa.RecordBatch
) -> pa.RecordBatch:
    """`run` on a message's working columns; its outputs, then the carried columns and extras."""
    working, carried = split_carried(message)
    out, extras = run(working)
    return join(out, join(carried, extras))


def _times(n: int, started_ns: Started) -> tuple[pa.Array, pa.Array]:
    """Each row's `time` (its request's start, or now where unknown) and elapsed ns."""
    now_ns = time.time_ns()
    if isinstance(started_ns, int):  # the common case, one request: no per-row arithmetic
        start = started_ns if started_ns > 0 else now_ns
        time_ms = np.full(n, start // 1_000_000, np.int64)
        elapsed = np.full(n, max(now_ns - start, 0), np.int64)
    else:
        started = np.asarray(started_ns, np.int64)
        known = started > 0
        time_ms = np.where(known, started, now_ns) // 1_000_000
        elapsed = np.where(known, np.maximum(now_ns - started, 0), 0)
    # Build int64 then view as timestamp: converting with a tz-aware type costs ~35 µs.
    return pa.array(time_ms).view(TIME_TYPE), pa.array(elapsed)


def load_pipeline(
    version: str,
    spec: PipelineSpec,
    artifact_path: ArtifactPath,
    options: RuntimeOptions = RuntimeOptions(),
    *,
    seed: int | None = None,
) -> CompiledPipeline:
    """Load every model of `spec` (each checked against its sha256) and compose the steps."""
    runtimes: dict[tuple[str, str], Runtime] = {}
    for ref in spec.models():
        runtime = get_runtime(ref.runtime)(ref)
        runtime.load(artifact_path(ref), options)
        runtimes[(ref.name, ref.version)] = runtime
    checks = compile_validations(spec)
    referenced = set().union(*(expressions.models_referenced(e) for _, e in checks))
    rng = np.random.default_rng(seed)
    steps = [
        make_runner(step, runtimes, referenced, rng, first=index == 0)
        for index, step in enumerate(spec.steps)
    ]
    return CompiledPipeline(version, spec, steps, runtimes, checks)


def compile_validations(spec: PipelineSpec) -> Checks:
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
                "the expression"
            )
        checks.append((validation, expr))
    return checks


def _tensors(checked: list[tuple[str, pa.Array]]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """`_v.<model>.<kind>.<field>` columns as the evaluator's {model: {kind: {field: array}}}."""
    tensors: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for name, column in checked:
        model, kind, fld = name[len(CHECK_PREFIX) :].split(".", 2)
        tensors.setdefault(model, {"inputs": {}, "outputs": {}})[kind][fld] = (
            codecs.column_to_ndarray(column, name=fld)
        )
    return tensors
