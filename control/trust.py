"""Whether uploaded code may run here: Python steps only where the settings allow them.

A Python step is code: the server imports it to check it at upload, and workers
run it on every record. `WEIR_ALLOW_PYTHON_STEPS=false` refuses it at upload, at
configure, and at deploy or import of a version that has one.
"""

from __future__ import annotations

from control.errors import PolicyError
from control.settings import Settings
from engine.definition import PipelineSpec

_REASON = (
    "this server refuses Python steps (WEIR_ALLOW_PYTHON_STEPS=false): they would run "
    "uploaded code; use ONNX models, or a server that allows Python steps"
)


def check_runtime(settings: Settings, runtime: str, model: str) -> None:
    """Refuse to take model `model` with `runtime` if it is Python and Python is not allowed."""
    if runtime == "python" and not settings.allow_python_steps:
        raise PolicyError(f"model {model!r} is a Python step, and {_REASON}")


def check_definition(settings: Settings, definition: PipelineSpec) -> None:
    """Refuse to run a version that has a Python step if Python is not allowed."""
    for ref in definition.models():
        check_runtime(settings, ref.runtime, ref.name)
