"""The worker: one process running the stages of one pipeline version (streams.loop).

A "main" worker runs the version's steps fused, from the input topic to the
result; a version with shadow deploys also gets "shadow" workers, which run
only its challengers, and a step given sidekick settings runs in "sidekick"
workers of its own (streams.plan). All versions' main workers share one
consumer group, so the input topic's partitions are split between whatever
workers are up: replicas scale out, and a new version's workers take over
input as the old ones leave. Shadow workers, and each sidekick step's workers,
have a group of their own.

Told to stop (SIGTERM, or a stop request seen in its heartbeat), a worker
drains before it leaves: it pauses its input partitions (and keeps them paused
across rebalances), finishes what it holds, waits until its deployment's
topics that lead back to it are read to their end by the groups that read
them (a sidekick's input, the steps after it) with nothing in flight, commits
and exits. So a hot swap or an undeploy loses nothing and, as
each offset is committed only after what it produced is delivered, repeats
nothing. A drain takes as long as it keeps finishing records; it is given up
only when it stands still for `WorkerSettings.drain_timeout_s`. More SIGTERMs
while it drains change nothing (a stop request and the deployer's signal often
come together; a worker that hangs is SIGKILLed); a second SIGINT (Ctrl-C
again) stops at once.

Heartbeats go to the registry (Redis). While it is away a worker serves on with
what it loaded: a failed heartbeat is said once in its log and tried again each
round, and it never stops or stalls the worker. A worker that finds Kafka away as
it starts (a broker restarting) waits for it, up to `WorkerSettings.kafka_wait_s`,
and drains only once it has started, if told to stop meanwhile: one started again
to finish a drain would otherwise exit at once, and leave the drain unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from engine.errors import WeirError
from engine.pipeline import ArtifactPath, CompiledPipeline, load_pipeline
from streams.claims import PartitionClaims
from streams.drain import Drain
from streams.gc_tuning import tune_gc
from streams.loop import StageLoop
from streams.memory import MemoryWatch
from streams.membership import MemberRecord
from streams.metrics import WorkerMetrics
from streams.outage import Outage
from streams.plan import worker_stages
from streams.settings import WorkerSettings
from streams.stage import StepCounters
from streams.status import HeartbeatSink, ModelStatus, WorkerState, WorkerStatus
from streams.topics import TopicMap
from streams.worker_spec import WorkerSpec

log = logging.getLogger(__name__)

EXIT_CANNOT_START = 2
"""Exit code of a worker that cannot start (a model does not load): restarting will not help."""
EXIT_OVER_MEMORY = 3
"""Exit code of a running worker that went over its memory limit (restarted, like an OOM kill)."""
EXIT_DRAIN_INCOMPLETE = 4
"""Exit code of a stopped worker whose drain gave up: its version's topics still hold records."""
KAFKA_RETRY_S = 1.0
"""How often a starting worker tries Kafka again while it does not answer."""
LOADING_BEAT_S = 0.5
"""How often a loading worker reports its progress (a Python step's environment building)."""


class Worker:
    """Loads a spec's models, runs its stages, reports heartbeats, runs until told to stop."""

    def __init__(
        self,
        spec: WorkerSpec,
        settings: WorkerSettings,
        topics: TopicMap,
        artifact_path: ArtifactPath,
        heartbeat: HeartbeatSink,
        claims: PartitionClaims | None = None,
        members: MemberRecord | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.topic_map = topics
        self.artifact_path = artifact_path
        self.heartbeat = heartbeat
        self.claims = claims
        self.members = members
        self.state: WorkerState = "Starting"
        self.reason: str | None = None
        self.counters = StepCounters()
        self.metrics = WorkerMetrics()
        self.pipeline: CompiledPipeline | None = None
        self.loop: StageLoop | None = None
        self._draining = False
        self._drain_incomplete = False
        self._drain = Drain(spec, settings, topics)
        self._last_loading_beat = float("-inf")
        self._stop = asyncio.Event()
        self._started = asyncio.Event()  # the loop is connected and in its group
        self._drain_task: asyncio.Task[None] | None = None
        self._beats_failing = Outage(log, f"heartbeats of worker {spec.worker_id}")

    def status(self) -> WorkerStatus:
        refs = self.spec.definition.models()
        return WorkerStatus(
            worker_id=self.spec.worker_id,
            workspace=self.spec.workspace,
            pipeline=self.spec.pipeline,
            version=self.spec.version,
            replica=self.spec.replica,
            role=self.spec.role,
            deployment=self.spec.deployment,
            pid=os.getpid(),
            host=socket.gethostname(),
            status=self.state,
            reason=self.reason or self._waiting_for(),
            models=[
                ModelStatus(
                    name=r.name,
                    version=r.version,
                    sha=r.sha,
                    status="Running" if self.state == "Running" else self.state,
                )
                for r in refs
            ],
            processed=self.counters.processed,
            failed=self.counters.failed,
            backlog=self._drain.backlog,
            metrics=self.metrics.snapshot(),
            time=datetime.now(UTC),
        )

    def build(self) -> StageLoop:
        """Load the models (checked by sha), saying how loading goes in heartbeats (a Python
        step's environment may take minutes to build), and wire the stages."""
        spec = self.spec
        options = dataclasses.replace(spec.options, progress=self._loading)
        try:
            self.pipeline = load_pipeline(
                spec.version, spec.definition, self.artifact_path, options
            )
        finally:
            self.reason = None
        # pyarrow imports pandas (where installed) the first time it converts a numpy
        # array: 0.2-0.5 s, paid here while the worker is Starting and before the
        # collector freezes what start-up loaded, not by the first record.
        pa.array(np.zeros(1))
        stages = worker_stages(
            self.pipeline,
            spec.layout,
            self.topic_map,
            spec.role,
            self.settings,
            spec.sidekick_step,
            self.metrics,
            spec.result_format,
        )
        if not stages:
            raise WeirError(f"version {spec.version} has nothing for a {spec.role} worker to run")
        self.loop = StageLoop(
            stages,
            self.settings,
            group_id=spec.group_id,
            client_id=spec.worker_id,
            counters=self.counters,
            exactly_once=bool(self.settings.exactly_once),
            on_assigned=self._assigned,
            claims=self.claims,
            metrics=self.metrics,
            members=self.members,
        )
        return self.loop

    def _waiting_for(self) -> str | None:
        """Why a loaded worker is not Running yet: its consumer group has not settled."""
        if self.state != "Starting" or self.loop is None:
            return None
        waiting = self.loop.joining_s
        if waiting is None or waiting < self.settings.session_timeout_s:
            return None
        return (
            f"waiting for partitions: consumer group {self.spec.group_id} has not "
            f"assigned any for {waiting:.0f}s"
        )

    def _loading(self, text: str) -> None:
        """A line about loading: shown in `status()` while Starting (the heartbeat thread
        starts only after loading, so this beats itself, at most every LOADING_BEAT_S)."""
        self.reason = text
        now = time.monotonic()
        if now - self._last_loading_beat >= LOADING_BEAT_S:
            self._last_loading_beat = now
            self._beat_now()  # if it fails, the next line says it again

    async def _assigned(self, partitions: set[TopicPartition]) -> None:
        if self.state == "Starting":  # the group has formed: this worker takes its share
            self.state = "Running"
            await self._beat()

    async def _beat(self) -> None:
        await asyncio.to_thread(self._beat_now)

    def _beat_now(self, status: WorkerStatus | None = None) -> bool:
        """Report `status` (now's by default); False if the registry is away (said once per
        outage: the worker serves on, and the next beat tries again)."""
        try:
            self.heartbeat.beat(status or self.status())
        except Exception as exc:  # e.g. Redis away
            self._beats_failing.failed(exc)
            return False
        self._beats_failing.ok()
        return True

    def _heartbeats(self, stopped: threading.Event) -> None:
        """Beat from a thread, so a long rebalance or model run cannot make the worker look dead."""
        stop_sent = False
        memory = MemoryWatch(self.spec.memory_limit_bytes)
        while not stopped.wait(self.settings.worker_heartbeat_s):
            over = memory.over()
            if over is not None:
                self._exit_over_memory(over)
            status = self.status()
            if not self._beat_now(status) or stop_sent or self._draining:
                continue
            try:
                stop = self.heartbeat.stop_requested(status)
            except Exception as exc:  # e.g. Redis away: ask again next time
                self._beats_failing.failed(exc)
                continue
            if stop:
                log.info("stop requested for %s", self.spec.worker_id)
                stop_sent = True
                os.kill(os.getpid(), signal.SIGTERM)  # the same way out as from outside

    def _cannot_start(self, reason: str) -> int:
        """Say why in a last heartbeat; returns the exit code that tells the deployer not to retry."""
        self.state, self.reason = "Error", reason
        log.error("worker %s cannot start: %s", self.spec.worker_id, reason)
        self._beat_now()
        return EXIT_CANNOT_START

    def _exit_over_memory(self, reason: str) -> None:
        """Leave at once, as an OOM kill would (what is not committed is read again elsewhere)."""
        starting = self.state == "Starting"
        self.state, self.reason = "Error", reason
        log.error("worker %s: %s", self.spec.worker_id, reason)
        try:
            self.heartbeat.beat(self.status())
        finally:
            os._exit(EXIT_CANNOT_START if starting else EXIT_OVER_MEMORY)

    # -- draining -----------------------------------------------------------------
    async def drain(self) -> None:
        """Stop taking input, then wait (bounded) until this version's step topics are drained."""
        assert self.loop is not None
        self._draining = True
        self.loop.hold(self._drain.input_topic)
        self.state = "Draining"  # reported once no more input is taken (the deployer waits for it)
        await self._beat()
        started = asyncio.get_running_loop().time()
        log.info("worker %s: input paused, draining", self.spec.worker_id)
        try:
            await self._drain.wait(self.loop, self.counters)
            log.info(
                "worker %s: drained in %.2fs",
                self.spec.worker_id,
                asyncio.get_running_loop().time() - started,
            )
        except TimeoutError as exc:
            self._drain_incomplete = True
            log.warning("worker %s: %s; stopping anyway", self.spec.worker_id, exc)
        except Exception:  # stop anyway; what is not committed is read again
            self._drain_incomplete = True
            log.exception("worker %s: drain failed; stopping anyway", self.spec.worker_id)

    # -- running ------------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        try:
            loop = self.build()
        except WeirError as exc:
            return self._cannot_start(str(exc))
        over = MemoryWatch(self.spec.memory_limit_bytes).over()
        if over is not None:  # already over after loading its models
            return self._cannot_start(over)
        tune_gc()  # start-up is done (run() is a worker process's whole life)
        self._beat_now()
        stopped = threading.Event()
        beats = threading.Thread(
            target=self._heartbeats, args=(stopped,), daemon=True, name="weir-heartbeat"
        )
        beats.start()
        try:
            code = asyncio.run(self._serve(loop))
        finally:
            stopped.set()
            beats.join()
        self.state = "Stopped"
        if self._drain_incomplete:  # said in the last heartbeat too (remote workers have no exit
            # code the deployer can read)
            self.reason = "its drain gave up: its version's topics still hold records"
        self._beat_now()
        if self.pipeline:
            self.pipeline.unload()
        if code == 0 and self._drain_incomplete:
            return EXIT_DRAIN_INCOMPLETE  # tells the deployer to keep the version's topics
        return code

    async def _serve(self, loop: StageLoop) -> int:
        events = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            events.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._start(loop)
            log.info("worker %s: reading %s", self.spec.worker_id, ", ".join(loop.topics))
            await loop.run(self._stop)
            return 0
        except Exception:
            log.exception(
                "worker %s failed; what it did not commit is read again", self.spec.worker_id
            )
            return 1
        finally:
            if self._drain_task is not None:
                self._drain_task.cancel()
            await loop.close()

    async def _start(self, loop: StageLoop) -> None:
        """Start `loop`; while Kafka does not answer, try again every KAFKA_RETRY_S (said
        in `status()`) until `kafka_wait_s` has passed or the worker is stopped."""
        bootstrap = self.settings.kafka_bootstrap
        away = Outage(log, f"worker {self.spec.worker_id}: connecting to Kafka at {bootstrap}")
        give_up_at = time.monotonic() + self.settings.kafka_wait_s
        while True:
            try:
                await loop.start()
                break
            except KafkaConnectionError as exc:
                if time.monotonic() >= give_up_at or self._stop.is_set():
                    raise
                away.failed(exc)
                self.reason = f"waiting for Kafka at {bootstrap} to answer"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), KAFKA_RETRY_S)
        away.ok()
        self.reason = None
        self._started.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        """The first signal drains, then stops; a second SIGINT stops at once."""
        if self._drain_task is None:
            self._drain_task = asyncio.create_task(self._drain_then_stop())
        elif sig == signal.SIGINT:
            log.info("worker %s: stopping without draining", self.spec.worker_id)
            self._stop.set()
        else:
            log.info("worker %s: already draining; the drain goes on", self.spec.worker_id)

    async def _drain_then_stop(self) -> None:
        try:
            await self._started.wait()  # a worker still waiting for Kafka drains once started
            await self.drain()
        finally:
            self._stop.set()
