"""weir for the HTTP and peer benches: a fresh stack on a broker of the bench's choosing,
the diabetes pipeline deployed on it, and the processes whose CPU counts."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import _kafka_load as kafka
from bench._brokers import Broker, start_broker
from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from control.settings import Settings
from control.stack import down, up
from engine import codecs
from streams.admin import probe_consumer
from streams.aiokafka_internals import topic_partitions
from streams.lag import GroupLag
from streams.log_agent import log_agent_group
from streams.logstore import LogStore
from streams.messages import CONTENT_TYPE, ERROR, REQUEST_ID
from streams.settings import WorkerSettings

SAMPLE_SHIM = Path(__file__).resolve().parent / "_sample"


@dataclass
class WeirStack:
    """A running weir stack with one pipeline deployed."""

    home: Path
    record: dict[str, Any]
    pipeline: Pipeline
    pids: dict[str, list[int]]

    @property
    def token(self) -> str:
        return str(self.record["token"])

    @property
    def bootstrap(self) -> str:
        return str(self.record["kafka_bootstrap"])

    def logs_stored(self, timeout_s: float = 300.0) -> float:
        """Wait until the server's log agent has stored every answer on the pipeline's output
        topic (its group has committed them all), so that a measurement neither pays for the
        log rows an earlier one left behind nor leaves its own uncounted; the seconds waited.
        TimeoutError past `timeout_s`."""
        store_id, _ = LogStore(Settings(home=self.home).logs_dir).identity()
        return asyncio.run(
            _log_agent_caught_up(
                self.bootstrap,
                log_agent_group(store_id),
                self.pipeline.topics()["output"],
                timeout_s,
            )
        )


@contextmanager
def weir_stack(
    broker: Broker,
    model: Path,
    *,
    name: str = "diabetes",
    env: dict[str, str] | None = None,
    sample_dir: Path | None = None,
    before_deploy: Callable[[dict[str, list[int]]], None] | None = None,
    steps: Sequence[tuple[str, Path]] = (),
) -> Iterator[WeirStack]:
    """A fresh broker, Redis and weir server (new WEIR_HOME) with `model` deployed as a
    one-step pipeline (or `steps`, (name, file) in order: `.onnx` files as ONNX models,
    others as Python steps); `env` (WEIR_* settings) reaches the server and its workers;
    `sample_dir` turns on the bench's sampling profiler in them; `before_deploy` is called
    with the stack's processes before anything is deployed. Always torn down."""
    home = Path(tempfile.mkdtemp(prefix="weir-bench-"))
    settings = Settings(home=home)
    saved = dict(os.environ)
    service = start_broker(broker, home / "broker")
    try:
        os.environ.update(env or {})
        if sample_dir is not None:
            os.environ["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(SAMPLE_SHIM), saved.get("PYTHONPATH")])
            )
            os.environ["WEIR_BENCH_SAMPLE_DIR"] = str(sample_dir)
        settings = Settings(home=home, kafka_bootstrap=service.address)
        record = up(settings, detach=True, say=lambda _: None)
        try:
            pids = {
                "server": [record["pids"]["server"]],
                "redis": [record["pids"]["redis"]],
                "broker": [service.proc.pid],
            }
            if before_deploy is not None:
                before_deploy(pids)
            client = Client(settings=Settings.discover(home=home))
            builder = client.build_pipeline(name)
            for step, path in steps or [(name, model)]:
                runtime = "onnx" if path.suffix == ".onnx" else "python"
                builder.add_model_step(client.upload_model(step, path).configure(runtime))
            pipeline = builder.deploy(quiet=True)
            pids["worker"] = [int(e["pid"]) for e in pipeline.status()["engines"]]
            yield WeirStack(home, record, pipeline, pids)
            pipeline.undeploy()
        finally:
            down(settings, say=lambda _: None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        service.stop()
        shutil.rmtree(home, ignore_errors=True)


async def _log_agent_caught_up(bootstrap: str, group: str, topic: str, timeout_s: float) -> float:
    settings = WorkerSettings(kafka_bootstrap=bootstrap)
    started = time.monotonic()
    probe, lag = probe_consumer(settings), GroupLag(settings)
    await probe.start()
    await lag.start()
    try:
        await lag.wait_read({group: await topic_partitions(probe, topic)}, timeout_s)
    finally:
        await lag.stop()
        await probe.stop()
    return round(time.monotonic() - started, 2)


def kafka_target(stack: WeirStack) -> kafka.KafkaTarget:
    """The deployed pipeline as the Kafka-mode load sees it: Arrow requests to its input
    topic, answers matched by request id on its output topic (error replies count failed)."""
    topics = stack.pipeline.topics()
    return kafka.KafkaTarget(
        topics["input"],
        topics["output"],
        request=lambda rid: (
            None,
            [(CONTENT_TYPE, codecs.ARROW_STREAM.encode()), (REQUEST_ID, rid.encode())],
        ),
        reply_id=lambda msg: (_header(msg, REQUEST_ID) or b"").decode() or None,
        failed=lambda msg: _header(msg, ERROR) is not None,
    )


def _header(msg: Any, name: str) -> bytes | None:
    return next((bytes(v) for k, v in msg.headers or () if k == name), None)
