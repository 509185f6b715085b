"""streams/worker.py without a broker: what a worker's faust app is configured with."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.runtimes.base import sha256_file
from streams.settings import WorkerSettings
from streams.status import WorkerStatus
from streams.topics import TopicMap
from streams.worker import Worker, WorkerSpec


class _NoHeartbeat:
    def beat(self, status: WorkerStatus) -> None:
        pass

    def stop_requested(self, status: WorkerStatus) -> bool:
        return False


@pytest.fixture
def worker(tmp_path: Path, diabetes_onnx: Path) -> Worker:
    ref = ModelRef(name="diabetes", version="1", sha=sha256_file(diabetes_onnx), runtime="onnx")
    spec = WorkerSpec(workspace="ws", pipeline="p", version="v1", worker_id="p-v1-0",
                      definition=PipelineSpec(steps=[ModelStep(model=ref)]))
    settings = WorkerSettings(kafka_bootstrap="127.0.0.1:1", max_poll_records=123,
                              max_partition_fetch_bytes=65536)
    return Worker(spec, settings, TopicMap.load(), lambda _: diabetes_onnx, _NoHeartbeat(),
                  tmp_path)


def test_consumers_fetch_a_bounded_amount(worker: Worker) -> None:
    app = worker.build_app()
    assert app.conf.broker_max_poll_records == 123
    assert app.conf.consumer_max_fetch_size == 65536
    assert app.conf.stream_wait_empty  # a rebalance waits for what is being processed


def test_all_versions_share_one_consumer_group(worker: Worker) -> None:
    assert worker.spec.group_id == "weir.ws.p"
    assert worker.status().status == "Starting"
