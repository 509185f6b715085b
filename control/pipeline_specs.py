"""A pipeline version's definition from what the SDK sends (`POST /pipelines/<name>/versions`):
steps that name models, resolved into full references from the registry, and checked.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from control.registry import Registry
from engine.definition import (
    ModelRef,
    ModelStep,
    PipelineSpec,
    RandomSplitStep,
    ShadowStep,
    SplitArm,
    Step,
    Validation,
)
from engine.pipeline import compile_validations
from engine.split import normalise
from engine.steps import check_output_map


class ModelChoice(BaseModel):
    name: str
    version: str | None = None


class ModelStepBody(BaseModel):
    kind: Literal["model"] = "model"
    model: ModelChoice
    outputs: dict[str, str] = {}


class ArmBody(BaseModel):
    weight: float
    models: list[ModelChoice]


class SplitStepBody(BaseModel):
    kind: Literal["random_split"]
    arms: list[ArmBody]
    hash_key: str | None = None


class ShadowStepBody(BaseModel):
    kind: Literal["shadow"]
    champion: ModelChoice
    challengers: list[ModelChoice]


StepBody = Annotated[ModelStepBody | SplitStepBody | ShadowStepBody, Field(discriminator="kind")]


class VersionBody(BaseModel):
    steps: list[StepBody]
    validations: list[Validation] = []


def resolve(registry: Registry, workspace: str, body: VersionBody) -> PipelineSpec:
    """Turn model names into full references from the registry (the client never sets a sha).

    Validations are checked here too, so a reference to a model the pipeline
    does not run is refused before anything is deployed.
    """

    def ref(choice: ModelChoice) -> ModelRef:
        return registry.get_model(workspace, choice.name, choice.version).ref()

    def step(body: StepBody) -> Step:
        if isinstance(body, SplitStepBody):
            normalise([arm.weight for arm in body.arms])  # SplitError for bad weights
            return RandomSplitStep(
                hash_key=body.hash_key,
                arms=[
                    SplitArm(weight=arm.weight, models=[ref(m) for m in arm.models])
                    for arm in body.arms
                ],
            )
        if isinstance(body, ShadowStepBody):
            return ShadowStep(
                champion=ref(body.champion), challengers=[ref(c) for c in body.challengers]
            )
        model_step = ModelStep(model=ref(body.model), outputs=body.outputs)
        check_output_map(model_step)
        return model_step

    spec = PipelineSpec(steps=[step(s) for s in body.steps], validations=body.validations)
    compile_validations(spec)
    return spec
