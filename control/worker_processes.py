"""Local worker processes: starting them, the private record each leaves, and taking them back.

The deployer starts each local worker in a session of its own, so a server
that dies (SIGKILL, a crash) leaves its workers serving. For each one it writes
a record, `run/workers/<worker id>.json` (owner-only), with what it needs to
restart the worker and to know it again: its pid and the process's start time
(/proc/<pid>/stat field 22), so a pid the kernel gave to another process since
is never taken for the worker. A restarted server adopts the live workers of
its recorded deployments through `AdoptedProcess`, a handle with the subset of
`subprocess.Popen` the deployer uses; `weir down` stops those a SIGKILLed
server left behind with `terminate_recorded`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ValidationError

from control.credentials import write_private
from control.registry import HEARTBEAT_STALE_S
from control.settings import Settings
from streams.stall import Stall
from streams.status import WorkerStatus
from streams.worker import EXIT_CANNOT_START, EXIT_DRAIN_INCOMPLETE, EXIT_OVER_MEMORY

log = logging.getLogger(__name__)

STOP_GRACE_S = 15.0
"""How long past its drain timeout a stopping worker may take before it is killed."""
POLL_S = 0.2
EXIT_UNKNOWN = -signal.SIGKILL
"""What `AdoptedProcess.poll()` returns for a worker that died without a last word (its
final heartbeat is not a Stopped or Error of its own): taken to have been killed, so it
is restarted, and its version's topics are kept (it may have left records in them)."""


class WorkerProcess(Protocol):
    """The part of `subprocess.Popen` the deployer uses; `AdoptedProcess` has it too."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


@dataclass
class WorkerLaunch:
    """A local worker: whose it is, and what starts its process."""

    worker_id: str
    workspace: str
    pipeline: str
    version: str
    deployment: str
    """The id of the deployment it serves."""
    args: list[str]
    env: dict[str, str]
    """Environment variables of its own (a sidekick's `env`), on top of the server's."""
    replica: int = 0


class WorkerRecord(BaseModel):
    """What the deployer writes down of a local worker process it started."""

    launch: WorkerLaunch
    pid: int
    start_time: int
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks after boot."""

    @property
    def worker_id(self) -> str:
        return self.launch.worker_id


def records_dir(settings: Settings) -> Path:
    return settings.run_dir / "workers"


def start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot); None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):  # exited, waiting to be reaped
        return None
    return int(fields[19])  # field 22; fields[0] is field 3


def alive(pid: int, started: int) -> bool:
    """Whether `pid` is still the process that started at `started`."""
    return pid > 0 and start_time(pid) == started


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""What numpy's BLAS (OpenBLAS or MKL) and OpenMP libraries read, once, for their threads."""


def thread_limits(threads: int) -> dict[str, str]:
    """The environment that gives a worker's numeric libraries as many threads as its
    onnxruntime gets (its deployment's cpus). Left alone, numpy's OpenBLAS starts a thread
    per core and wakes them for small products too: a Python step's 256 x 10 @ 10 x 512
    took 2.7 ms of CPU on a 2-core machine, 0.07 ms on one thread."""
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


def spawn(
    settings: Settings,
    worker_id: str,
    args: list[str],
    own_env: dict[str, str],
    *,
    exactly_once: bool,
) -> subprocess.Popen[bytes]:
    """Start a worker process in a session of its own (it outlives the server), logging to
    `run/logs/worker-<id>.log`."""
    logs = settings.run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **own_env,
        "WEIR_HOME": str(settings.home),
        "WEIR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "WEIR_REDIS_URL": settings.redis_url or "",
        "WEIR_EXACTLY_ONCE": str(exactly_once).lower(),
    }
    env.pop("WEIR_TOKEN", None)  # workers never use it, and a Python step could read it
    with open(logs / f"worker-{worker_id}.log", "ab") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def write_record(settings: Settings, record: WorkerRecord) -> None:
    folder = records_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(folder / f"{record.worker_id}.json", record.model_dump_json(indent=2))


def remove_record(settings: Settings, worker_id: str) -> None:
    (records_dir(settings) / f"{worker_id}.json").unlink(missing_ok=True)


def read_records(settings: Settings) -> dict[str, WorkerRecord]:
    """Every worker record, by worker id (an unreadable one is logged and skipped)."""
    records = {}
    for path in sorted(records_dir(settings).glob("*.json")):
        try:
            record = WorkerRecord.model_validate_json(path.read_text())
        except (OSError, ValidationError) as exc:
            log.warning("ignoring the unreadable worker record %s: %s", path, exc)
            continue
        records[record.worker_id] = record
    return records


def adoptable(
    settings: Settings, worker_ids: list[str], deployment: str
) -> list[WorkerRecord] | None:
    """The records of a deployment's workers, if each of them has one and one of them still
    runs (its pid is alive and started when the record says): a restarted server takes
    these back. None if a record is missing, or none of the processes is theirs any more."""
    records = read_records(settings)
    mine = [
        records[w]
        for w in worker_ids
        if w in records and records[w].launch.deployment == deployment
    ]
    if mine and len(mine) == len(worker_ids) and any(alive(r.pid, r.start_time) for r in mine):
        return mine
    return None


def exit_code_from(beat: WorkerStatus | None, pid: int, *, ran: bool) -> int:
    """The exit code a worker that was not our child most likely had, from its final
    heartbeat: Stopped is a drain (EXIT_DRAIN_INCOMPLETE if it said its drain gave up),
    Error its own way out (EXIT_OVER_MEMORY once it ran, else EXIT_CANNOT_START), anything
    else (no heartbeat of this process, or one of it still working) EXIT_UNKNOWN."""
    if beat is None or beat.pid != pid:
        return EXIT_UNKNOWN
    if beat.status == "Stopped":
        return EXIT_DRAIN_INCOMPLETE if beat.reason else 0
    fresh = (datetime.now(UTC) - beat.time).total_seconds() < HEARTBEAT_STALE_S
    if beat.status == "Error" and fresh:  # not the registry's "no heartbeat" for a silent one
        return EXIT_OVER_MEMORY if ran else EXIT_CANNOT_START
    return EXIT_UNKNOWN


class AdoptedProcess:
    """A worker process a previous server started: the `WorkerProcess` subset, by pid.

    It is not our child, so its exit code cannot be read: once it is gone,
    `poll()` returns what `exit_code_from` makes of its final heartbeat
    (`last_word`, asked once), and signals are sent only while the pid is still
    the process that started at `started` (never to a pid reused since).
    """

    def __init__(
        self, pid: int, started: int, last_word: Callable[[], WorkerStatus | None], *, ran: bool
    ) -> None:
        self.pid = pid
        self.started = started
        self.returncode: int | None = None
        self._last_word = last_word
        self._ran = ran
        """Whether it had run when adopted (an Error exit is then no failure to start)."""

    def poll(self) -> int | None:
        if self.returncode is None and not alive(self.pid, self.started):
            try:
                beat = self._last_word()
            except Exception:  # noqa: BLE001 - Redis away: no last word to go by
                beat = None
            self.returncode = exit_code_from(beat, self.pid, ran=self._ran)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"worker pid {self.pid}", timeout or 0)
            time.sleep(0.05)
        return code


def terminate(
    procs: dict[str, WorkerProcess],
    limit_s: float,
    progress: Callable[[str], object] = lambda _: None,
    *,
    signal_them: bool = True,
    stalled: set[str] | None = None,
) -> dict[str, int]:
    """SIGTERM the processes (by worker id; not if `signal_them` is False: they were told
    otherwise), wait for them to exit, and kill any whose `progress(worker_id)` has stood
    still for `limit_s` (their ids added to `stalled`); returns each one's exit code."""
    for proc in procs.values():
        if signal_them and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    stalls = {worker_id: Stall(limit_s) for worker_id in procs}
    while alive_now := [w for w, proc in procs.items() if proc.poll() is None]:
        for worker_id in alive_now:
            if stalls[worker_id].seen(progress(worker_id)):
                proc = procs[worker_id]
                log.warning(
                    "worker pid %s finished nothing for %.0fs while stopping; killing it",
                    proc.pid,
                    limit_s,
                )
                proc.kill()
                proc.wait()
                if stalled is not None:
                    stalled.add(worker_id)
        time.sleep(POLL_S)
    return {
        worker_id: proc.returncode
        for worker_id, proc in procs.items()
        if proc.returncode is not None
    }


def terminate_recorded(settings: Settings, *, keep: Collection[str] = ()) -> list[int]:
    """Stop every recorded worker still alive but those in `keep` (SIGTERM: it drains; SIGKILL
    after its drain timeout and STOP_GRACE_S) and delete their records; returns their pids."""
    records = [r for r in read_records(settings).values() if r.worker_id not in keep]
    procs: dict[str, WorkerProcess] = {
        r.worker_id: AdoptedProcess(r.pid, r.start_time, lambda: None, ran=True)
        for r in records
        if alive(r.pid, r.start_time)
    }
    # The drain timeout the workers got from the environment (Redis may be gone: no
    # heartbeats are read here, the time limit alone).
    terminate(procs, settings.worker.drain_timeout_s + STOP_GRACE_S)
    for record in records:
        remove_record(settings, record.worker_id)
    return [proc.pid for proc in procs.values()]
