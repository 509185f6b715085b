"""The two systems bench_peers compares, each started afresh on its own broker: MLServer
(its joblib model, Kafka mode and REST) and weir (the ONNX export as a one-step pipeline),
as the measurements see them (`System`)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench import _kafka_load as kafka
from bench import _mlserver as ml
from bench._brokers import Broker, start_broker
from bench._weir import kafka_target, weir_stack
from engine import codecs
from streams.admin import ensure_topics
from streams.settings import WorkerSettings
from streams.topics import TopicSpec


@dataclass
class System:
    """One running system, as the measurements see it."""

    name: str
    bootstrap: str
    target: kafka.KafkaTarget
    encode: Callable[[np.ndarray], bytes]
    url: str
    headers: dict[str, str]
    pids: dict[str, list[int]]
    predictions: Callable[[bytes], list[float]]
    settle: Callable[[], float] = lambda: 0.0
    """Wait until the system has finished the work a load left it (weir: storing the log
    rows of every answer); the seconds waited."""


def arrow(x: np.ndarray) -> bytes:
    return codecs.encode(codecs.batch_from_arrays({"float_input": x}), codecs.ARROW_STREAM)


def oip(x: np.ndarray) -> bytes:
    return ml.oip_body(x.tolist())


@contextmanager
def run_mlserver(
    broker: Broker, venv: Path, joblib_path: Path, fetch_wait_ms: int
) -> Iterator[System]:
    work = Path(tempfile.mkdtemp(prefix="weir-peer-mlserver-"))
    service = start_broker(broker, work / "broker")
    try:
        asyncio.run(
            ensure_topics(
                WorkerSettings(kafka_bootstrap=service.address),
                [TopicSpec(ml.TOPIC_IN, 1), TopicSpec(ml.TOPIC_OUT, 1)],
            )
        )
        with ml.mlserver(venv, joblib_path, service.address, fetch_wait_ms, work) as server:
            target = kafka.KafkaTarget(
                ml.TOPIC_IN,
                ml.TOPIC_OUT,
                request=lambda rid: (rid.encode(), [(ml.MODEL_HEADER, ml.NAME.encode())]),
                reply_id=lambda msg: msg.key.decode() if msg.key else None,
                failed=lambda msg: False,
            )  # MLServer answers errors with nothing
            yield System(
                "mlserver",
                service.address,
                target,
                oip,
                server.infer_url,
                {"Content-Type": "application/json"},
                {"server": server.pids(), "broker": [service.proc.pid]},
                ml.oip_outputs,
            )
    finally:
        service.stop()


@contextmanager
def run_weir(
    broker: Broker, onnx_path: Path, fetch_wait_ms: int, env: dict[str, str]
) -> Iterator[System]:
    settings = {
        "WEIR_FETCH_WAIT_MS": str(fetch_wait_ms),
        "WEIR_BUSY_FETCH_WAIT_MS": str(fetch_wait_ms),
        **env,
    }
    with weir_stack(broker, onnx_path, env=settings) as stack:
        target = kafka_target(stack)

        def predictions(reply: bytes) -> list[float]:
            column = codecs.decode(reply, codecs.ARROW_STREAM).column("out.variable")
            if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
                column = column.flatten()
            return [float(v) for v in column.to_pylist()]

        yield System(
            "weir",
            stack.bootstrap,
            target,
            arrow,
            stack.pipeline.url(),
            {"Authorization": f"Bearer {stack.token}", "Content-Type": codecs.ARROW_STREAM},
            {
                "server": stack.pids["server"],
                "worker": stack.pids["worker"],
                "broker": stack.pids["broker"],
            },
            predictions,
            stack.logs_stored,
        )
