"""A worker's spec: which pipeline version it runs, in which role, and its consumer group.

Apart from the worker itself (streams.worker), which runs a spec: the control plane names a
worker's consumer group (control.pipeline_lag) without importing the worker's loop and engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.answers import ResultFormat
from engine.definition import PipelineSpec
from engine.runtimes.base import RuntimeOptions
from streams.plan import Layout, WorkerRole


@dataclass(frozen=True)
class WorkerSpec:
    """Which pipeline version a worker runs, and how."""

    workspace: str
    pipeline: str
    version: str
    definition: PipelineSpec
    worker_id: str
    replica: int = 0
    options: RuntimeOptions = field(default_factory=RuntimeOptions)
    memory_limit_bytes: int | None = None
    """Resident memory the worker may use; over it, it reports why and exits."""
    role: WorkerRole = "main"
    """Which stages it runs (streams.plan): the answer path ("main"), the shadow
    challengers ("shadow") or one sidekick step ("sidekick")."""
    deployment: str = ""
    """The deployment's id: its boundary and challenger topics are its own."""
    sidekicks: frozenset[int] = frozenset()
    """The deployment's steps that run as sidekicks (their own workers)."""
    sidekick_step: int | None = None
    """The step a sidekick worker runs."""
    result_format: ResultFormat = "request"
    """What requests are answered in: each one's own format, or always Arrow or JSON."""

    @property
    def layout(self) -> Layout:
        return Layout(self.workspace, self.pipeline, self.deployment, self.sidekicks)

    @property
    def group_id(self) -> str:
        return group_id(self.workspace, self.pipeline, self.role, self.sidekick_step)


def group_id(workspace: str, pipeline: str, role: WorkerRole, sidekick: int | None = None) -> str:
    """The consumer group of a pipeline's workers of `role` (and sidekick step)."""
    group = f"weir.{workspace}.{pipeline}"
    if role == "sidekick":
        return f"{group}.sidekick{sidekick}"
    return group if role == "main" else f"{group}.{role}"
