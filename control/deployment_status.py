"""A deployment's status read from its workers' heartbeats and processes (its shape, and
how it is built from them: control/pipeline_status.py).

Until a restarted local worker's new process reports Running, it shows as not
Running; one over its memory limit keeps its own reason ("memory limit
exceeded: ...") until it runs again. Workers the server did not start are listed
as `remote` engines, a dead one as Error (until it has been silent for
REMOTE_FORGET_S, control/supervision.py), without counting them in the pipeline's own state. While a
redeploy hands over, the new version is Starting; after one failed, the failed
version is reported until the next deploy or undeploy of the pipeline.
"""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime
from control.local_workers import LocalWorker, LocalWorkers
from control.pipeline_status import PipelineStatus, not_deployed, pipeline_status
from control.records import Deployment
from control.redeploys import FailedRedeploy, Swap
from control.registry import Registry
from control.settings import Settings
from control.worker_ids import worker_role
from streams.status import WorkerStatus
from streams.worker import EXIT_CANNOT_START, EXIT_OVER_MEMORY


class DeploymentStatus:
    """Reads the status of the deployer's deployments (it shares the deployer's state)."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        local: LocalWorkers,
        swaps: dict[tuple[str, str], Swap],
        failed: dict[tuple[str, str], FailedRedeploy],
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._local = local
        self._swaps = swaps
        self._failed = failed

    def workers(self, deployment: Deployment) -> list[WorkerStatus]:
        """Each worker's status; a local process that died or restarted is not Running."""
        found = {
            s.worker_id: s for s in self.registry.workers(deployment.workspace, deployment.pipeline)
        }
        statuses = []
        for worker_id in deployment.worker_ids:
            status = found.get(worker_id)
            local = self._local.get(worker_id)
            if local is not None:
                status = local_view(deployment, local, status, local.proc.poll(), time.monotonic())
            if status is not None:
                statuses.append(status)
        return statuses

    def _remote_workers(self, deployment: Deployment) -> list[WorkerStatus]:
        """Workers of the pipeline that this server did not start (`weir worker` on other
        hosts): those that take part now, and those of the deployed version that died (their
        heartbeats stopped) or cannot start. The deployer cannot restart them; whoever
        started them can, and the pipeline's own status does not wait for them."""
        return [
            b
            for b in self._local.remote_beats(deployment.workspace, deployment.pipeline)
            if b.worker_id not in deployment.worker_ids
            and (
                b.status in ("Starting", "Running", "Draining")
                or (b.status == "Error" and b.version == deployment.version)
            )
        ]

    def status(self, ws: str, name: str) -> PipelineStatus:
        """The guide's status shape, built from heartbeats."""
        deployment = self.registry.get_deployment(ws, name)
        if deployment is None:
            return not_deployed(name)
        swap = self._swaps.get((ws, name))
        failed = self._failed.get((ws, name))
        return pipeline_status(
            name,
            deployment.version,
            expected=len(deployment.worker_ids),
            workers=self.workers(deployment),
            remote=self._remote_workers(deployment),
            gateway_ip=self.settings.http_host,
            handing_over_from=(
                swap.previous.version
                if swap is not None and swap.new.version == deployment.version
                else None
            ),
            failed=(failed.deployment.version, failed.reason) if failed is not None else None,
        )


def local_view(
    deployment: Deployment,
    local: LocalWorker,
    beat: WorkerStatus | None,
    exit_code: int | None,
    now: float,
) -> WorkerStatus:
    """A local worker's status from its last heartbeat and its process (`exit_code` if it
    exited; `now` on time.monotonic's clock, for the restart delay)."""
    if exit_code is not None:
        said = beat.reason if beat is not None else None
        if exit_code == EXIT_CANNOT_START and said:
            reason = said
        elif (
            exit_code == EXIT_OVER_MEMORY
            and said
            and beat is not None
            and beat.pid == local.proc.pid
            and beat.status == "Error"
        ):
            reason = f"{said}; restarting"
        else:
            reason = f"process exited with {exit_code}; " + (
                "it cannot start" if exit_code == EXIT_CANNOT_START else "restarting"
            )
        if local.restart_at is not None and local.quick_deaths > 1:
            wait = max(local.restart_at - now, 0.0)
            reason += (
                f" in {wait:.0f}s (it died {local.quick_deaths} times in a "
                "row soon after starting; see its log)"
            )
        return (beat or _placeholder(deployment, local)).model_copy(
            update={
                "status": "Error",
                "reason": reason,
                "restarting": exit_code != EXIT_CANNOT_START,
            }
        )
    if beat is None or beat.pid != local.proc.pid:
        # No heartbeat yet from this process (a restarted one's old heartbeat may still
        # say Running).
        return _placeholder(deployment, local).model_copy(
            update={
                "status": "Starting",
                "reason": _restart_reason(local),
                "processed": beat.processed if beat else 0,
                "failed": beat.failed if beat else 0,
            }
        )
    if beat.status == "Starting" and beat.reason is None:
        return beat.model_copy(update={"reason": _restart_reason(local)})
    return beat


def _restart_reason(local: LocalWorker) -> str | None:
    """Why a restarted worker is not Running yet: how its last process ended."""
    if not local.restarts:
        return None
    said = f": {local.last_reason}" if local.last_reason else ""
    return f"restarted after exit code {local.last_exit}{said}"


def _placeholder(deployment: Deployment, local: LocalWorker) -> WorkerStatus:
    return WorkerStatus(
        worker_id=local.worker_id,
        workspace=deployment.workspace,
        pipeline=deployment.pipeline,
        version=deployment.version,
        replica=local.replica,
        pid=local.proc.pid,
        host=socket.gethostname(),
        status="Starting",
        role=worker_role(local.worker_id),
        deployment=local.deployment,
        time=datetime.now(UTC),
    )
