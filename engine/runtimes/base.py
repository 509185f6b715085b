"""The one runtime protocol every model kind implements."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa

from engine.definition import ModelRef, TensorSpec
from engine.errors import ModelLoadError

Device = Literal["cpu", "cuda"]


Progress = Callable[[str], None]
"""Told, in a line of text, what loading is doing (e.g. installing a step's requirements)."""


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a model: threads per session and the device (from the deployment config),
    and where Python steps with their own requirements get their environments."""

    threads: int | None = None
    device: Device = "cpu"
    env_root: Path | None = None
    """Where Python steps' environments are built and cached (a worker's: WEIR_HOME/envs);
    None: `weir-envs` in the system's temporary directory."""
    wheel_dir: Path | None = None
    """Install steps' requirements from the wheels in this directory only (offline hosts);
    None: from the package index pip reaches."""
    progress: Progress | None = None
    """Called with a line of text as loading goes on (a worker shows it in its heartbeat)."""


@dataclass(frozen=True)
class Signature:
    """A model's declared inputs and outputs, read from its file at upload."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha(path: Path, expected: str) -> None:
    """Refuse to load a file whose sha256 is not the one the registry recorded."""
    actual = sha256_file(path)
    if actual != expected:
        raise ModelLoadError(
            f"model file {path} has sha256 {actual}, expected {expected}: "
            "the artifact store is corrupt or was changed; upload the model again"
        )


class Runtime(ABC):
    """Loads one model version and runs it on record batches.

    Runtimes are synchronous; the worker's stages schedule them. Subclasses implement
    `inspect`, `_load` and `predict`; `load` verifies the sha256 first.
    """

    kind: str

    def __init__(self, ref: ModelRef) -> None:
        self.ref = ref

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def sha(self) -> str:
        return self.ref.sha

    @classmethod
    @abstractmethod
    def inspect(cls, path: Path) -> Signature:
        """Check an uploaded file can be loaded and read its signature; raise ModelLoadError if not."""

    def load(self, path: Path, options: RuntimeOptions = RuntimeOptions()) -> None:
        """Verify the file's sha256 against the reference, then load it."""
        verify_sha(path, self.ref.sha)
        self._load(path, options)

    @abstractmethod
    def _load(self, path: Path, options: RuntimeOptions) -> None: ...

    @abstractmethod
    def predict(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Run the model on every row of `batch`; returns one output row per input row."""

    def unload(self) -> None:  # noqa: B027 - a hook with nothing to release by default
        """Release what `load` acquired. Subclasses may override."""
