"""Python steps: a user module loaded from the artifact store.

A module provides one of two entry points (engine.runtimes._step_module):

- `process_data(input_data: dict[str, numpy.ndarray]) -> dict[str, numpy.ndarray]`:
  columns in, columns out, vectorised over rows (preferred); a column whose rows differ
  in length (file bytes, audio, token ids) comes as a list of arrays, one per row, and
  may go out as one;
- `wallaroo_json(data: pandas.DataFrame)`, the guide's contract: returns a
  DataFrame, a list of row dicts, or a dict with `tensor_fields` naming the
  keys that hold per-row values.

A `.py` file runs in the worker's process, in weir's own environment. A `.zip` (its
module(s), optionally a `requirements.txt`: engine.runtimes._archive) runs in a process
of its own: in a virtual environment built for its requirements (engine.runtimes._envs),
or, without requirements, with weir's own Python.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pyarrow as pa

from engine.definition import ModelRef
from engine.errors import ModelLoadError
from engine.runtimes._archive import is_archive, read_archive, unpack
from engine.runtimes._envs import environment_python
from engine.runtimes._step_module import MISSING_ENTRY, call, has_entry
from engine.runtimes._step_process import StepProcess
from engine.runtimes.base import Runtime, RuntimeOptions, Signature

ENV_ROOT = Path(tempfile.gettempdir()) / "weir-envs"
"""Where steps' environments go when the options name no place (RuntimeOptions.env_root)."""


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
    if not has_entry(module):
        raise ModelLoadError(f"{path.name} {MISSING_ENTRY}")
    return module


class PythonRuntime(Runtime):
    """A user's pre/post-processing module: in process (`.py`), or in its own (`.zip`)."""

    kind = "python"
    _module: ModuleType | None = None
    _process: StepProcess | None = None

    @classmethod
    def inspect(cls, path: Path) -> Signature:
        if is_archive(path):
            read_archive(path)  # not imported here: its packages may not be installed yet
        else:
            _import(path, f"weir_inspect_{abs(hash(path))}")
        return Signature(inputs=[], outputs=[])

    def _load(self, path: Path, options: RuntimeOptions) -> None:
        if is_archive(path):
            self._process = _step_process(self.ref, path, options)
            return
        module_name = f"weir_step_{self.ref.name.replace('-', '_')}_{self.ref.sha[:12]}"
        self._module = _import(path, module_name)
        sys.modules[module_name] = self._module

    def predict(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if self._process is not None:
            return self._process.predict(batch)
        assert self._module is not None, "load() first"
        return call(self._module, self.name, batch)

    def unload(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._module is not None:
            sys.modules.pop(self._module.__name__, None)
            self._module = None


def _step_process(ref: ModelRef, path: Path, options: RuntimeOptions) -> StepProcess:
    """An archived step's process, started in its environment (built first if needed)."""
    root = options.env_root or ENV_ROOT
    step = read_archive(path)
    step_dir = unpack(path, ref.sha, root)
    python = Path(sys.executable)
    if step.requirements:
        requirements = step.requirements
        if step.needs_pandas:
            requirements += "\npandas"
        python = environment_python(
            requirements,
            root=root,
            wheel_dir=options.wheel_dir,
            step=ref.name,
            progress=options.progress,
        )
    process = StepProcess(python, step_dir, step.module, ref.name, root)
    process.start()
    return process
