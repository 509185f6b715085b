"""What a pipeline version is made of: model references, steps and validations.

These pydantic models are the one wire form of a pipeline definition: the
registry stores them, the HTTP API returns them, and a worker builds its
agents from them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RuntimeName = Literal["onnx", "python"]


class TensorSpec(BaseModel):
    """One named input or output of a model, as its file declares it."""

    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str
    """numpy dtype name, e.g. 'float32'; 'unknown' where the file does not say."""
    shape: list[int | str | None]
    """Dimensions; the first is the row (batch) axis. Symbolic or unknown dims are str/None."""


class ModelRef(BaseModel):
    """One uploaded model version, identified by name, version and sha256."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    sha: str
    runtime: RuntimeName
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []

    def label(self) -> str:
        return f"{self.name}@{self.version[:8]}"


class ModelStep(BaseModel):
    """A step that runs one model (ONNX or Python) on every row."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["model"] = "model"
    model: ModelRef

    def models(self) -> list[ModelRef]:
        return [self.model]

    def summary(self) -> str:
        return self.model.name


Step = Annotated[ModelStep, Field(discriminator="kind")]


class Validation(BaseModel):
    """A named check: `expression` (an engine.expressions AST as JSON) must hold per row."""

    model_config = ConfigDict(frozen=True)

    name: str
    expression: dict[str, Any]


class PipelineSpec(BaseModel):
    """The compute of one pipeline version: ordered steps plus validations."""

    model_config = ConfigDict(frozen=True)

    steps: list[Step] = []
    validations: list[Validation] = []

    def models(self) -> list[ModelRef]:
        """Every model the version runs, in step order, without repeats."""
        seen: dict[tuple[str, str], ModelRef] = {}
        for step in self.steps:
            for ref in step.models():
                seen.setdefault((ref.name, ref.version), ref)
        return list(seen.values())
