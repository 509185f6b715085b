"""The deployer: starts, watches and stops the worker processes of deployed pipelines.

Locally, workers are child processes of the server (they die with it); in
docker-compose they are containers running `weir worker`. Either way their
state comes from heartbeats in the registry. A redeploy starts the new
version's workers first and stops the old ones once the new ones run, so the
pipeline keeps answering.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from control.artifacts import ArtifactStore
from control.errors import DeploymentError, LimitError
from control.records import Deployment, DeploymentConfig, PipelineVersion
from control.registry import Registry
from control.settings import Settings
from streams.admin import ensure_topics
from streams.status import WorkerStatus
from streams.topics import TopicMap

log = logging.getLogger(__name__)

SUPERVISE_EVERY_S = 1.0


def _die_with_parent() -> None:
    """Run in the child before exec: SIGTERM it when the server dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class _Local:
    """A worker process this server started."""

    worker_id: str
    args: list[str]
    proc: subprocess.Popen[bytes]
    restarts: int = 0


class Deployer:
    """Deploys pipeline versions as worker processes and reports their status."""

    def __init__(self, settings: Settings, registry: Registry, topics: TopicMap,
                 artifacts: ArtifactStore) -> None:
        self.settings = settings
        self.registry = registry
        self.topics = topics
        self.artifacts = artifacts
        self._local: dict[str, _Local] = {}
        self._lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="deployer-supervisor")

    async def stop(self) -> None:
        """Stop every local worker (server shutdown); deployments stay recorded."""
        if self._supervisor:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        await asyncio.to_thread(self._terminate, list(self._local))

    # -- deploy / undeploy ------------------------------------------------------
    async def deploy(self, version: PipelineVersion, config: DeploymentConfig) -> Deployment:
        """Start workers for `version`; returns at once (poll `status()` for Running)."""
        ws, name = version.workspace, version.pipeline
        async with self._lock:
            current = self.registry.get_deployment(ws, name)
            if current is None:
                others = [d for d in self.registry.list_deployments()
                          if (d.workspace, d.pipeline) != (ws, name)]
                if len(others) >= self.settings.max_pipelines:
                    raise LimitError(self.settings.max_pipelines)
            elif (current.version == version.version and current.config == config
                  and self._all_alive(current)):
                return current
            for ref in version.definition.models():
                if not self.artifacts.exists(ref.sha):
                    raise DeploymentError(
                        f"model file of {ref.name} (sha256 {ref.sha}) is missing from the "
                        "artifact store; upload the model again")
            if not version.definition.steps:
                raise DeploymentError(f"pipeline {name!r} has no steps: add a model step first")
            await ensure_topics(self.settings.worker_settings().kafka_bootstrap,
                                self.topics.version_topics(ws, name, version.version,
                                                           len(version.definition.steps)))
            ids = [f"{name}-{version.version[:8]}-{i}-{secrets.token_hex(2)}"
                   for i in range(config.replicas)]
            for replica, worker_id in enumerate(ids):
                self._spawn(version, config, replica, worker_id)
            deployment = Deployment(workspace=ws, pipeline=name, version=version.version,
                                    config=config, worker_ids=ids)
            self.registry.set_deployment(deployment)
        if current is not None:
            asyncio.create_task(self._retire_when_replaced(deployment, current.worker_ids))
        return deployment

    async def undeploy(self, ws: str, name: str) -> None:
        async with self._lock:
            deployment = self.registry.get_deployment(ws, name)
            if deployment is None:
                return
            self.registry.delete_deployment(ws, name)
            await self._retire(ws, name, deployment.worker_ids)

    async def _retire_when_replaced(self, new: Deployment, old_ids: list[str]) -> None:
        """Stop the old version's workers once the new ones run (or the wait times out)."""
        deadline = asyncio.get_running_loop().time() + self.settings.deploy_timeout_s
        while asyncio.get_running_loop().time() < deadline:
            if self.overall(new) == "Running":
                break
            await asyncio.sleep(0.2)
        await self._retire(new.workspace, new.pipeline, old_ids)

    async def _retire(self, ws: str, name: str, worker_ids: list[str]) -> None:
        self.registry.request_stop(ws, name, worker_ids)  # reaches remote workers too
        await asyncio.to_thread(self._terminate, worker_ids)
        self.registry.forget_workers(ws, name, worker_ids)

    # -- processes --------------------------------------------------------------
    def _spawn(self, version: PipelineVersion, config: DeploymentConfig, replica: int,
               worker_id: str) -> None:
        args = [sys.executable, "-m", "control.worker_main", version.pipeline, version.version,
                "--workspace", version.workspace, "--replica", str(replica),
                "--worker-id", worker_id, "--threads", str(max(1, math.ceil(config.cpus))),
                "--device", "cuda" if config.gpus > 0 else "cpu"]
        self._local[worker_id] = _Local(worker_id, args, self._popen(worker_id, args))

    def _popen(self, worker_id: str, args: list[str]) -> subprocess.Popen[bytes]:
        logs = self.settings.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "WEIR_HOME": str(self.settings.home),
               "WEIR_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap or "",
               "WEIR_REDIS_URL": self.settings.redis_url or ""}
        with open(logs / f"worker-{worker_id}.log", "ab") as out:
            return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env,
                                    preexec_fn=_die_with_parent)

    def _terminate(self, worker_ids: list[str], timeout: float = 15.0) -> None:
        procs = [self._local.pop(w).proc for w in worker_ids if w in self._local]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("worker pid %s ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait()

    def _all_alive(self, deployment: Deployment) -> bool:
        return all(w in self._local and self._local[w].proc.poll() is None
                   for w in deployment.worker_ids)

    async def _supervise(self) -> None:
        """Restart local workers that died while their deployment still wants them."""
        while True:
            await asyncio.sleep(SUPERVISE_EVERY_S)
            wanted = {w for d in self.registry.list_deployments() for w in d.worker_ids}
            for local in list(self._local.values()):
                code = local.proc.poll()
                if code is None or local.worker_id not in wanted:
                    continue
                local.restarts += 1
                log.warning("worker %s exited with %s; restart #%d", local.worker_id, code,
                            local.restarts)
                local.proc = self._popen(local.worker_id, local.args)

    # -- status -------------------------------------------------------------------
    def _workers(self, deployment: Deployment) -> list[WorkerStatus]:
        found = {s.worker_id: s for s in self.registry.workers(deployment.workspace,
                                                               deployment.pipeline)}
        statuses = []
        for worker_id in deployment.worker_ids:
            status = found.get(worker_id)
            local = self._local.get(worker_id)
            if status is not None and local is not None and local.proc.poll() is not None:
                status = status.model_copy(update={
                    "status": "Error", "reason": f"process exited with {local.proc.returncode}; restarting"})
            if status is not None:
                statuses.append(status)
        return statuses

    def overall(self, deployment: Deployment) -> str:
        workers = self._workers(deployment)
        if any(w.status == "Error" for w in workers):
            return "Error"
        running = [w for w in workers if w.status == "Running"]
        return "Running" if len(running) == len(deployment.worker_ids) else "Starting"

    def status(self, ws: str, name: str) -> dict[str, Any]:
        """The guide's status shape, built from heartbeats."""
        deployment = self.registry.get_deployment(ws, name)
        if deployment is None:
            return {"status": f"Pipeline {name} is not deployed"}
        engines = [{
            "ip": w.host, "name": w.worker_id, "status": w.status, "reason": w.reason,
            "details": [], "version": w.version, "pid": w.pid, "processed": w.processed,
            "failed": w.failed,
            "pipeline_statuses": {"pipelines": [{"id": name, "status": w.status}]},
            "model_statuses": {"models": [m.model_dump() for m in w.models]},
        } for w in self._workers(deployment)]
        return {
            "status": self.overall(deployment), "details": [], "version": deployment.version,
            "engines": engines,
            "engine_lbs": [{"ip": self.settings.http_host, "name": "weir-gateway",
                            "status": "Running", "reason": None, "details": []}],
            "sidekicks": [],
        }
