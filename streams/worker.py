"""The worker: one faust app running every step of one pipeline version.

All versions of a pipeline share one consumer group, so the input topic's
partitions are split between whatever workers are up: replicas scale out, and
a new version's workers take over input as the old ones leave. Each step is its
own agent, chained through the version's step topics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import faust

from engine.definition import PipelineSpec
from engine.errors import WeirError
from engine.pipeline import ArtifactPath, CompiledPipeline, load_pipeline
from engine.runtimes.base import RuntimeOptions
from streams.agents.step import StepCounters, StepTopics, make_step_agent
from streams.settings import WorkerSettings
from streams.status import HeartbeatSink, ModelStatus, WorkerState, WorkerStatus
from streams.topics import TopicMap
from streams.transport import broker_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """Which pipeline version a worker runs, and how."""

    workspace: str
    pipeline: str
    version: str
    definition: PipelineSpec
    worker_id: str
    replica: int = 0
    options: RuntimeOptions = field(default_factory=RuntimeOptions)

    @property
    def group_id(self) -> str:
        return f"weir.{self.workspace}.{self.pipeline}"


class Worker:
    """Builds the faust app for a spec, reports heartbeats, runs until told to stop."""

    def __init__(self, spec: WorkerSpec, settings: WorkerSettings, topics: TopicMap,
                 artifact_path: ArtifactPath, heartbeat: HeartbeatSink, data_dir: Path) -> None:
        self.spec = spec
        self.settings = settings
        self.topic_map = topics
        self.artifact_path = artifact_path
        self.heartbeat = heartbeat
        self.data_dir = data_dir
        self.state: WorkerState = "Starting"
        self.reason: str | None = None
        self.counters = StepCounters()
        self.pipeline: CompiledPipeline | None = None

    def status(self) -> WorkerStatus:
        refs = self.spec.definition.models()
        return WorkerStatus(
            worker_id=self.spec.worker_id, workspace=self.spec.workspace,
            pipeline=self.spec.pipeline, version=self.spec.version, replica=self.spec.replica,
            pid=os.getpid(), host=socket.gethostname(), status=self.state, reason=self.reason,
            models=[ModelStatus(name=r.name, version=r.version, sha=r.sha,
                                status="Running" if self.state == "Running" else self.state)
                    for r in refs],
            processed=self.counters.processed, failed=self.counters.failed,
            time=datetime.now(UTC),
        )

    def build_app(self) -> faust.App:
        """Load the models (checked by sha) and wire one agent per step."""
        spec, s = self.spec, self.settings
        self.pipeline = load_pipeline(spec.version, spec.definition, self.artifact_path, spec.options)
        datadir = self.data_dir / spec.worker_id
        datadir.mkdir(parents=True, exist_ok=True)
        app = faust.App(
            spec.group_id,
            broker=broker_url(s.kafka_bootstrap),
            web_enabled=False,
            topic_disable_leader=True,
            topic_allow_declare=False,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=s.session_timeout_s,
            broker_rebalance_timeout=s.rebalance_timeout_s,
            broker_heartbeat_interval=s.heartbeat_interval_s,
            broker_max_poll_records=s.max_poll_records,
            producer_linger=0.0,
            store="memory://",
            datadir=str(datadir),
        )
        app.weir_fetch_wait_ms = s.fetch_wait_ms  # read by streams.transport

        def raw(name: str) -> faust.TopicT:
            return app.topic(name, value_serializer="raw", key_serializer="raw")

        ws, p, v = spec.workspace, spec.pipeline, spec.version
        n = len(self.pipeline.steps)
        for index in range(n):
            topics = StepTopics(
                source=raw(self.topic_map.step(ws, p, v, index).name),
                next=raw(self.topic_map.step(ws, p, v, index + 1).name) if index + 1 < n else None,
                output=raw(self.topic_map.output(ws, p).name),
                logs=raw(self.topic_map.logs(ws, p).name),
                dead_letter=raw(self.topic_map.dead_letter(ws, p).name),
            )
            make_step_agent(app, self.pipeline, index, topics, self.counters)

        @app.on_rebalance_complete.connect
        async def _running(sender: object, **kwargs: object) -> None:
            if self.state == "Starting":
                self.state = "Running"
                await self._beat()

        @app.timer(self.settings.worker_heartbeat_s)
        async def _heartbeat() -> None:
            await self._beat()

        return app

    async def _beat(self) -> None:
        status = self.status()
        await asyncio.to_thread(self.heartbeat.beat, status)
        if await asyncio.to_thread(self.heartbeat.stop_requested, status):
            log.info("stop requested for %s", self.spec.worker_id)
            self.state = "Draining"
            os.kill(os.getpid(), signal.SIGTERM)

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        try:
            app = self.build_app()
        except WeirError as exc:
            self.state, self.reason = "Error", str(exc)
            log.error("worker %s cannot start: %s", self.spec.worker_id, exc)
            self.heartbeat.beat(self.status())
            return 2
        self.heartbeat.beat(self.status())
        worker = faust.Worker(app, loglevel="WARNING", quiet=True, override_logging=False)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            code = int(exc.code or 0)
        else:
            code = 0
        self.state = "Stopped"
        self.heartbeat.beat(self.status())
        if self.pipeline:
            self.pipeline.unload()
        return code
