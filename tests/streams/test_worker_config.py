"""streams/worker.py without a broker: what a worker's loop is configured with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.runtimes.base import sha256_file
from streams.clients import consumer_options, producer_options
from streams.settings import RECORD_OVERHEAD_BYTES, WorkerSettings
from streams.status import WorkerStatus
from streams.topics import TopicMap
from streams.worker import Worker
from streams.worker_spec import WorkerSpec


class _NoHeartbeat:
    def beat(self, status: WorkerStatus) -> None:
        pass

    def stop_requested(self, status: WorkerStatus) -> bool:
        return False


@pytest.fixture
def worker(diabetes_onnx: Path) -> Worker:
    ref = ModelRef(name="diabetes", version="1", sha=sha256_file(diabetes_onnx), runtime="onnx")
    spec = WorkerSpec(
        workspace="ws",
        pipeline="p",
        version="v1",
        worker_id="p-v1-0",
        definition=PipelineSpec(steps=[ModelStep(model=ref)]),
    )
    settings = WorkerSettings(
        kafka_bootstrap="127.0.0.1:1",
        max_poll_records=123,
        max_partition_fetch_bytes=65536,
        fetch_wait_ms=7,
    )
    return Worker(spec, settings, TopicMap.load(), lambda _: diabetes_onnx, _NoHeartbeat())


def test_consumers_fetch_a_bounded_amount_with_our_fetch_wait(worker: Worker) -> None:
    options = consumer_options(worker.settings, worker.spec.group_id, worker.spec.worker_id)
    assert options["max_poll_records"] == 123
    assert options["max_partition_fetch_bytes"] == 65536
    assert options["fetch_max_wait_ms"] == 7
    assert options["group_id"] == "weir.ws.p"
    assert options["enable_auto_commit"] is False  # offsets are committed after delivery only


def test_producers_wait_for_every_replica_and_allow_big_results(worker: Worker) -> None:
    options = producer_options(worker.settings, worker.spec.worker_id)
    assert options["acks"] == "all"
    # the largest value weir sends, with its record's overhead, fits in one request
    assert options["max_request_size"] == (
        worker.settings.max_message_bytes + RECORD_OVERHEAD_BYTES
    )
    assert options["max_batch_size"] >= 1024 * 1024  # a fetch's answers per partition: one batch


def test_all_versions_share_one_consumer_group(worker: Worker) -> None:
    assert worker.spec.group_id == "weir.ws.p"
    assert worker.status().status == "Starting"


def test_a_one_step_version_reads_only_the_input_topic(worker: Worker) -> None:
    loop = worker.build()
    assert loop.topics == ["ws.p.in"]


FIRST_RECORD = """
import json, sys
from pathlib import Path
import numpy as np, pyarrow as pa
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.runtimes.base import sha256_file
from streams.settings import WorkerSettings
from streams.topics import TopicMap
from streams.worker import Worker
from streams.worker_spec import WorkerSpec
from tests.streams.test_worker_config import _NoHeartbeat

model = Path(sys.argv[1])
ref = ModelRef(name="diabetes", version="1", sha=sha256_file(model), runtime="onnx")
spec = WorkerSpec(workspace="ws", pipeline="p", version="v1", worker_id="p-v1-0",
                  definition=PipelineSpec(steps=[ModelStep(model=ref)]))
worker = Worker(spec, WorkerSettings(kafka_bootstrap="127.0.0.1:1"), TopicMap.load(),
                lambda _: model, _NoHeartbeat())
worker.build()
loaded = set(sys.modules)
pa.array(np.arange(3, dtype=np.int32))  # what the first record's start does
print(json.dumps(sorted(set(sys.modules) - loaded)))
"""


def test_a_built_worker_has_paid_the_first_records_imports(diabetes_onnx: Path) -> None:
    """pyarrow imports pandas the first time it converts a numpy array (0.2-0.5 s): the
    worker pays it while Starting, not with its first record."""
    out = subprocess.run(
        [sys.executable, "-c", FIRST_RECORD, str(diabetes_onnx)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert json.loads(out.stdout.splitlines()[-1]) == []
