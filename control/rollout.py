"""A new deployment's start: waiting until every worker of it runs, or why it certainly cannot
(the deployer then undoes a redeploy, control/deployer.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from control.deployment_status import DeploymentStatus
from control.errors import RegistryUnavailable
from control.local_workers import LocalWorkers
from control.pipeline_status import overall
from control.records import Deployment
from control.registry import HEARTBEAT_STALE_S, Registry
from control.settings import Settings
from streams.status import WorkerStatus
from streams.worker import EXIT_CANNOT_START

SWAP_POLL_S = 0.2
"""How often a redeploy reads the heartbeats of its new and old workers."""


class Rollout:
    """Watches the workers of new deployments come up (it shares the deployer's state)."""

    def __init__(
        self, settings: Settings, registry: Registry, local: LocalWorkers, status: DeploymentStatus
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._local = local
        self._status = status

    async def wait_running(self, new: Deployment) -> str | None:
        """Wait until every worker of `new` runs; why it failed, if it did. While Redis is
        away the heartbeats cannot be read: the wait goes on (its deadline too)."""
        limit = self.settings.deploy_timeout_s
        deadline = asyncio.get_running_loop().time() + limit
        said: set[str | None] = set()
        while True:
            try:  # the heartbeats are read in a thread, off the loop that serves requests
                workers, failure = await asyncio.to_thread(self._looked_over, new)
                if overall(len(new.worker_ids), workers) == "Running":
                    return None
            except RegistryUnavailable as exc:
                workers, failure = [], None
                if asyncio.get_running_loop().time() > deadline:
                    return str(exc)
            reasons = {w.reason for w in workers if w.status == "Starting"}
            if reasons - said:  # loading makes progress (a step's environment builds)
                deadline = max(deadline, asyncio.get_running_loop().time() + limit)
                said |= reasons
            if failure is None and asyncio.get_running_loop().time() > deadline:
                failure = f"not Running within {limit:.0f}s" + "".join(
                    f"; {w.worker_id} {w.status}{': ' + w.reason if w.reason else ''}"
                    for w in workers
                    if w.status != "Running"
                )
            if failure is not None:
                return failure
            await asyncio.sleep(SWAP_POLL_S)

    def _looked_over(self, new: Deployment) -> tuple[list[WorkerStatus], str | None]:
        """The new workers' heartbeats, and why the deployment cannot come up (None unless
        it certainly cannot) where they do not all run."""
        workers = self._status.workers(new)
        if overall(len(new.worker_ids), workers) == "Running":
            return workers, None
        return workers, self.failure(new)

    def failure(self, deployment: Deployment) -> str | None:
        """Why the deployment cannot come up, if it certainly cannot (not a crash being restarted).

        A worker that cannot start says so in its heartbeat (Error) and exits
        with EXIT_CANNOT_START; a crashed one is restarted and is no failure.
        """
        beats = {
            s.worker_id: s for s in self.registry.workers(deployment.workspace, deployment.pipeline)
        }
        for worker_id in deployment.worker_ids:
            beat, local = beats.get(worker_id), self._local.get(worker_id)
            reason = beat.reason if beat is not None and beat.reason else "cannot start"
            if local is not None and local.proc.poll() == EXIT_CANNOT_START:
                return f"{worker_id}: {reason}"
            if (
                beat is not None
                and beat.status == "Error"
                and (datetime.now(UTC) - beat.time).total_seconds() < HEARTBEAT_STALE_S
            ):
                return f"{worker_id}: {reason}"
        return None
