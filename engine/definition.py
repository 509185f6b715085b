"""What a pipeline version is made of: model references, steps and validations.

These pydantic models are the one wire form of a pipeline definition: the
registry stores them, the HTTP API returns them, and a worker builds its
stages from them.
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
    outputs: dict[str, str] = {}
    """Output map: a model output's name -> the name later steps (and `out.*`) see it by, so
    a post-processing step keeps working when a new model generation renames its outputs.
    Outputs not named keep their own names."""

    def models(self) -> list[ModelRef]:
        return [self.model]

    def summary(self) -> str:
        return self.model.name


class SplitArm(BaseModel):
    """One side of an A/B split: its weight and the chain of models it runs (usually one)."""

    model_config = ConfigDict(frozen=True)

    weight: float = Field(gt=0)
    models: list[ModelRef] = Field(min_length=1)

    def label(self) -> str:
        return " > ".join(m.name for m in self.models)


class RandomSplitStep(BaseModel):
    """A/B test: each row goes to one arm, by weighted random draw or by hashing `hash_key`."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["random_split"] = "random_split"
    arms: list[SplitArm] = Field(min_length=1)
    hash_key: str | None = None

    def models(self) -> list[ModelRef]:
        return [m for arm in self.arms for m in arm.models]

    def summary(self) -> str:
        arms = ", ".join(f"{arm.label()}:{arm.weight:g}" for arm in self.arms)
        key = f" by {self.hash_key}" if self.hash_key else ""
        return f"random_split({arms}){key}"


class ShadowStep(BaseModel):
    """Shadow deploy: the champion answers; challengers see the same rows, for the logs only."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["shadow"] = "shadow"
    champion: ModelRef
    challengers: list[ModelRef] = Field(min_length=1)

    def models(self) -> list[ModelRef]:
        return [self.champion, *self.challengers]

    def summary(self) -> str:
        return f"shadow({self.champion.name} vs {', '.join(c.name for c in self.challengers)})"


Step = Annotated[ModelStep | RandomSplitStep | ShadowStep, Field(discriminator="kind")]


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
