"""The one step abstraction: how each kind of step turns its input rows into output rows.

A runner sees working columns only and returns (outputs, carried extras): the
extras are columns the message carries past later steps (a checked model's
inputs and outputs, split choices, shadow outputs), named with the carried
prefixes below. Shadow steps also expose their parts (`run_champion`/`run_challenger`)
so the stream layer can run challengers in workers of their own, as the in-process
`run` composes them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from engine.codecs import TENSOR_COLUMN
from engine.columns import IN_PREFIX
from engine.definition import ModelRef, ModelStep, RandomSplitStep, ShadowStep, Step
from engine.errors import InputMismatch, StepFailed, WeirError
from engine.runtimes.base import Runtime
from engine.split import choose_by_key, choose_weighted

CHECK_PREFIX = "_v."
SHADOW_PREFIX = "_s."
META_PREFIX = "_meta."
CARRIED_PREFIXES = (IN_PREFIX, CHECK_PREFIX, SHADOW_PREFIX, META_PREFIX)
ROW = META_PREFIX + "row"
MODEL_SPLIT = META_PREFIX + "model_split"

Runtimes = dict[tuple[str, str], Runtime]


def join(left: pa.RecordBatch, right: pa.RecordBatch) -> pa.RecordBatch:
    """Columns of both, side by side (a batch without columns keeps its row count)."""
    if right.num_columns == 0:
        return left
    if left.num_columns == 0:
        return right
    return pa.RecordBatch.from_arrays(
        [*left.columns, *right.columns], names=[*left.schema.names, *right.schema.names]
    )


def prefixed(batch: pa.RecordBatch, prefix: str) -> pa.RecordBatch:
    return batch.rename_columns([prefix + n for n in batch.schema.names])


@functools.lru_cache(maxsize=64)
def empty(n: int) -> pa.RecordBatch:
    """A batch of `n` rows and no columns (cached: every step asks for one)."""
    return pa.RecordBatch.from_arrays([pa.nulls(n)], names=["_"]).drop_columns(["_"])


def concat_in_order(
    parts: Sequence[pa.RecordBatch], rows: Sequence[np.ndarray], n: int
) -> pa.RecordBatch:
    """Reassemble per-arm outputs into input order (columns unified; missing ones null)."""
    tables = [pa.Table.from_batches([p]) for p in parts if p.num_rows]
    if not tables:
        return parts[0] if parts else empty(n)
    merged = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    order = np.argsort(
        np.concatenate([r for r, p in zip(rows, parts) if p.num_rows]), kind="stable"
    )
    return merged.take(pa.array(order)).to_batches()[0]


def check_input_names(ref: ModelRef, batch: pa.RecordBatch) -> None:
    """Refuse a pipeline input whose one column (or one tensor column beside scalar fields)
    is named neither after the first model's one input nor `tensor`: a runtime would feed it
    to the model whatever its name, and a misspelt column would be answered silently.

    Between steps any name goes (a step's outputs are named by its model). Models with
    several inputs are matched by name in the runtime; unnamed scalar feature columns
    stacked into one input keep their names.
    """
    if len(ref.inputs) != 1:
        return
    spec, names = ref.inputs[0], batch.schema.names
    if spec.name in names:
        return
    tensors = [n for n, t in zip(names, batch.schema.types) if pa.types.is_nested(t)]
    lone = names if len(names) == 1 else tensors if len(tensors) == 1 else []
    if lone and lone[0] != TENSOR_COLUMN:
        raise InputMismatch(
            f"model {ref.name!r} reads its input {spec.name!r} ({spec.dtype}{spec.shape}) but the "
            f"data's column is named {lone[0]!r}: name it {spec.name!r} or {TENSOR_COLUMN!r}"
        )


class _Chain:
    """Models run one after another, recording what validations need."""

    def __init__(
        self,
        refs: Sequence[ModelRef],
        runtimes: Runtimes,
        checked: set[str],
        *,
        first: bool = False,
    ) -> None:
        self.refs = list(refs)
        self.runtimes = [runtimes[(r.name, r.version)] for r in refs]
        self.checked = checked
        self.first = first
        """The chain takes the pipeline's input: check its column names."""

    def run(self, working: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch]:
        if self.first and self.refs:
            check_input_names(self.refs[0], working)
        extras = empty(working.num_rows)
        for ref, runtime in zip(self.refs, self.runtimes):
            out = _predict(ref, runtime, working)
            if ref.name in self.checked:
                base = f"{CHECK_PREFIX}{ref.name}."
                extras = join(
                    join(extras, prefixed(working, base + "inputs.")),
                    prefixed(out, base + "outputs."),
                )
            working = out
        return working, extras


def _predict(ref: ModelRef, runtime: Runtime, working: pa.RecordBatch) -> pa.RecordBatch:
    try:
        out = runtime.predict(working)
    except WeirError:
        raise
    except Exception as exc:  # a bug in a runtime must not kill the worker
        raise StepFailed(ref.name, f"{type(exc).__name__}: {exc}") from exc
    if out.num_rows != working.num_rows:
        raise StepFailed(ref.name, f"returned {out.num_rows} rows for {working.num_rows}")
    return out


def check_output_map(step: ModelStep) -> None:
    """Refuse an output map that names outputs the model does not have (where its file says
    what they are: a Python step's are only known when it runs) or gives two one name."""
    renames = step.outputs
    reserved = sorted(n for n in renames.values() if not n or n.startswith(CARRIED_PREFIXES))
    if reserved:
        raise InputMismatch(
            f"the output map of step {step.model.name!r} gives outputs the names {reserved}; "
            f"names may not be empty or start with {', '.join(CARRIED_PREFIXES)} (weir's own)"
        )
    declared = [spec.name for spec in step.model.outputs]
    unknown = sorted(set(renames) - set(declared)) if declared else []
    if unknown:
        raise InputMismatch(
            f"the output map of step {step.model.name!r} renames {unknown}, but the model's "
            f"outputs are {declared}; map those names"
        )
    kept = [name for name in declared if name not in renames]
    names = [*renames.values(), *kept]
    if len(set(names)) != len(names):
        raise InputMismatch(
            f"the output map of step {step.model.name!r} ({renames}) gives two outputs one name "
            f"(outputs after it: {sorted(names)}); choose distinct names"
        )


def rename_outputs(label: str, out: pa.RecordBatch, renames: dict[str, str]) -> pa.RecordBatch:
    """A step's outputs under the names its output map gives them."""
    if not renames:
        return out
    names = out.schema.names
    missing = sorted(set(renames) - set(names))
    if missing:
        raise StepFailed(
            label,
            f"its output map renames {missing}, but it returned {names}; fix the step's output map",
        )
    renamed = [renames.get(name, name) for name in names]
    if len(set(renamed)) != len(renamed):
        raise StepFailed(label, f"its output map gives two outputs one name ({renamed})")
    return out.rename_columns(renamed)


class StepRunner:
    """Runs one model step; the base of the split and shadow runners."""

    def __init__(
        self, step: Step, runtimes: Runtimes, checked: set[str], *, first: bool = False
    ) -> None:
        self.step = step
        self._chain = _Chain(step.models()[:1], runtimes, checked, first=first)
        self._renames: dict[str, str] = {}
        if isinstance(step, ModelStep):
            check_output_map(step)
            self._renames = dict(step.outputs)

    @property
    def label(self) -> str:
        return self.step.summary()

    @property
    def last_model(self) -> ModelRef:
        return self.step.models()[0]

    def run(self, working: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch]:
        """Outputs for `working` (one row out per row in, named by the output map) and the
        columns to carry."""
        out, extras = self._chain.run(working)
        return rename_outputs(self.label, out, self._renames), extras


class SplitRunner(StepRunner):
    """A/B split: each row runs through the arm chosen for it."""

    step: RandomSplitStep

    def __init__(
        self,
        step: RandomSplitStep,
        runtimes: Runtimes,
        checked: set[str],
        rng: np.random.Generator,
        *,
        first: bool = False,
    ) -> None:
        self.step = step
        self._arms = [_Chain(arm.models, runtimes, checked, first=first) for arm in step.arms]
        self._weights = [arm.weight for arm in step.arms]
        self._rng = rng
        self._labels = [
            json.dumps([{"name": m.name, "version": m.version, "sha": m.sha} for m in arm.models])
            for arm in step.arms
        ]

    @property
    def last_model(self) -> ModelRef:
        return self.step.arms[0].models[-1]

    def choose(self, working: pa.RecordBatch) -> np.ndarray:
        """The arm index of every row."""
        key = self.step.hash_key
        if key is None:
            return choose_weighted(self._weights, working.num_rows, self._rng)
        if key not in working.schema.names:
            raise StepFailed(
                self.label,
                f"rows have no {key!r} field for the split's hash_key "
                f"(fields: {working.schema.names})",
            )
        return choose_by_key(self._weights, working.column(key).to_pylist())

    def run_arm(self, arm: int, working: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch]:
        out, extras = self._arms[arm].run(working)
        label = pa.array([self._labels[arm]] * working.num_rows, pa.string())
        return out, join(extras, pa.RecordBatch.from_arrays([label], names=[MODEL_SPLIT]))

    def run(self, working: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch]:
        chosen = self.choose(working)
        rows = [np.flatnonzero(chosen == arm) for arm in range(len(self._arms))]
        # An arm that drew no row does not run: a model fed an empty batch got a 0x0 tensor
        # where it takes [None, 10], and the whole request failed.
        used = [(arm, r) for arm, r in enumerate(rows) if len(r)] or [(0, rows[0])]
        parts = [self.run_arm(arm, working.take(pa.array(r))) for arm, r in used]
        n = working.num_rows
        out = concat_in_order([p[0] for p in parts], [r for _, r in used], n)
        extras = concat_in_order([p[1] for p in parts], [r for _, r in used], n)
        return out, extras


class ShadowRunner(StepRunner):
    """Shadow deploy: the champion's outputs go on; challengers' are carried for the logs."""

    step: ShadowStep

    def __init__(
        self, step: ShadowStep, runtimes: Runtimes, checked: set[str], *, first: bool = False
    ) -> None:
        self.step = step
        self._champion = _Chain([step.champion], runtimes, checked, first=first)
        self._challengers = [_Chain([c], runtimes, checked, first=first) for c in step.challengers]

    @property
    def last_model(self) -> ModelRef:
        return self.step.champion

    @property
    def challengers(self) -> list[ModelRef]:
        return list(self.step.challengers)

    def run_champion(self, working: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch]:
        return self._champion.run(working)

    def run_challenger(self, index: int, working: pa.RecordBatch) -> pa.RecordBatch:
        """A challenger's outputs, named `_s.<model>.<field>`."""
        out, _ = self._challengers[index].run(working)
        return prefixed(out, f"{SHADOW_PREFIX}{self.step.challengers[index].name}.")

    def run(self, working: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch]:
        out, extras = self.run_champion(working)
        for index in range(len(self._challengers)):
            try:
                extras = join(extras, self.run_challenger(index, working))
            except WeirError:
                continue  # a failing challenger never fails the champion's answer
        return out, extras


def make_runner(
    step: Step,
    runtimes: Runtimes,
    checked: set[str],
    rng: np.random.Generator,
    *,
    first: bool = False,
) -> StepRunner:
    """The runner of `step`; `first`: it takes the pipeline's input (see check_input_names)."""
    if isinstance(step, RandomSplitStep):
        return SplitRunner(step, runtimes, checked, rng, first=first)
    if isinstance(step, ShadowStep):
        return ShadowRunner(step, runtimes, checked, first=first)
    assert isinstance(step, ModelStep)
    return StepRunner(step, runtimes, checked, first=first)
