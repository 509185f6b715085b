"""A deployment's status, in the guide's shape, from its workers' heartbeats and processes.

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
from typing import Any

from control.local_workers import LocalWorker, LocalWorkers
from control.records import Deployment
from control.redeploys import FailedRedeploy, Swap
from control.registry import Registry
from control.settings import Settings
from control.worker_ids import worker_role
from streams.status import WorkerStatus
from streams.worker import EXIT_CANNOT_START, EXIT_OVER_MEMORY


class DeploymentStatus:
    """Reads the status of the deployer's deployments (it shares the deployer's state)."""

    def __init__(self, settings: Settings, registry: Registry, local: LocalWorkers,
                 swaps: dict[tuple[str, str], Swap],
                 failed: dict[tuple[str, str], FailedRedeploy]) -> None:
        self.settings = settings
        self.registry = registry
        self._local = local
        self._swaps = swaps
        self._failed = failed

    def workers(self, deployment: Deployment) -> list[WorkerStatus]:
        """Each worker's status; a local process that died or restarted is not Running."""
        found = {s.worker_id: s for s in self.registry.workers(deployment.workspace,
                                                               deployment.pipeline)}
        statuses = []
        for worker_id in deployment.worker_ids:
            status = found.get(worker_id)
            local = self._local.get(worker_id)
            if local is not None:
                code = local.proc.poll()
                if code is not None:
                    said = status.reason if status is not None else None
                    if code == EXIT_CANNOT_START and said:
                        reason = said
                    elif (code == EXIT_OVER_MEMORY and said and status is not None
                          and status.pid == local.proc.pid and status.status == "Error"):
                        reason = f"{said}; restarting"
                    else:
                        reason = f"process exited with {code}; " + (
                            "it cannot start" if code == EXIT_CANNOT_START else "restarting")
                    if local.restart_at is not None and local.quick_deaths > 1:
                        wait = max(local.restart_at - time.monotonic(), 0.0)
                        reason += (f" in {wait:.0f}s (it died {local.quick_deaths} times in a "
                                   "row soon after starting; see its log)")
                    status = (status or self._placeholder(deployment, local)).model_copy(
                        update={"status": "Error", "reason": reason})
                elif status is None or status.pid != local.proc.pid:
                    # No heartbeat yet from this process (a restarted one's old heartbeat
                    # may still say Running).
                    status = self._placeholder(deployment, local).model_copy(
                        update={"status": "Starting", "reason": self._restart_reason(local),
                                "processed": status.processed if status else 0,
                                "failed": status.failed if status else 0})
                elif status.status == "Starting" and status.reason is None:
                    status = status.model_copy(update={"reason": self._restart_reason(local)})
            if status is not None:
                statuses.append(status)
        return statuses

    def _remote_workers(self, deployment: Deployment) -> list[WorkerStatus]:
        """Workers of the pipeline that this server did not start (`weir worker` on other
        hosts): those that take part now, and those of the deployed version that died (their
        heartbeats stopped) or cannot start. The deployer cannot restart them; whoever
        started them can, and the pipeline's own status does not wait for them."""
        return [b for b in self._local.remote_beats(deployment.workspace, deployment.pipeline)
                if b.worker_id not in deployment.worker_ids
                and (b.status in ("Starting", "Running", "Draining")
                     or (b.status == "Error" and b.version == deployment.version))]

    @staticmethod
    def _restart_reason(local: LocalWorker) -> str | None:
        """Why a restarted worker is not Running yet: how its last process ended."""
        if not local.restarts:
            return None
        said = f": {local.last_reason}" if local.last_reason else ""
        return f"restarted after exit code {local.last_exit}{said}"

    @staticmethod
    def _placeholder(deployment: Deployment, local: LocalWorker) -> WorkerStatus:
        return WorkerStatus(
            worker_id=local.worker_id, workspace=deployment.workspace,
            pipeline=deployment.pipeline, version=deployment.version, replica=local.replica,
            pid=local.proc.pid, host=socket.gethostname(), status="Starting",
            role=worker_role(local.worker_id), deployment=local.deployment,
            time=datetime.now(UTC))

    @staticmethod
    def overall(deployment: Deployment, workers: list[WorkerStatus]) -> str:
        """The deployment's state from its workers' statuses (one reading of them, so the
        state and the engines `status()` shows always agree)."""
        if any(w.status == "Error" for w in workers):
            return "Error"
        running = [w for w in workers if w.status == "Running"]
        return "Running" if len(running) == len(deployment.worker_ids) else "Starting"

    def status(self, ws: str, name: str) -> dict[str, Any]:
        """The guide's status shape, built from heartbeats."""
        deployment = self.registry.get_deployment(ws, name)
        if deployment is None:
            return {"status": f"Pipeline {name} is not deployed"}
        workers = self.workers(deployment)
        state, version, details = self.overall(deployment, workers), deployment.version, []
        swap = self._swaps.get((ws, name))
        if state == "Running" and swap is not None and swap.new.version == deployment.version:
            state = "Starting"
            details = [f"waiting for version {swap.previous.version} to stop taking input"]
        failed = self._failed.get((ws, name))
        extra: dict[str, Any] = {}
        if failed is not None:  # the previous version serves on: say so, and what failed
            extra["failed_version"] = failed.deployment.version
            details = [(f"version {failed.deployment.version} failed ({failed.reason}); "
                        f"version {deployment.version} keeps serving")]
        remote = self._remote_workers(deployment)
        remote_ids = {w.worker_id for w in remote}
        details += [f"worker {w.worker_id} on {w.host} (not started by this server) is "
                    f"{w.status}: {w.reason or 'see its log'}"
                    for w in remote if w.version == deployment.version and w.status != "Running"]
        engines = [{
            "ip": w.host, "name": w.worker_id, "role": w.role,
            "status": w.status, "reason": w.reason,
            "details": [], "version": w.version, "pid": w.pid, "processed": w.processed,
            "failed": w.failed, "remote": w.worker_id in remote_ids,
            "pipeline_statuses": {"pipelines": [{"id": name, "status": w.status}]},
            "model_statuses": {"models": [m.model_dump() for m in w.models]},
        } for w in [*workers, *remote]]
        return {
            "status": state, "details": details, "version": version, **extra,
            "engines": [e for e in engines if e["role"] != "sidekick"],
            "engine_lbs": [{"ip": self.settings.http_host, "name": "weir-gateway",
                            "status": "Running", "reason": None, "details": []}],
            "sidekicks": [e for e in engines if e["role"] == "sidekick"],
        }
