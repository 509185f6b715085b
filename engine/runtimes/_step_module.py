"""The contract of a Python step's module: its entry points and how a batch goes through them.

Shared by the in-process runtime (engine.runtimes.python) and the runner a step with its
own packages runs in (engine.runtimes._runner), so this imports only the codecs: the
runner's environment has numpy and pyarrow, but not weir's other dependencies.
"""

from __future__ import annotations

import ast
from types import ModuleType
from typing import Any

import pyarrow as pa

from engine import codecs
from engine.errors import CodecError, StepFailed

ENTRY_POINTS = ("process_data", "wallaroo_json")
MISSING_ENTRY = (
    "defines neither process_data(input_data) nor wallaroo_json(data); "
    "define process_data taking and returning a dict of numpy arrays"
)


def has_entry(module: ModuleType) -> bool:
    return any(callable(getattr(module, name, None)) for name in ENTRY_POINTS)


def defined_entries(source: str, filename: str = "<step>") -> list[str]:
    """The entry points a module's source defines at top level, found without importing it
    (its imports may need packages only the step's own environment has).

    :raises SyntaxError: the source is not valid Python.
    """
    tree = ast.parse(source, filename)
    return [
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in ENTRY_POINTS
    ]


def call(module: ModuleType, step: str, batch: pa.RecordBatch) -> pa.RecordBatch:
    """Run `batch` through the module's entry point; one output row per input row.

    `process_data` gets a dict of numpy arrays, a ragged column (rows of differing
    lengths) as a list of arrays, one per row; `wallaroo_json` gets a DataFrame.
    """
    try:
        if callable(getattr(module, "process_data", None)):
            result = module.process_data(codecs.batch_to_arrays(batch, ragged=True))
            return _to_batch(step, result, batch.num_rows)
        result = module.wallaroo_json(codecs.batch_to_pandas(batch))
        return _to_batch(step, _from_tensor_fields(result), batch.num_rows)
    except (StepFailed, CodecError):
        raise
    except Exception as exc:
        raise StepFailed(step, f"{type(exc).__name__}: {exc}") from exc


def _from_tensor_fields(result: Any) -> Any:
    """The guide's dict form: {'tensor_fields': ['model_input'], 'model_input': [...]}."""
    if isinstance(result, dict) and "tensor_fields" in result:
        return {name: result[name] for name in result["tensor_fields"]}
    return result


def _to_batch(step: str, result: Any, n_rows: int) -> pa.RecordBatch:
    try:
        batch = codecs.to_record_batch(result)
    except CodecError as exc:
        raise StepFailed(step, f"the step returned something weir cannot read: {exc}") from exc
    if batch.num_rows != n_rows:
        raise StepFailed(
            step,
            f"the step returned {batch.num_rows} rows for {n_rows} input rows; "
            "return one output row per input row",
        )
    return batch
