"""Python steps: a user module loaded from the artifact store.

A module provides one of two entry points:

- `process_data(input_data: dict[str, numpy.ndarray]) -> dict[str, numpy.ndarray]`:
  columns in, columns out, vectorised over rows (preferred);
- `wallaroo_json(data: pandas.DataFrame)`, the guide's contract: returns a
  DataFrame, a list of row dicts, or a dict with `tensor_fields` naming the
  keys that hold per-row values.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa

from engine import codecs
from engine.errors import CodecError, ModelLoadError, StepFailed
from engine.runtimes.base import Runtime, RuntimeOptions, Signature

ENTRY_POINTS = ("process_data", "wallaroo_json")


def _import(path: Path, module_name: str) -> ModuleType:
    # Artifacts are stored under their sha (no .py suffix), so name the loader explicitly.
    loader = importlib.machinery.SourceFileLoader(module_name, str(path))
    spec = importlib.util.spec_from_loader(module_name, loader)
    if spec is None:
        raise ModelLoadError(f"{path.name} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        loader.exec_module(module)
    except Exception as exc:
        raise ModelLoadError(f"importing {path.name} failed: {type(exc).__name__}: {exc}") from exc
    if not any(callable(getattr(module, name, None)) for name in ENTRY_POINTS):
        raise ModelLoadError(
            f"{path.name} defines neither process_data(input_data) nor wallaroo_json(data); "
            "define process_data taking and returning a dict of numpy arrays"
        )
    return module


class PythonRuntime(Runtime):
    """A user's pre/post-processing module."""

    kind = "python"
    _module: ModuleType | None = None

    @classmethod
    def inspect(cls, path: Path) -> Signature:
        _import(path, f"weir_inspect_{abs(hash(path))}")
        return Signature(inputs=[], outputs=[])

    def _load(self, path: Path, options: RuntimeOptions) -> None:
        module_name = f"weir_step_{self.ref.name.replace('-', '_')}_{self.ref.sha[:12]}"
        self._module = _import(path, module_name)
        sys.modules[module_name] = self._module

    def predict(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        assert self._module is not None, "load() first"
        try:
            if callable(getattr(self._module, "process_data", None)):
                result = self._module.process_data(codecs.batch_to_arrays(batch))
                return _to_batch(self.name, result, batch.num_rows)
            result = self._module.wallaroo_json(codecs.batch_to_pandas(batch))
            return _to_batch(self.name, _from_tensor_fields(result), batch.num_rows)
        except StepFailed:
            raise
        except Exception as exc:
            raise StepFailed(self.name, f"{type(exc).__name__}: {exc}") from exc

    def unload(self) -> None:
        if self._module is not None:
            sys.modules.pop(self._module.__name__, None)
            self._module = None


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
            step, f"the step returned {batch.num_rows} rows for {n_rows} input rows; "
            "return one output row per input row"
        )
    return batch
