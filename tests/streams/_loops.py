"""Workers' loops of a three-step version on the real broker, for tests of streams.loop:
a pass-through Python step, a scaling one that fails on negative rows, the diabetes model
(fused in one stage, unless a layout cuts the chain around a sidekick step)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from engine import codecs
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.pipeline import CompiledPipeline, load_pipeline
from engine.runtimes.base import sha256_file
from streams.admin import ensure_topics
from streams.claims import PartitionClaims
from streams.loop import StageLoop
from streams.messages import Envelope
from streams.plan import Layout, worker_stages
from streams.settings import WorkerSettings
from streams.stage import StepCounters
from streams.topics import TopicMap

TOPICS = TopicMap.load()
PASS = """
def process_data(input_data):
    return {"tensor": input_data["tensor"]}
"""
SCALE_OR_FAIL = """
import numpy as np
def process_data(input_data):
    if (input_data["tensor"] < 0).any():
        raise ValueError("poison row")
    return {"float_input": (input_data["tensor"] * 0.5).astype(np.float32)}
"""


def three_steps(tmp_path: Path, diabetes_onnx: Path) -> tuple[CompiledPipeline, PipelineSpec]:
    paths = {}
    refs = []
    for name, source in (("pass", PASS), ("scale", SCALE_OR_FAIL)):
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        refs.append(ModelRef(name=name, version="1", sha=sha256_file(path), runtime="python"))
        paths[refs[-1].sha] = path
    refs.append(
        ModelRef(name="diabetes", version="1", sha=sha256_file(diabetes_onnx), runtime="onnx")
    )
    paths[refs[-1].sha] = diabetes_onnx
    spec = PipelineSpec(steps=[ModelStep(model=r) for r in refs])
    return load_pipeline("v1", spec, lambda ref: paths[ref.sha]), spec


async def loops(
    bootstrap: str,
    name: str,
    tmp_path: Path,
    diabetes_onnx: Path,
    count: int = 1,
    claims: PartitionClaims | None = None,
    exactly_once: bool = False,
    settings: WorkerSettings | None = None,
) -> list[StageLoop]:
    """`count` workers' loops of a three-step version (in one group), its topics created;
    `settings` default to the bare ones for `bootstrap`."""
    pipeline, spec = three_steps(tmp_path, diabetes_onnx)
    settings = settings or WorkerSettings(kafka_bootstrap=bootstrap)
    layout = Layout("ws", name, "d1")
    await ensure_topics(settings, TOPICS.deployment_topics("ws", name, "d1", spec))
    stages = worker_stages(pipeline, layout, TOPICS, "main", settings)
    return [
        StageLoop(
            stages,
            settings,
            group_id=f"weir.ws.{name}",
            client_id=f"w{i}",
            counters=StepCounters(),
            claims=claims,
            exactly_once=exactly_once,
        )
        for i in range(count)
    ]


async def run_until(loop: StageLoop, until: asyncio.Future[object]) -> None:
    """Start `loop`, run it until `until` is done, stop it cleanly and close it."""
    await loop.start()
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        await until
        stop.set()
        await asyncio.wait_for(running, 30)
    finally:
        await loop.close()


async def send_rows(
    producer: AIOKafkaProducer, topic: str, x: np.ndarray, partitions: int, first: int = 0
) -> None:
    """Each row of `x` as request r<first + i>, spread over the first `partitions` partitions."""
    for i in range(len(x)):
        value = codecs.encode(
            codecs.batch_from_arrays({"tensor": x[i : i + 1]}), codecs.ARROW_STREAM
        )
        await producer.send(
            topic,
            value,
            headers=Envelope(request_id=f"r{first + i}").headers(),
            partition=i % partitions,
        )
    await producer.flush()


async def read_all(
    bootstrap: str, topic: str, count: int, timeout_s: float = 30.0
) -> list[ConsumerRecord]:
    """The first `count` records of `topic` (fewer if they do not come within `timeout_s`)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(records) < count and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records += batch
    finally:
        await consumer.stop()
    return records
