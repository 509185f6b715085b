"""A worker that starts while its broker is away waits for it (streams/worker.py).

Found by the chaos run: a hot swap met a broker restart, the old deployment's workers died
while draining, and each start to finish the drain exited at once (aiokafka cannot
bootstrap from a broker that is down), so the restarts were spent before the broker was
back and the drain was left unfinished. Here a worker process starts against a port
where nothing listens yet; a Tansu broker is started there seconds later.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from control.embedded import Service, free_port, start_broker
from streams.admin import ensure_topics
from streams.settings import WorkerSettings
from streams.topics import TopicMap

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

WORKER = """
import json, sys
from pathlib import Path
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.runtimes.base import sha256_file
from streams.settings import WorkerSettings
from streams.topics import TopicMap
from streams.worker import Worker
from streams.worker_spec import WorkerSpec

class PrintedBeats:
    def beat(self, status):
        print(json.dumps({"status": status.status, "reason": status.reason}), flush=True)

    def stop_requested(self, status):
        return False

model = Path(sys.argv[1])
ref = ModelRef(name="diabetes", version="1", sha=sha256_file(model), runtime="onnx")
spec = WorkerSpec(workspace="ws", pipeline="waits", version="v1", worker_id="waits-v1-0",
                  definition=PipelineSpec(steps=[ModelStep(model=ref)]))
settings = WorkerSettings(kafka_bootstrap=sys.argv[2], kafka_wait_s=60)
sys.exit(Worker(spec, settings, TopicMap.load(), lambda _: model, PrintedBeats()).run())
"""


@contextmanager
def _worker(model: Path, bootstrap: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(model), bootstrap],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    with proc:  # closes its stdout pipe
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def _beat_until(out: IO[str], seen: str, timeout_s: float = 60.0) -> dict[str, str | None]:
    """Read the worker's heartbeats until one whose status or reason holds `seen`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = out.readline()
        if not line:
            raise AssertionError(f"the worker exited before a heartbeat said {seen!r}")
        beat = json.loads(line)
        if seen in f"{beat['status']} {beat['reason']}":
            return beat
    raise AssertionError(f"no heartbeat said {seen!r} within {timeout_s:.0f}s")


@contextmanager
def _broker_on(port: int, folder: Path) -> Iterator[Service]:
    """Tansu on `port`, with the pipeline's input topic."""
    folder.mkdir()
    broker = start_broker(folder, port=port)
    try:
        settings = WorkerSettings(kafka_bootstrap=broker.address)
        asyncio.run(ensure_topics(settings, [TopicMap.load().input("ws", "waits")]))
        yield broker
    finally:
        broker.stop()


def test_a_worker_started_while_its_broker_is_away_runs_once_it_is_back(
    diabetes_onnx: Path, tmp_path: Path
) -> None:
    port = free_port()
    with _worker(diabetes_onnx, f"127.0.0.1:{port}") as worker:
        assert worker.stdout is not None
        waiting = _beat_until(worker.stdout, "waiting for Kafka")
        assert waiting["status"] == "Starting"
        with _broker_on(port, tmp_path / "broker"):
            _beat_until(worker.stdout, "Running")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(60) == 0


def test_a_worker_told_to_stop_while_its_broker_is_away_drains_once_it_is_back(
    diabetes_onnx: Path, tmp_path: Path
) -> None:
    """As a worker started again to finish a drain is: the stop comes first. It leaves with
    its drain done (exit 0), not at once with the drain unfinished."""
    port = free_port()
    with _worker(diabetes_onnx, f"127.0.0.1:{port}") as worker:
        assert worker.stdout is not None
        _beat_until(worker.stdout, "waiting for Kafka")
        os.kill(worker.pid, signal.SIGTERM)
        time.sleep(1.5)  # a try or two more against the port where nothing listens
        assert worker.poll() is None, "it gave up while the broker was away"
        with _broker_on(port, tmp_path / "broker"):
            assert worker.wait(60) == 0
