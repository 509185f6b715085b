"""Model runtimes, chosen by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import UnknownRuntime

if TYPE_CHECKING:  # not at run time: a step's runner imports this package with numpy and
    # pyarrow only (engine.runtimes._runner), and base needs pydantic
    from engine.runtimes.base import Runtime

RUNTIMES: dict[str, str] = {
    "onnx": "engine.runtimes.onnx:OnnxRuntime",
    "python": "engine.runtimes.python:PythonRuntime",
}


def get_runtime(name: str) -> type[Runtime]:
    """The runtime class for `name`, imported lazily (only onnx.py imports onnxruntime)."""
    import importlib

    if name not in RUNTIMES:
        raise UnknownRuntime(name, list(RUNTIMES))
    module, _, cls = RUNTIMES[name].partition(":")
    runtime: type[Runtime] = getattr(importlib.import_module(module), cls)
    return runtime
