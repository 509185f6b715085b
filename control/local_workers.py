"""The worker processes this server runs: started, restarted, adopted after a restart, stopped.

Locally, workers are processes the server starts in sessions of their own
(control/worker_processes.py): they keep serving when the server dies, and a
restarted server adopts those of its recorded deployments and stops those no
deployment wants any more (`Deployer.resume`, `Deployer.retire_strays`). Their
state comes from heartbeats in the registry, like that of the workers it did
not start (`remote_beats`).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields

from control import worker_processes
from control.errors import DeploymentError
from control.records import Deployment, PipelineVersion, Resources
from control.registry import Registry
from control.settings import Settings
from control.worker_ids import worker_role
from control.worker_processes import (
    STOP_GRACE_S,
    AdoptedProcess,
    WorkerLaunch,
    WorkerProcess,
    WorkerRecord,
)
from streams.memory import parse_memory
from streams.status import WorkerStatus

log = logging.getLogger(__name__)

DRAIN_RESTARTS = 3
"""How often a worker that died while draining is started again to finish the drain."""


@dataclass(kw_only=True)
class LocalWorker(WorkerLaunch):
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


class LocalWorkers(Mapping[str, LocalWorker]):
    """This server's local workers by id, and the starting, restarting and stopping of them."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.exactly_once = False
        """Whether workers commit transactionally (asked once by `Deployer.start`)."""
        self._workers: dict[str, LocalWorker] = {}

    # `terminate` runs in a thread (it waits for drains) and takes workers out meanwhile, so
    # iteration is over a copy: a live view of the dict raises in whichever loop looks over it
    # at that moment (once, in a full test run, the supervisor's, which then restarted no
    # worker for the rest of the server's life).
    def __getitem__(self, worker_id: str) -> LocalWorker:
        return self._workers[worker_id]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._workers))

    def values(self) -> list[LocalWorker]:  # type: ignore[override]
        return list(self._workers.values())

    def __len__(self) -> int:
        return len(self._workers)

    def all_alive(self, worker_ids: list[str]) -> bool:
        """Whether each of `worker_ids` is a local process that still runs."""
        return all(w in self._workers and self._workers[w].proc.poll() is None for w in worker_ids)

    def remote_beats(self, ws: str, name: str) -> list[WorkerStatus]:
        """The last heartbeats of a pipeline's workers that this server did not start
        (`weir worker` on other hosts, the compose `worker` service)."""
        return [b for b in self.registry.workers(ws, name) if b.worker_id not in self._workers]

    def last_beat(self, local: LocalWorker) -> WorkerStatus | None:
        """The worker's last heartbeat (of whichever of its processes wrote it)."""
        return self._beat(local.workspace, local.pipeline, local.worker_id)

    def _beat(self, ws: str, name: str, worker_id: str) -> WorkerStatus | None:
        return next((b for b in self.registry.workers(ws, name) if b.worker_id == worker_id), None)

    def spawn(
        self,
        version: PipelineVersion,
        deployment: Deployment,
        resources: Resources,
        replica: int,
        worker_id: str,
        sidekicks: dict[int, str],
        *,
        sidekick: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start a worker process of `deployment` (a sidekick step's if `sidekick` is set)."""
        try:
            parse_memory(resources.memory)
        except ValueError as exc:
            raise DeploymentError(str(exc)) from exc
        threads = max(1, math.ceil(resources.cpus))
        args = [
            sys.executable,
            "-m",
            "control.worker_main",
            version.pipeline,
            version.version,
            "--workspace",
            version.workspace,
            "--replica",
            str(replica),
            "--worker-id",
            worker_id,
            "--threads",
            str(threads),
            "--device",
            "cuda" if resources.gpus > 0 else "cpu",
            "--memory",
            resources.memory,
            "--role",
            worker_role(worker_id),
            "--deployment",
            deployment.id,
            "--result-format",
            deployment.config.result_format,
            "--sidekicks",
            ",".join(map(str, sorted(sidekicks))),
        ]
        if sidekick is not None:
            args += ["--sidekick-step", str(sidekick)]
        own_env = {**worker_processes.thread_limits(threads), **(env or {})}
        self._workers[worker_id] = LocalWorker(
            worker_id,
            version.workspace,
            version.pipeline,
            version.version,
            deployment.id,
            args,
            own_env,
            replica,
            proc=self._popen(worker_id, args, own_env),
        )
        self._record(self._workers[worker_id])

    def restart(self, local: LocalWorker) -> None:
        """Start a dead worker's process again, with the same id, arguments and environment."""
        local.restarts += 1
        local.restart_at = None
        local.started_at = time.monotonic()
        local.proc = self._popen(local.worker_id, local.args, local.env)
        self._record(local)

    def _popen(self, worker_id: str, args: list[str], own_env: dict[str, str]) -> WorkerProcess:
        return worker_processes.spawn(
            self.settings, worker_id, args, own_env, exactly_once=self.exactly_once
        )

    def _record(self, local: LocalWorker) -> None:
        """Write the record of a (re)started local worker (a restarted server adopts it)."""
        started = worker_processes.start_time(local.proc.pid)
        if started is None:  # already gone (and reaped): the supervisor restarts it
            return
        launch = WorkerLaunch(**{f.name: getattr(local, f.name) for f in fields(WorkerLaunch)})
        worker_processes.write_record(
            self.settings, WorkerRecord(launch=launch, pid=local.proc.pid, start_time=started)
        )

    def adopt(self, record: WorkerRecord) -> None:
        """Take on a worker a previous server started, as a local worker of this one."""
        launch = record.launch

        def last_word() -> WorkerStatus | None:
            return self._beat(launch.workspace, launch.pipeline, launch.worker_id)

        beat = last_word()
        ran = beat is not None and beat.pid == record.pid and beat.status != "Starting"
        proc = AdoptedProcess(record.pid, record.start_time, last_word, ran=ran)
        self._workers[launch.worker_id] = LocalWorker(**vars(launch), proc=proc)

    def terminate(
        self, worker_ids: list[str], ended_drain: Callable[[int], bool] = lambda _: True
    ) -> dict[str, int]:
        """SIGTERM the local workers, wait for them to drain and exit; kill any that hang.

        A worker drains for as long as it keeps finishing records (its heartbeat
        counts them), so only one whose count stands still longer than its own
        drain timeout allows is killed. One that died otherwise before it drained
        (its exit code not `ended_drain`: a SIGKILL from outside, a crash) is started
        again, up to DRAIN_RESTARTS times, to finish the drain: the stop request
        its deployer left in the registry makes it drain as soon as it is up, and
        what its deployment's topics hold is answered rather than kept unread.
        Returns each worker's last exit code.
        """
        limit = self.settings.worker_settings().drain_timeout_s + STOP_GRACE_S
        stopping = {w: self._workers.pop(w) for w in worker_ids if w in self._workers}
        stalled: set[str] = set()
        exits = worker_processes.terminate(
            {w: local.proc for w, local in stopping.items()},
            limit,
            lambda w: self._finished(stopping[w]),
            stalled=stalled,
        )
        for _ in range(DRAIN_RESTARTS):
            again = [w for w, code in exits.items() if w not in stalled and not ended_drain(code)]
            if not again:
                break
            for worker_id in again:
                log.warning(
                    "worker %s died while draining (exit code %s); starting it again "
                    "to finish the drain",
                    worker_id,
                    exits[worker_id],
                )
                self.restart(stopping[worker_id])
            exits.update(
                worker_processes.terminate(
                    {w: stopping[w].proc for w in again},
                    limit,
                    lambda w: self._finished(stopping[w]),
                    signal_them=False,
                    stalled=stalled,
                )
            )
        for worker_id in stopping:
            worker_processes.remove_record(self.settings, worker_id)
        return exits

    def _finished(self, local: LocalWorker) -> tuple[int, int | None] | None:
        """A stopping worker's progress, from its last heartbeat (None if unknown): how many
        records it has finished, and what its drain still waits for (a sidekick's backlog)."""
        try:
            beat = self.last_beat(local)
        except Exception:  # noqa: BLE001 - Redis away: no news is no progress
            return None
        return None if beat is None else (beat.processed + beat.failed, beat.backlog)
