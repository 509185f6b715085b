"""The deployer: starts, watches and stops the worker processes of deployed pipelines.

Locally, workers are processes the server starts in sessions of their own
(control/worker_processes.py): they keep serving when the server dies, and a
restarted server adopts those of its recorded deployments (`resume`) and stops
those no deployment wants any more (`retire_strays`). In docker-compose they are
containers running `weir worker`. Either way their state comes from heartbeats
in the registry.

A redeploy is a hot swap: the new version's workers start beside the old ones
(same consumer group), and only once every new worker reports Running are the
old ones told to stop; they drain their version's step topics and exit (see
streams/worker.py). If the new version fails (a worker cannot start, or it is
not Running within `deploy_timeout_s`), its workers are stopped, the previous
deployment is restored and keeps serving, and `status()` reports the failed
version as Error until the next deploy or undeploy of the pipeline. Once every
retired worker of a version drained cleanly (and none of it runs anywhere),
the version's step topics are deleted; if a drain gave up they are kept.

A local worker that dies is restarted (unless it exited because it cannot
start): at once, or, if it keeps dying soon after it starts (a record that
crashes it each time it is read again), after a delay that doubles up to
RESTART_BACKOFF_MAX_S. Until its new process reports Running, `status()`
shows it as not Running. A deployment's `memory` is passed to each worker,
which exits when its resident memory goes over it (streams/memory.py): while
Starting that is a failure to start, later it is restarted like a crash, and
`status()` keeps the worker's own reason ("memory limit exceeded: ...") until
it runs again.

Workers the server did not start (`weir worker` on other hosts, the compose
`worker` service) join the same consumer groups. A redeploy, an undone one and
an undeploy stop them too (through a stop request in the registry, waited for
by their heartbeats), and `status()` lists them as `remote` engines, a dead one
as Error (until it has been silent for REMOTE_FORGET_S), without counting them
in the pipeline's own state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError

from control import worker_processes
from control.artifacts import ArtifactStore
from control.errors import DeploymentError, LimitError, RegistryUnavailable
from control.records import Deployment, DeploymentConfig, PipelineVersion, Resources
from control.registry import HEARTBEAT_STALE_S, Registry
from control.settings import Settings
from control.worker_processes import (
    STOP_GRACE_S,
    AdoptedProcess,
    WorkerLaunch,
    WorkerProcess,
    WorkerRecord,
)
from streams.admin import (
    check_connection,
    delete_topics,
    ensure_topics,
    resolved,
    topic_names,
)
from streams.memory import parse_memory
from streams.outage import Outage
from streams.plan import SidekickError, WorkerRole, has_shadows, sidekick_steps
from streams.stall import Stall
from streams.status import WorkerStatus
from streams.topics import TopicMap
from streams.worker import EXIT_CANNOT_START, EXIT_DRAIN_INCOMPLETE, EXIT_OVER_MEMORY

log = logging.getLogger(__name__)

SUPERVISE_EVERY_S = 0.25
"""How often dead local workers are looked for (a restart begins within this long)."""
RESTART_BACKOFF_MAX_S = 30.0
"""A worker that keeps dying soon after it starts (e.g. a record that crashes it
every time) is restarted after 0, 1, 2, 4 ... s, at most this long."""
STABLE_AFTER_S = 60.0
"""A worker that ran this long before it died, or answered records, is restarted at once
again."""
SWAP_POLL_S = 0.2
LEFT_NOTHING = {0, -signal.SIGTERM, EXIT_CANNOT_START}
"""Exit codes of a stopped worker that left no record behind in its version's topics: it
drained, or was stopped (by SIGTERM's default action) or failed before it read any."""
REMOTE_FORGET_S = 600.0
"""A remote worker silent this long is taken to be gone for good (its host removed):
`status()` stops listing it. If it comes back it reports again."""


def new_worker_id(version: PipelineVersion, role: WorkerRole, replica: int,
                  suffix: str | None = None, sidekick: int | None = None) -> str:
    """A worker's id: `<pipeline>-<version>-<replica>-<suffix>` (random by default, no
    dashes); a shadow worker's replica part is `shadow<replica>`, a sidekick worker's
    `sidekick<step>x<replica>`."""
    part = {"main": str(replica), "shadow": f"shadow{replica}",
            "sidekick": f"sidekick{sidekick}x{replica}"}[role]
    return f"{version.pipeline}-{version.version[:8]}-{part}-{suffix or secrets.token_hex(2)}"


def worker_role(worker_id: str) -> WorkerRole:
    """The role an id from `new_worker_id` names ("main" for any other id)."""
    parts = worker_id.rsplit("-", 2)
    part = parts[1] if len(parts) == 3 else ""
    if part.startswith("shadow"):
        return "shadow"
    return "sidekick" if part.startswith("sidekick") else "main"


@dataclass(kw_only=True)
class _Local(WorkerLaunch):
    """A local worker process: one this server started, or adopted after a restart."""

    proc: WorkerProcess
    restarts: int = 0
    last_exit: int | None = None
    last_reason: str | None = None
    """Why the process last exited, as its final heartbeat said (kept across the restart)."""
    started_at: float = field(default_factory=time.monotonic)
    quick_deaths: int = 0
    """Exits in a row, each within STABLE_AFTER_S of its start (sets the restart delay)."""
    restart_at: float | None = None


@dataclass
class _Swap:
    """A redeploy waiting for its new workers to run."""

    new: Deployment
    previous: Deployment
    """What serves until the new version runs, and what is restored if it fails."""
    old_ids: list[str]
    """Workers to retire once the new version runs (the previous ones, and any
    half-started version this redeploy superseded)."""
    task: asyncio.Task[None] | None = None
    handing_over: bool = False
    """The new version runs and the old workers were told to stop; until they
    report Draining (no more input taken) the new deployment is not Running."""


@dataclass
class _Failed:
    """A redeploy that did not reach Running; reported by status() until the next (un)deploy."""

    deployment: Deployment
    reason: str


class Deployer:
    """Deploys pipeline versions as worker processes and reports their status."""

    def __init__(self, settings: Settings, registry: Registry, topics: TopicMap,
                 artifacts: ArtifactStore) -> None:
        self.settings = settings
        self.registry = registry
        self.topics = topics
        self.artifacts = artifacts
        self._local: dict[str, _Local] = {}
        self._swaps: dict[tuple[str, str], _Swap] = {}
        self._failed: dict[tuple[str, str], _Failed] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._exactly_once = False
        self._supervision_failing = Outage(log, "worker supervision (reading the registry)")

    async def start(self) -> None:
        # Asked once here rather than by every worker it starts.
        self._exactly_once = bool((await resolved(self.settings.worker_settings())).exactly_once)
        self._supervisor = asyncio.create_task(self._supervise(), name="deployer-supervisor")

    async def stop(self) -> None:
        """Stop every local worker (server shutdown); deployments stay recorded."""
        tasks = [t for t in (self._supervisor, *[w.task for w in self._swaps.values()]) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self._terminate, list(self._local))
        await asyncio.gather(*self._retiring, return_exceptions=True)

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
            if (pending is not None and not pending.handing_over
                    and pending.previous.version == version.version
                    and pending.previous.config == config and self._all_alive(pending.previous)):
                return self._undo(pending, reason=None)  # back to what still serves
            current = self.registry.get_deployment(ws, name)
            if current is None:
                others = [d for d in self.registry.list_deployments()
                          if (d.workspace, d.pipeline) != key]
                if len(others) >= self.settings.max_pipelines:
                    raise LimitError(self.settings.max_pipelines)
            elif (current.version == version.version and current.config == config
                  and self._all_alive(current)):
                self._failed.pop(key, None)
                return current
            for ref in version.definition.models():
                if not self.artifacts.exists(ref.sha):
                    raise DeploymentError(
                        f"model file of {ref.name} (sha256 {ref.sha}) is missing from the "
                        "artifact store; upload the model again")
            if not version.definition.steps:
                raise DeploymentError(f"pipeline {name!r} has no steps: add a model step first")
            try:
                sidekicks = sidekick_steps(version.definition, config.sidekicks)
            except SidekickError as exc:
                raise DeploymentError(str(exc)) from exc
            deployment = Deployment(workspace=ws, pipeline=name, version=version.version,
                                    config=config)
            try:
                await ensure_topics(self.settings.worker_settings(),
                                    self.topics.deployment_topics(ws, name, deployment.id,
                                                                  version.definition, sidekicks))
            except (KafkaError, TimeoutError):
                await check_connection(self.settings.worker_settings())  # says what is wrong
                raise
            deployment.worker_ids = self._spawn_all(version, deployment, sidekicks)
            self._failed.pop(key, None)
            superseded = self._swaps.pop(key, None)
            if superseded is not None and superseded.task is not None:
                superseded.task.cancel()
            self.registry.set_deployment(deployment)
            if current is not None:
                if superseded is not None:  # the half-started version goes too
                    swap = _Swap(deployment, superseded.previous,
                                 [*superseded.old_ids, *current.worker_ids])
                else:
                    swap = _Swap(deployment, current, list(current.worker_ids))
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
            deployment = self.registry.get_deployment(ws, name)
            if deployment is None:
                return
            self.registry.delete_deployment(ws, name)
            old = swap.old_ids if swap is not None else []
            await self._retire(ws, name, [*deployment.worker_ids, *old, *self._remote(ws, name)])
            # What is left are the last heartbeats of remote workers that died or stopped
            # on their own; a later deploy of the pipeline must not list them.
            self.registry.forget_workers(
                ws, name, [b.worker_id for b in self._not_started_here(ws, name)])

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
                    self._local[record.worker_id] = self._adopt(record)
            log.info("took back the workers of %s/%s: %s", ws, name,
                     ", ".join(f"{r.worker_id} (pid {r.pid})" for r in mine))
            return
        self.registry.delete_deployment(ws, name)
        self.registry.forget_workers(ws, name, deployment.worker_ids)
        await self.deploy(version, deployment.config)

    async def retire_strays(self) -> None:
        """Stop the recorded workers no deployment wants (left by a server that died during a
        hot swap, or of a deployment that cannot resume): each drains first, as on undeploy."""
        wanted = {w for d in self.registry.list_deployments() for w in d.worker_ids}
        strays: dict[tuple[str, str], list[str]] = {}
        async with self._lock:
            for record in worker_processes.read_records(self.settings).values():
                if record.worker_id in wanted or record.worker_id in self._local:
                    continue
                if not worker_processes.alive(record.pid, record.start_time):
                    worker_processes.remove_record(self.settings, record.worker_id)
                    continue
                self._local[record.worker_id] = self._adopt(record)
                strays.setdefault((record.launch.workspace, record.launch.pipeline),
                                  []).append(record.worker_id)
            for (ws, name), ids in strays.items():
                log.warning("stopping workers of %s/%s no deployment wants: %s", ws, name,
                            ", ".join(ids))
                self._in_background(self._retire(ws, name, ids))

    async def _swap(self, swap: _Swap) -> None:
        """Retire the old workers once the new ones run; undo the redeploy if they fail."""
        new = swap.new
        key = (new.workspace, new.pipeline)
        failure = await self._wait_running(new)
        async with self._lock:
            if self._swaps.get(key) is not swap:
                return  # superseded by a later deploy or an undeploy
            if failure is not None:
                log.warning("version %s of %s/%s failed (%s); %s keeps serving", new.version,
                            new.workspace, new.pipeline, failure, swap.previous.version)
                self._undo(swap, reason=failure)
                return
            swap.handing_over = True
            old = [*swap.old_ids, *self._remote(new.workspace, new.pipeline, besides=new.version)]
            self._in_background(self._retire(new.workspace, new.pipeline, old))
        # Report Running only once the old workers take no more input, so what is
        # sent after deploy() returns is answered by the new version.
        deadline = (asyncio.get_running_loop().time()
                    + self.settings.worker_settings().drain_timeout_s)
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(RegistryUnavailable):  # Redis away: ask again
                if self._stopped_taking_input(new.workspace, new.pipeline, old):
                    break
            await asyncio.sleep(SWAP_POLL_S)
        async with self._lock:
            if self._swaps.get(key) is swap:
                del self._swaps[key]

    async def _wait_running(self, new: Deployment) -> str | None:
        """Wait until every worker of `new` runs; why it failed, if it did. While Redis is
        away the heartbeats cannot be read: the wait goes on (its deadline too)."""
        limit = self.settings.deploy_timeout_s
        deadline = asyncio.get_running_loop().time() + limit
        said: set[str | None] = set()
        while True:
            try:
                workers = self._workers(new)
                if self._overall(new, workers) == "Running":
                    return None
                failure = self._failure(new)
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
                    for w in workers if w.status != "Running")
            if failure is not None:
                return failure
            await asyncio.sleep(SWAP_POLL_S)

    def _not_started_here(self, ws: str, name: str) -> list[WorkerStatus]:
        """The last heartbeats of a pipeline's workers that this server did not start
        (`weir worker` on other hosts, the compose `worker` service)."""
        return [b for b in self.registry.workers(ws, name) if b.worker_id not in self._local]

    def _remote(self, ws: str, name: str, *, besides: str | None = None) -> list[str]:
        """Live workers of a pipeline that this server did not start, but of version
        `besides`."""
        return [b.worker_id for b in self._not_started_here(ws, name)
                if b.version != besides and b.status in ("Starting", "Running")]

    def _stopped_taking_input(self, ws: str, name: str, worker_ids: list[str]) -> bool:
        """True when none of `worker_ids` may still take input (each drains, stopped or is gone)."""
        beats = {s.worker_id: s for s in self.registry.workers(ws, name)}
        return all(beats[w].status in ("Draining", "Stopped", "Error")
                   for w in worker_ids if w in beats)

    def _undo(self, swap: _Swap, *, reason: str | None) -> Deployment:
        """Give up a pending redeploy: the previous deployment serves on (call under the lock)."""
        new = swap.new
        key = (new.workspace, new.pipeline)
        del self._swaps[key]
        if swap.task is not None and swap.task is not asyncio.current_task():
            swap.task.cancel()
        if reason is None:
            self._failed.pop(key, None)
        else:
            self._failed[key] = _Failed(new, reason)
        self.registry.set_deployment(swap.previous)
        keep = set(swap.previous.worker_ids)
        retire = [*new.worker_ids, *(w for w in swap.old_ids if w not in keep),
                  *self._remote(new.workspace, new.pipeline, besides=swap.previous.version)]
        self._in_background(self._retire(new.workspace, new.pipeline, retire))
        return swap.previous

    def _spawn_all(self, version: PipelineVersion, deployment: Deployment,
                   sidekicks: dict[int, str]) -> list[str]:
        """Start a deployment's workers: its main workers, shadow workers if it has shadow
        steps, and each sidekick step's own; returns their ids."""
        config, ids = deployment.config, []
        roles: list[WorkerRole] = ["main", "shadow"] if has_shadows(version.definition) \
            else ["main"]
        for role in roles:
            for replica in range(config.replicas):
                ids.append(new_worker_id(version, role, replica))
                self._spawn(version, deployment, config, replica, ids[-1], sidekicks)
        for step, model in sorted(sidekicks.items()):
            sidekick = config.sidekicks[model]
            for replica in range(sidekick.replicas):
                ids.append(new_worker_id(version, "sidekick", replica, sidekick=step))
                self._spawn(version, deployment, sidekick, replica, ids[-1], sidekicks,
                            sidekick=step, env=sidekick.env)
        return ids

    def _in_background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, ws: str, name: str, worker_ids: list[str]) -> None:
        """Stop workers: each drains its version's topics, then exits; then drop those topics.

        Main workers go first: until they have drained, they still fan rows
        out to the shadow workers' topics and send rows to their sidekicks (and
        wait for the sidekicks' answers). Remote workers get the same stop
        request through the registry and are waited for by their heartbeats.
        """
        beats = {b.worker_id: b for b in self.registry.workers(ws, name)}
        remote = {w for w in worker_ids if w not in self._local and w in beats
                  and beats[w].status in ("Starting", "Running", "Draining")}
        deployments = ({self._local[w].deployment for w in worker_ids if w in self._local}
                       | {beats[w].deployment for w in remote})
        exits: dict[str, int | None] = {}
        for role in ("main", "shadow", "sidekick"):
            ids = [w for w in worker_ids if worker_role(w) == role]
            if ids:
                self.registry.request_stop(ws, name, ids)  # reaches remote workers too
                exits.update(await asyncio.to_thread(self._terminate, ids))
                exits.update(await asyncio.to_thread(
                    self._await_remote, ws, name, [w for w in ids if w in remote]))
                self.registry.forget_workers(ws, name, ids)
        undrained = {w: code for w, code in exits.items() if code not in LEFT_NOTHING}
        if undrained:  # what is left in the topics is kept for whoever looks into it
            log.warning("keeping the topics of %s/%s deployment(s) %s: workers %s did not "
                        "finish draining", ws, name, ", ".join(sorted(deployments)), undrained)
            return
        for deployment in deployments:
            self._in_background(self._drop_deployment_topics(ws, name, deployment))

    async def _drop_deployment_topics(self, ws: str, name: str, deployment: str) -> None:
        """Delete a retired deployment's own topics (boundary and challenger topics), unless
        it serves again or a worker of it (here or remote) is still alive."""
        async with self._lock:
            key = (ws, name)
            current = self.registry.get_deployment(ws, name)
            swap = self._swaps.get(key)
            in_use = {d.id for d in (current, swap and swap.new, swap and swap.previous)
                      if d is not None}
            alive = any(b.deployment == deployment
                        and b.status in ("Starting", "Running", "Draining")
                        for b in self.registry.workers(ws, name))
            if deployment in in_use or alive or any(
                    local.deployment == deployment for local in self._local.values()
                    if (local.workspace, local.pipeline) == key):
                return
            try:
                settings = self.settings.worker_settings()
                names = [t for t in await topic_names(settings)
                         if self.topics.deployment_of(t) == (ws, name, deployment)]
                await delete_topics(settings, names)
            except Exception:  # the topics stay; nothing else depends on it
                log.exception("could not delete the topics of %s/%s deployment %s", ws, name,
                              deployment)

    def _failure(self, deployment: Deployment) -> str | None:
        """Why the deployment cannot come up, if it certainly cannot (not a crash being restarted).

        A worker that cannot start says so in its heartbeat (Error) and exits
        with EXIT_CANNOT_START; a crashed one is restarted and is no failure.
        """
        beats = {s.worker_id: s for s in self.registry.workers(deployment.workspace,
                                                               deployment.pipeline)}
        for worker_id in deployment.worker_ids:
            beat, local = beats.get(worker_id), self._local.get(worker_id)
            reason = beat.reason if beat is not None and beat.reason else "cannot start"
            if local is not None and local.proc.poll() == EXIT_CANNOT_START:
                return f"{worker_id}: {reason}"
            if (beat is not None and beat.status == "Error"
                    and (datetime.now(UTC) - beat.time).total_seconds() < HEARTBEAT_STALE_S):
                return f"{worker_id}: {reason}"
        return None

    # -- processes --------------------------------------------------------------
    def _spawn(self, version: PipelineVersion, deployment: Deployment, resources: Resources,
               replica: int, worker_id: str, sidekicks: dict[int, str], *,
               sidekick: int | None = None, env: dict[str, str] | None = None) -> None:
        try:
            parse_memory(resources.memory)
        except ValueError as exc:
            raise DeploymentError(str(exc)) from exc
        args = [sys.executable, "-m", "control.worker_main", version.pipeline, version.version,
                "--workspace", version.workspace, "--replica", str(replica),
                "--worker-id", worker_id, "--threads", str(max(1, math.ceil(resources.cpus))),
                "--device", "cuda" if resources.gpus > 0 else "cpu",
                "--memory", resources.memory, "--role", worker_role(worker_id),
                "--deployment", deployment.id,
                "--sidekicks", ",".join(map(str, sorted(sidekicks)))]
        if sidekick is not None:
            args += ["--sidekick-step", str(sidekick)]
        own_env = dict(env or {})
        self._local[worker_id] = _Local(worker_id, version.workspace, version.pipeline,
                                        version.version, deployment.id, args, own_env,
                                        replica, proc=self._popen(worker_id, args, own_env))
        self._record(self._local[worker_id])

    def _popen(self, worker_id: str, args: list[str],
               own_env: dict[str, str]) -> WorkerProcess:
        return worker_processes.spawn(self.settings, worker_id, args, own_env,
                                      exactly_once=self._exactly_once)

    def _record(self, local: _Local) -> None:
        """Write the record of a (re)started local worker (a restarted server adopts it)."""
        started = worker_processes.start_time(local.proc.pid)
        if started is None:  # already gone (and reaped): the supervisor restarts it
            return
        launch = WorkerLaunch(**{f.name: getattr(local, f.name) for f in fields(WorkerLaunch)})
        worker_processes.write_record(self.settings, WorkerRecord(
            launch=launch, pid=local.proc.pid, start_time=started))

    def _adopt(self, record: WorkerRecord) -> _Local:
        """A worker a previous server started, as a `_Local` of this one."""
        launch = record.launch

        def last_word() -> WorkerStatus | None:
            return self._beat(launch.workspace, launch.pipeline, launch.worker_id)

        beat = last_word()
        ran = beat is not None and beat.pid == record.pid and beat.status != "Starting"
        proc = AdoptedProcess(record.pid, record.start_time, last_word, ran=ran)
        return _Local(**vars(launch), proc=proc)

    def _terminate(self, worker_ids: list[str]) -> dict[str, int]:
        """SIGTERM the local workers, wait for them to drain and exit; kill any that hang.

        A worker drains for as long as it keeps finishing records (its heartbeat
        counts them), so only one whose count stands still longer than its own
        drain timeout allows is killed. Returns each worker's exit code.
        """
        limit = self.settings.worker_settings().drain_timeout_s + STOP_GRACE_S
        stopping = {w: self._local.pop(w) for w in worker_ids if w in self._local}
        exits = worker_processes.terminate({w: local.proc for w, local in stopping.items()},
                                           limit, lambda w: self._finished(stopping[w]))
        for worker_id in stopping:
            worker_processes.remove_record(self.settings, worker_id)
        return exits

    def _await_remote(self, ws: str, name: str, worker_ids: list[str]) -> dict[str, int | None]:
        """Wait for remote workers told to stop to report Stopped; each one's exit code as far
        as its heartbeats tell (None: it went silent, or finished nothing for too long)."""
        limit = self.settings.worker_settings().drain_timeout_s + STOP_GRACE_S
        stalls = {w: Stall(limit) for w in worker_ids}
        exits: dict[str, int | None] = {}
        while waiting := [w for w in worker_ids if w not in exits]:
            beats = {b.worker_id: b for b in self.registry.workers(ws, name)}
            for w in waiting:
                beat = beats.get(w)
                if beat is None or beat.status == "Error":  # gone, or its heartbeats stopped
                    exits[w] = None
                elif beat.status == "Stopped":
                    exits[w] = EXIT_DRAIN_INCOMPLETE if beat.reason else 0
                elif stalls[w].seen((beat.processed + beat.failed, beat.backlog)):
                    log.warning("remote worker %s finished nothing for %.0fs while stopping; "
                                "no longer waiting for it", w, limit)
                    exits[w] = None
            if len(exits) < len(worker_ids):
                time.sleep(SWAP_POLL_S)
        return exits

    def _finished(self, local: _Local) -> tuple[int, int | None] | None:
        """A stopping worker's progress, from its last heartbeat (None if unknown): how many
        records it has finished, and what its drain still waits for (a sidekick's backlog)."""
        try:
            beat = self._last_beat(local)
        except Exception:  # noqa: BLE001 - Redis away: no news is no progress
            return None
        return None if beat is None else (beat.processed + beat.failed, beat.backlog)

    def _last_beat(self, local: _Local) -> WorkerStatus | None:
        return self._beat(local.workspace, local.pipeline, local.worker_id)

    def _beat(self, ws: str, name: str, worker_id: str) -> WorkerStatus | None:
        return next((b for b in self.registry.workers(ws, name) if b.worker_id == worker_id),
                    None)

    def _all_alive(self, deployment: Deployment) -> bool:
        return all(w in self._local and self._local[w].proc.poll() is None
                   for w in deployment.worker_ids)

    async def _supervise(self) -> None:
        """Restart local workers that died while a deployment still wants them. With Redis
        away, which workers are wanted is unknown: none is touched until it is back (they
        serve on, whatever their heartbeats, which cannot be read either)."""
        while True:
            await asyncio.sleep(SUPERVISE_EVERY_S)
            try:
                self._restart_dead()
                self._forget_gone_remote()
            except RegistryUnavailable as exc:  # said once; tried again each round
                self._supervision_failing.failed(exc)
            except Exception:
                log.exception("worker supervision failed")
            else:
                self._supervision_failing.ok()

    def _restart_dead(self) -> None:
        wanted = {w for d in self.registry.list_deployments() for w in d.worker_ids}
        for swap in self._swaps.values():
            wanted.update(swap.old_ids)
        for local in list(self._local.values()):
            code = local.proc.poll()
            if code is None or local.worker_id not in wanted:
                continue
            if code == EXIT_CANNOT_START:
                if local.last_exit != code:
                    log.error("worker %s cannot start; not restarting it (see its log)",
                              local.worker_id)
                local.last_exit = code
                continue
            now = time.monotonic()
            if local.restart_at is None:  # just found dead: when to start it again
                stable = now - local.started_at >= STABLE_AFTER_S or self._answered(local)
                local.quick_deaths = 0 if stable else local.quick_deaths + 1
                delay = (0.0 if local.quick_deaths <= 1
                         else min(2.0 ** (local.quick_deaths - 2), RESTART_BACKOFF_MAX_S))
                local.restart_at = now + delay
                local.last_exit = code
                local.last_reason = self._exit_reason(local, code)
                log.warning("worker %s exited with %s%s; restarting it in %.0fs",
                            local.worker_id, code,
                            f" ({local.last_reason})" if local.last_reason else "", delay)
            if now < local.restart_at:
                continue
            local.restarts += 1
            local.restart_at = None
            local.started_at = now
            local.proc = self._popen(local.worker_id, local.args, local.env)
            self._record(local)

    def _answered(self, local: _Local) -> bool:
        """Whether the dead process finished records: one killed from outside, not one that
        dies on the record it reads first (those wait longer each time)."""
        beat = self._last_beat(local)
        return beat is not None and beat.pid == local.proc.pid and beat.processed > 0

    def _forget_gone_remote(self) -> None:
        """Drop the heartbeats of remote workers silent for over REMOTE_FORGET_S."""
        now = datetime.now(UTC)
        for deployment in self.registry.list_deployments():
            ws, name = deployment.workspace, deployment.pipeline
            gone = [b.worker_id for b in self._not_started_here(ws, name)
                    if b.worker_id not in deployment.worker_ids
                    and (now - b.time).total_seconds() > REMOTE_FORGET_S]
            if gone:
                log.warning("forgetting remote workers of %s/%s silent for over %.0fs: %s",
                            ws, name, REMOTE_FORGET_S, ", ".join(gone))
                self.registry.forget_workers(ws, name, gone)

    def _exit_reason(self, local: _Local, code: int) -> str | None:
        """The reason an exited process gave in its last heartbeat, if it said why it left."""
        if code != EXIT_OVER_MEMORY:
            return None
        beat = self._last_beat(local)
        if beat is None or beat.pid != local.proc.pid or beat.status != "Error":
            return None
        return beat.reason

    def restarts(self, ws: str, name: str) -> dict[str, int]:
        """How often this server restarted each of a pipeline's workers that died."""
        return {w.worker_id: w.restarts for w in self._local.values()
                if (w.workspace, w.pipeline) == (ws, name)}

    # -- status -------------------------------------------------------------------
    def _workers(self, deployment: Deployment) -> list[WorkerStatus]:
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
        return [b for b in self._not_started_here(deployment.workspace, deployment.pipeline)
                if b.worker_id not in deployment.worker_ids
                and (b.status in ("Starting", "Running", "Draining")
                     or (b.status == "Error" and b.version == deployment.version))]

    @staticmethod
    def _restart_reason(local: _Local) -> str | None:
        """Why a restarted worker is not Running yet: how its last process ended."""
        if not local.restarts:
            return None
        said = f": {local.last_reason}" if local.last_reason else ""
        return f"restarted after exit code {local.last_exit}{said}"

    def _placeholder(self, deployment: Deployment, local: _Local) -> WorkerStatus:
        return WorkerStatus(
            worker_id=local.worker_id, workspace=deployment.workspace,
            pipeline=deployment.pipeline, version=deployment.version, replica=local.replica,
            pid=local.proc.pid, host=socket.gethostname(), status="Starting",
            role=worker_role(local.worker_id), deployment=local.deployment,
            time=datetime.now(UTC))

    @staticmethod
    def _overall(deployment: Deployment, workers: list[WorkerStatus]) -> str:
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
        workers = self._workers(deployment)
        state, version, details = self._overall(deployment, workers), deployment.version, []
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
