"""The control plane's records: stored in Redis as JSON and returned as HTTP bodies."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from engine.answers import ResultFormat
from engine.definition import ModelRef, PipelineSpec
from streams.log_policy import LogPolicy


def now() -> datetime:
    return datetime.now(UTC)


class Workspace(BaseModel):
    name: str
    created: datetime = Field(default_factory=now)


class ModelVersion(ModelRef):
    """An uploaded model version: its reference plus where and when it came from."""

    workspace: str
    file_name: str
    size: int
    created: datetime = Field(default_factory=now)
    tags: list[str] = []

    def ref(self) -> ModelRef:
        return ModelRef(**self.model_dump(include=set(ModelRef.model_fields)))


MEMORY_PATTERN = r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$"


class Resources(BaseModel):
    """What each worker of a deployment (or of one of its sidekick steps) gets."""

    replicas: int = Field(1, ge=1, le=64)
    cpus: float = Field(1.0, gt=0)
    """Sets onnxruntime's thread count per worker (rounded up)."""
    memory: str = Field("1Gi", pattern=MEMORY_PATTERN)
    """Resident memory per worker, as Kubernetes writes it ("512Mi", "1Gi"). Enforced by
    the worker itself (streams/memory.py): over it, a worker reports why and exits."""
    gpus: int = Field(0, ge=0)
    """More than 0 selects onnxruntime's CUDA execution provider."""


class SidekickConfig(Resources):
    """A step run in workers of its own (a sidekick), reached over a boundary topic."""

    env: dict[str, str] = {}
    """Environment variables of its workers."""


class DeploymentConfig(Resources):
    """Resources of a deployment (built by `DeploymentConfigBuilder`): its main workers',
    and those of each model that runs as a sidekick step, by model name."""

    sidekicks: dict[str, SidekickConfig] = {}
    log_policy: LogPolicy = LogPolicy()
    """What the pipeline's log rows keep: by default a row over 64 KiB loses its largest
    inputs (named in `metadata.dropped`), so image and audio pipelines' logs stay small."""
    result_format: ResultFormat = "request"
    """What answers on the result topic are written in: each request's own format ("request":
    JSON for a JSON request, else Arrow), or always "arrow" or "json" (engine.answers)."""


class PipelineVersion(BaseModel):
    workspace: str
    pipeline: str
    version: str
    definition: PipelineSpec
    created: datetime = Field(default_factory=now)
    last_updated: datetime = Field(default_factory=now)


class Pipeline(BaseModel):
    workspace: str
    name: str
    created: datetime = Field(default_factory=now)
    last_updated: datetime = Field(default_factory=now)
    tags: list[str] = []
    published: bool = False


class Deployment(BaseModel):
    """A pipeline's deployment: which version runs, with which resources, on which workers."""

    workspace: str
    pipeline: str
    version: str
    id: str = Field(default_factory=lambda: secrets.token_hex(4))
    """Names the deployment's own topics (streams.topics `{deployment}`): a redeploy of the
    same version gets new ones, so old and new workers never share them."""
    config: DeploymentConfig = DeploymentConfig()
    started: datetime = Field(default_factory=now)
    worker_ids: list[str] = []
