"""The deployer: starts, watches and stops the worker processes of deployed pipelines.

Local workers are processes the server starts (control/local_workers.py,
restarted when they die by control/supervision.py); in docker-compose they are
containers running `weir worker`. Either way their state comes from heartbeats
in the registry (control/deployment_status.py).

A redeploy is a hot swap: the new version's workers start beside the old ones
(same consumer group), and only once every new worker reports Running are the
old ones told to stop; they drain their version's step topics and exit (see
streams/worker.py, control/retirement.py). If the new version fails (a worker
cannot start, or it is not Running within `deploy_timeout_s`), its workers are
stopped, the previous deployment is restored and keeps serving, and `status()`
reports the failed version as Error until the next deploy or undeploy of the
pipeline.

Workers the server did not start (`weir worker` on other hosts, the compose
`worker` service) join the same consumer groups. A redeploy, an undone one and
an undeploy stop them too (through a stop request in the registry, waited for
by their heartbeats).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiokafka.errors import KafkaError

from control import worker_processes
from control.artifacts import ArtifactStore
from control.deployment_status import DeploymentStatus
from control.errors import DeploymentError, LimitError, RegistryUnavailable
from control.local_workers import LocalWorkers
from control.pipeline_status import PipelineStatus
from control.records import Deployment, DeploymentConfig, PipelineVersion
from control.redeploys import FailedRedeploy, Swap, swap_to
from control.registry import Registry
from control.retirement import Retirement
from control.rollout import SWAP_POLL_S, Rollout
from control.settings import Settings
from control.supervision import Supervisor
from control.worker_ids import new_worker_id
from streams.admin import check_connection, ensure_topics, resolved
from streams.plan import SidekickError, WorkerRole, has_shadows, sidekick_steps
from streams.topics import TopicMap

log = logging.getLogger(__name__)


class Deployer:
    """Deploys pipeline versions as worker processes and reports their status."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        topics: TopicMap,
        artifacts: ArtifactStore,
        *,
        topics_made: Callable[[], None] = lambda: None,
    ) -> None:
        """`topics_made` is called after a deploy made sure of its topics (the log agent looks
        for new ones then)."""
        self.settings = settings
        self._topics_made = topics_made
        self.registry = registry
        self.topics = topics
        self.artifacts = artifacts
        self._local = LocalWorkers(settings, registry)
        self._swaps: dict[tuple[str, str], Swap] = {}
        self._failed: dict[tuple[str, str], FailedRedeploy] = {}
        self._lock = asyncio.Lock()
        self._status = DeploymentStatus(settings, registry, self._local, self._swaps, self._failed)
        self._retirement = Retirement(
            settings, registry, topics, self._local, self._swaps, self._lock
        )
        self._rollout = Rollout(settings, registry, self._local, self._status)
        self._supervisor = Supervisor(registry, self._local, self._swaps)
        self._supervising: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Asked once here rather than by every worker it starts.
        self._local.exactly_once = bool(
            (await resolved(self.settings.worker_settings())).exactly_once
        )
        self._supervising = asyncio.create_task(self._supervisor.run(), name="deployer-supervisor")

    async def stop(self) -> None:
        """Stop every local worker (server shutdown); deployments stay recorded."""
        tasks = [t for t in (self._supervising, *[w.task for w in self._swaps.values()]) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self._local.terminate, list(self._local))
        await self._retirement.close()

    # -- deploy / undeploy ------------------------------------------------------
    async def deploy(self, version: PipelineVersion, config: DeploymentConfig) -> Deployment:
        """Start workers for `version`; returns at once (poll `status()` for Running).

        On a deployed pipeline this is a hot swap: the old workers keep serving
        until the new ones run, then drain and stop.
        """
        ws, name = version.workspace, version.pipeline
        key = (ws, name)
        async with self._lock:
            pending = self._swaps.get(key)
            if (
                pending is not None
                and not pending.handing_over
                and pending.previous.version == version.version
                and pending.previous.config == config
                and self._local.all_alive(pending.previous.worker_ids)
            ):
                return await self._undo(pending, reason=None)  # back to what still serves
            current = await asyncio.to_thread(self.registry.get_deployment, ws, name)
            if current is None:
                deployed = await asyncio.to_thread(self.registry.list_deployments)
                others = [d for d in deployed if (d.workspace, d.pipeline) != key]
                if len(others) >= self.settings.max_pipelines:
                    raise LimitError(self.settings.max_pipelines)
            elif (
                current.version == version.version
                and current.config == config
                and self._local.all_alive(current.worker_ids)
            ):
                self._failed.pop(key, None)
                return current
            for ref in version.definition.models():
                if not self.artifacts.exists(ref.sha):
                    raise DeploymentError(
                        f"model file of {ref.name} (sha256 {ref.sha}) is missing from the "
                        "artifact store; upload the model again"
                    )
            if not version.definition.steps:
                raise DeploymentError(f"pipeline {name!r} has no steps: add a model step first")
            try:
                sidekicks = sidekick_steps(version.definition, config.sidekicks)
            except SidekickError as exc:
                raise DeploymentError(str(exc)) from exc
            deployment = Deployment(
                workspace=ws, pipeline=name, version=version.version, config=config
            )
            try:
                await ensure_topics(
                    self.settings.worker_settings(),
                    self.topics.deployment_topics(
                        ws, name, deployment.id, version.definition, sidekicks
                    ),
                )
            except (KafkaError, TimeoutError):
                await check_connection(self.settings.worker_settings())  # says what is wrong
                raise
            self._topics_made()
            deployment.worker_ids = self._spawn_all(version, deployment, sidekicks)
            self._failed.pop(key, None)
            superseded = self._swaps.pop(key, None)
            if superseded is not None and superseded.task is not None:
                superseded.task.cancel()
            await asyncio.to_thread(self.registry.set_deployment, deployment)
            if current is not None:
                swap = swap_to(deployment, current, superseded)
                swap.task = asyncio.create_task(self._swap(swap), name=f"swap-{ws}-{name}")
                self._swaps[key] = swap
        return deployment

    async def undeploy(self, ws: str, name: str) -> None:
        """Stop every worker of the pipeline (each drains first) and forget the deployment."""
        async with self._lock:
            self._failed.pop((ws, name), None)
            swap = self._swaps.pop((ws, name), None)
            if swap is not None and swap.task is not None:
                swap.task.cancel()
            deployment = await asyncio.to_thread(self.registry.get_deployment, ws, name)
            if deployment is None:
                return
            await asyncio.to_thread(self.registry.delete_deployment, ws, name)
            old = swap.old_ids if swap is not None else []
            remote = await asyncio.to_thread(self._remote, ws, name)
            await self._retirement.retire(ws, name, [*deployment.worker_ids, *old, *remote])
            # What is left are the last heartbeats of remote workers that died or stopped
            # on their own; a later deploy of the pipeline must not list them.
            await asyncio.to_thread(self._forget_remote, ws, name)

    async def resume(self, deployment: Deployment, version: PipelineVersion) -> None:
        """Take a recorded deployment back after a server restart, or start it again.

        If each of its workers has a record and one of them still runs (the
        previous server died), the live ones are adopted as they are and the
        dead ones restarted by the supervisor, with the same ids. Otherwise (a
        stopping server stopped them) the version is deployed again, afresh.
        """
        ws, name = deployment.workspace, deployment.pipeline
        mine = worker_processes.adoptable(self.settings, deployment.worker_ids, deployment.id)
        if mine is not None:
            async with self._lock:
                for record in mine:
                    self._local.adopt(record)
            log.info(
                "took back the workers of %s/%s: %s",
                ws,
                name,
                ", ".join(f"{r.worker_id} (pid {r.pid})" for r in mine),
            )
            return
        self.registry.delete_deployment(ws, name)
        self.registry.forget_workers(ws, name, deployment.worker_ids)
        await self.deploy(version, deployment.config)

    async def retire_strays(self) -> None:
        """Stop the recorded workers no deployment wants (left by a server that died during a
        hot swap, or of a deployment that cannot resume): each drains first, as on undeploy.
        Then delete the read-out topics of deployments nothing runs any more."""
        wanted = {w for d in self.registry.list_deployments() for w in d.worker_ids}
        strays: dict[tuple[str, str], list[str]] = {}
        async with self._lock:
            for record in worker_processes.read_records(self.settings).values():
                if record.worker_id in wanted or record.worker_id in self._local:
                    continue
                if not worker_processes.alive(record.pid, record.start_time):
                    worker_processes.remove_record(self.settings, record.worker_id)
                    continue
                self._local.adopt(record)
                strays.setdefault((record.launch.workspace, record.launch.pipeline), []).append(
                    record.worker_id
                )
            for (ws, name), ids in strays.items():
                log.warning(
                    "stopping workers of %s/%s no deployment wants: %s", ws, name, ", ".join(ids)
                )
                self._retirement.retire_in_background(ws, name, ids)
        await self._retirement.drop_leftover_topics()

    async def _swap(self, swap: Swap) -> None:
        """Retire the old workers once the new ones run; undo the redeploy if they fail."""
        new = swap.new
        key = (new.workspace, new.pipeline)
        failure = await self._rollout.wait_running(new)
        async with self._lock:
            if self._swaps.get(key) is not swap:
                return  # superseded by a later deploy or an undeploy
            if failure is not None:
                log.warning(
                    "version %s of %s/%s failed (%s); %s keeps serving",
                    new.version,
                    new.workspace,
                    new.pipeline,
                    failure,
                    swap.previous.version,
                )
                await self._undo(swap, reason=failure)
                return
            swap.handing_over = True
            remote = await asyncio.to_thread(
                self._remote, new.workspace, new.pipeline, besides=new.version
            )
            old = [*swap.old_ids, *remote]
            self._retirement.retire_in_background(new.workspace, new.pipeline, old)
        # Report Running only once the old workers take no more input, so what is
        # sent after deploy() returns is answered by the new version.
        deadline = (
            asyncio.get_running_loop().time() + self.settings.worker_settings().drain_timeout_s
        )
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(RegistryUnavailable):  # Redis away: ask again
                if await asyncio.to_thread(
                    self._stopped_taking_input, new.workspace, new.pipeline, old
                ):
                    break
            await asyncio.sleep(SWAP_POLL_S)
        async with self._lock:
            if self._swaps.get(key) is swap:
                del self._swaps[key]

    def _forget_remote(self, ws: str, name: str) -> None:
        """Drop the heartbeats left by a pipeline's remote workers."""
        self.registry.forget_workers(
            ws, name, [b.worker_id for b in self._local.remote_beats(ws, name)]
        )

    def _remote(self, ws: str, name: str, *, besides: str | None = None) -> list[str]:
        """Live workers of a pipeline that this server did not start, but of version
        `besides`."""
        return [
            b.worker_id
            for b in self._local.remote_beats(ws, name)
            if b.version != besides and b.status in ("Starting", "Running")
        ]

    def _stopped_taking_input(self, ws: str, name: str, worker_ids: list[str]) -> bool:
        """True when none of `worker_ids` may still take input (each drains, stopped or is gone)."""
        beats = {s.worker_id: s for s in self.registry.workers(ws, name)}
        return all(
            beats[w].status in ("Draining", "Stopped", "Error") for w in worker_ids if w in beats
        )

    async def _undo(self, swap: Swap, *, reason: str | None) -> Deployment:
        """Give up a pending redeploy: the previous deployment serves on (call under the lock)."""
        new = swap.new
        key = (new.workspace, new.pipeline)
        del self._swaps[key]
        if swap.task is not None and swap.task is not asyncio.current_task():
            swap.task.cancel()
        if reason is None:
            self._failed.pop(key, None)
        else:
            self._failed[key] = FailedRedeploy(new, reason)
        await asyncio.to_thread(self.registry.set_deployment, swap.previous)
        keep = set(swap.previous.worker_ids)
        remote = await asyncio.to_thread(
            self._remote, new.workspace, new.pipeline, besides=swap.previous.version
        )
        retire = [*new.worker_ids, *(w for w in swap.old_ids if w not in keep), *remote]
        self._retirement.retire_in_background(new.workspace, new.pipeline, retire)
        return swap.previous

    def _spawn_all(
        self, version: PipelineVersion, deployment: Deployment, sidekicks: dict[int, str]
    ) -> list[str]:
        """Start a deployment's workers: its main workers, shadow workers if it has shadow
        steps, and each sidekick step's own; returns their ids."""
        config, ids = deployment.config, []
        roles: list[WorkerRole] = (
            ["main", "shadow"] if has_shadows(version.definition) else ["main"]
        )
        for role in roles:
            for replica in range(config.replicas):
                ids.append(new_worker_id(version, role, replica))
                self._local.spawn(version, deployment, config, replica, ids[-1], sidekicks)
        for step, model in sorted(sidekicks.items()):
            sidekick = config.sidekicks[model]
            for replica in range(sidekick.replicas):
                ids.append(new_worker_id(version, "sidekick", replica, sidekick=step))
                self._local.spawn(
                    version,
                    deployment,
                    sidekick,
                    replica,
                    ids[-1],
                    sidekicks,
                    sidekick=step,
                    env=sidekick.env,
                )
        return ids

    def restarts(self, ws: str, name: str) -> dict[str, int]:
        """How often this server restarted each of a pipeline's workers that died."""
        return {
            w.worker_id: w.restarts
            for w in self._local.values()
            if (w.workspace, w.pipeline) == (ws, name)
        }

    def status(self, ws: str, name: str) -> PipelineStatus:
        """The guide's status shape, built from heartbeats."""
        return self._status.status(ws, name)
