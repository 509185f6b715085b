"""A worker's heartbeat written into the registry, as a `weir worker` the server did not start
writes it: tests of the deployer's view of workers without starting any."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from control.records import Deployment
from control.registry import Registry
from streams.status import WorkerState, WorkerStatus


def beat(
    registry: Registry,
    deployment: Deployment,
    worker_id: str,
    status: WorkerState,
    *,
    reason: str | None = None,
    age_s: float = 0.0,
) -> WorkerStatus:
    """Write a worker's heartbeat, as a worker of `deployment` would."""
    heartbeat = WorkerStatus(
        worker_id=worker_id,
        workspace=deployment.workspace,
        pipeline=deployment.pipeline,
        version=deployment.version,
        replica=0,
        deployment=deployment.id,
        pid=4242,
        host="10.0.0.7",
        status=status,
        reason=reason,
        time=datetime.now(UTC) - timedelta(seconds=age_s),
    )
    registry.beat(heartbeat)
    return heartbeat
