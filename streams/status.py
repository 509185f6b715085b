"""What a worker reports about itself through its heartbeat."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from streams.metrics import WorkerMetrics

WorkerState = Literal["Starting", "Running", "Draining", "Stopped", "Error"]


class ModelStatus(BaseModel):
    name: str
    version: str
    sha: str
    status: WorkerState


class WorkerStatus(BaseModel):
    """One worker's heartbeat: who it is, what it runs and how it is doing."""

    worker_id: str
    workspace: str
    pipeline: str
    version: str
    replica: int
    role: Literal["main", "shadow", "sidekick"] = "main"
    """Which stages it runs (streams.plan): the answer path, shadow challengers, or a
    sidekick step."""
    deployment: str = ""
    """The id of the deployment it serves (whose topics it reads)."""
    pid: int
    host: str
    status: WorkerState
    reason: str | None = None
    restarting: bool = False
    """Its process exited, and the server that started it starts it again (set by that
    server's view of it, control.deployment_status.local_view; never in a heartbeat)."""
    models: list[ModelStatus] = []
    processed: int = 0
    failed: int = 0
    backlog: int | None = None
    """While it drains: the records its deployment's topics still hold that lead back to it
    (a sidekick's input, say); a drain that keeps lowering it makes progress."""
    metrics: WorkerMetrics = Field(default_factory=WorkerMetrics)
    """What each of its stages did since it started (streams.metrics): `WorkerMetrics.snapshot()`."""
    time: datetime


class HeartbeatSink(Protocol):
    """Where a worker's heartbeats go (the registry, in practice)."""

    def beat(self, status: WorkerStatus) -> None: ...

    def stop_requested(self, status: WorkerStatus) -> bool:
        """True when the control plane wants this worker gone (undeploy, hot swap)."""
        ...
