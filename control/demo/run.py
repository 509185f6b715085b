"""`weir demo`: the whole path once, on a fresh embedded stack.

Trains and exports a diabetes regressor, uploads it, builds and deploys a
one-step pipeline (printing how long the deploy took), infers over HTTP,
sends a batch through the input topic with a plain Kafka producer and reads
the answers off the result topic, prints the logs, and stops everything.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console

from control.demo.models import diabetes_data, diabetes_regressor
from control.sdk.client import Client
from control.settings import Settings
from control.stack import down, up
from engine import codecs
from engine.answers import decode_answer
from streams.messages import CONTENT_TYPE, REQUEST_ID, Envelope

console = Console()


async def kafka_round_trip(
    bootstrap: str, topics: dict[str, str], rows: list[dict[str, object]]
) -> pd.DataFrame:
    """Send rows as one pandas-records JSON message; read the answer from the result topic."""
    consumer = AIOKafkaConsumer(
        topics["output"],
        bootstrap_servers=bootstrap,
        auto_offset_reset="latest",
        fetch_max_wait_ms=10,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
        request_id = uuid.uuid4().hex
        await producer.send_and_wait(
            topics["input"],
            json.dumps(rows).encode(),
            key=b"demo",
            headers=[
                (CONTENT_TYPE, codecs.PANDAS_RECORDS.encode()),
                (REQUEST_ID, request_id.encode()),
            ],
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for msg in msgs:
                    env = Envelope.parse(msg.headers)
                    if env.request_id == request_id:  # a JSON request: a JSON answer
                        return codecs.batch_to_pandas(
                            decode_answer(msg.value, env.content_type, env.base64_columns)
                        )
        raise TimeoutError("no answer on the result topic within 30 s")
    finally:
        await producer.stop()
        await consumer.stop()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="weir-demo-") as home:
        settings = Settings(home=Path(home))
        console.rule("weir demo")
        stack = up(settings, detach=True, say=console.print)
        try:
            client = Client(settings=Settings.discover(home=Path(home)))
            model_path = diabetes_regressor(Path(home) / "diabetes.onnx")
            model = client.upload_model("diabetes", model_path).configure("onnx")
            console.print(
                f"uploaded [bold]{model.name}[/bold] version {model.version}"
                f" sha256 {model.sha[:16]}…"
            )

            pipeline = client.build_pipeline("diabetes-demo").add_model_step(model)
            started = time.perf_counter()
            pipeline.deploy()
            console.print(
                f"deployed in [bold]{time.perf_counter() - started:.2f} s[/bold]: "
                f"{pipeline.status()['status']}"
            )

            x, _ = diabetes_data()
            frame = pd.DataFrame({"tensor": [row.tolist() for row in x[:3]]})
            console.rule("HTTP inference")
            console.print(pipeline.infer(frame)[["time", "in.tensor", "out.variable"]].to_string())

            console.rule("Kafka: 100 rows in one message on the input topic")
            topics = pipeline.topics()
            rows = [{"tensor": row.tolist()} for row in x[:100]]
            answers = asyncio.run(kafka_round_trip(stack["kafka_bootstrap"], topics, rows))
            console.print(f"{len(answers)} answers from {topics['output']}; first rows:")
            console.print(answers[["out.variable", "metadata.elapsed_ns"]].head().to_string())

            console.rule("pipeline.logs()")
            logs = pipeline.logs(limit=8)
            columns = ["time", "out.variable", "check_failures", "metadata.pipeline_version"]
            console.print(logs[columns].to_string())
            pipeline.undeploy()
        finally:
            down(settings, say=console.print)
    return 0
