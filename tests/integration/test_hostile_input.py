"""The input topic under random and malformed records among good ones, at a few hundred a second.

Anyone who can produce to a pipeline's input topic can send anything. Every bad
record must be answered with an error and copied to the dead-letter topic with the
reason in its headers; every good one answered with its rows; and the worker must
not restart (a malformed record is input, not a reason to crash).
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from engine import codecs
from streams.messages import (
    CONTENT_TYPE,
    ERROR,
    REDELIVERED,
    REQUEST_ID,
    REQUESTS,
    SHADOW,
    STARTED_NS,
    VERSION,
)
from tests.integration._streams import Reader, first_value, is_error, numbered_row

pytestmark = pytest.mark.slow

RECORDS = 600
PER_SECOND = 300
GOOD = numbered_row(1)


def _arrow(columns: dict[str, Any]) -> bytes:
    return codecs.encode(codecs.batch_from_arrays(columns), codecs.ARROW_STREAM)


def _huge_length(payload: bytes) -> bytes:
    data = bytearray(payload)
    struct.pack_into("<i", data, 4, 2**31 - 1)  # the schema message claims 2 GB of metadata
    return bytes(data)


BAD: dict[str, Callable[[random.Random], tuple[bytes | None, str]]] = {
    "random bytes": lambda rng: (rng.randbytes(rng.randint(1, 200)), codecs.ARROW_STREAM),
    "cut short": lambda rng: (GOOD[: rng.randint(1, len(GOOD) - 1)], codecs.ARROW_STREAM),
    "framing broken": lambda rng: (
        rng.randbytes(4).replace(b"\xff", b"\x00") + GOOD[4:],
        codecs.ARROW_STREAM,
    ),
    "huge length": lambda rng: (_huge_length(GOOD), codecs.ARROW_STREAM),
    "empty value": lambda rng: (b"", codecs.ARROW_STREAM),
    "no value": lambda rng: (None, codecs.ARROW_STREAM),
    "bad json": lambda rng: (b'{"tensor": [1, 2', codecs.PANDAS_RECORDS),
    "json of the wrong shape": lambda rng: (b'[{"tensor": [1.0, 2.0]}]', codecs.PANDAS_RECORDS),
    "two columns, neither the input": lambda rng: (
        _arrow({"a": np.zeros((1, 10), np.float32), "b": np.zeros((1, 10), np.float32)}),
        codecs.ARROW_STREAM,
    ),
    "wrong width": lambda rng: (
        _arrow({"tensor": np.zeros((1, 3), np.float32)}),
        codecs.ARROW_STREAM,
    ),
    "text in a number column": lambda rng: (
        _arrow({"tensor": np.array(["x"], dtype=object)}),
        codecs.ARROW_STREAM,
    ),
    "unknown content type": lambda rng: (GOOD, "text/plain"),
}


UNREADABLE_HEADERS = [
    [(STARTED_NS, b"abc")],
    [(STARTED_NS, b"9" * 5000)],
    [(ERROR, b"{not json")],
    [(ERROR, b"[1, 2]")],
    [(REQUESTS, b'[["a", "x"]]')],
    [(VERSION, b"\xff\xfe")],
]
"""weir's own headers with values weir never writes, on good records: ignored, not raised
(a worker that raised on one crashed on it again after every restart: no answers at all)."""
FORGED_HEADERS = [
    [(ERROR, b'{"type": "Forged", "message": "x"}')],
    [(SHADOW, b"x")],
    [(REDELIVERED, b"1")],
]
"""weir's own headers with values weir could have written, set by a producer on good records."""

Record = tuple[str, bytes | None, list[tuple[str, bytes]], str | None]
"""Request id, value, headers, and what is wrong with the value (None: nothing)."""


def _records(prefix: str, extra: list[list[tuple[str, bytes]]]) -> list[Record]:
    """A seeded stream: 30% bad values of every kind; every tenth good one with `extra`."""
    rng = random.Random(23)
    kinds = list(BAD)
    out = []
    for n in range(RECORDS):
        rid = f"{prefix}-{n}"
        if rng.random() < 0.3:
            kind = kinds[n % len(kinds)]
            value, content_type = BAD[kind](rng)
            out.append((rid, value, _headers(rid, content_type), kind))
        else:
            headers = _headers(rid, codecs.ARROW_STREAM)
            if n % 10 == 7:
                headers += extra[(n // 10) % len(extra)]
            out.append((rid, numbered_row(n), headers, None))
    return out


def _headers(rid: str, content_type: str) -> list[tuple[str, bytes]]:
    return [(CONTENT_TYPE, content_type.encode()), (REQUEST_ID, rid.encode())]


@pytest.fixture(scope="module")
def pipeline(client: Client, diabetes_onnx: Path) -> Any:
    model = client.upload_model("hostile-ridge", diabetes_onnx).configure("onnx")
    deployed = client.build_pipeline("hostile-input").add_model_step(model).deploy(quiet=True)
    yield deployed
    deployed.undeploy()


async def _produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    try:
        started, sends = time.monotonic(), []
        for n, (_, value, headers, _) in enumerate(records):
            sends.append(await producer.send(topic, value, key=str(n).encode(), headers=headers))
            ahead = (n + 1) / PER_SECOND - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def _dead_letters(
    bootstrap: str, topic: str, prefix: str, expect: set[str]
) -> dict[str, list[dict[str, bytes]]]:
    """Every dead-letter record's headers by request id, once each id in `expect` has one."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    found: dict[str, list[dict[str, bytes]]] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not expect <= found.keys():
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    headers = dict(message.headers)
                    rid = headers.get(REQUEST_ID, b"").decode()
                    if rid.startswith(prefix + "-"):
                        found.setdefault(rid, []).append(headers)
        return found
    finally:
        await consumer.stop()


async def _answers(
    bootstrap: str, topics: dict[str, str], prefix: str, records: list[Record]
) -> dict[str, list[Any]]:
    reader = Reader(bootstrap, topics["output"], prefix)
    await reader.start()
    try:
        await _produce(bootstrap, topics["input"], records)
        missing = await reader.wait_for({rid for rid, *_ in records}, timeout_s=90)
        assert not missing, f"{len(missing)} never answered, e.g. {sorted(missing)[:5]}"
        return reader.answers
    finally:
        await reader.stop()


def _check_stream(
    stack: dict[str, Any], pipeline: Pipeline, prefix: str, extra: list[list[tuple[str, bytes]]]
) -> None:
    """Send the stream; every bad value answered with an error and dead-lettered with its
    reason, every good record answered with its rows and unmarked, no worker restarted."""
    records = _records(prefix, extra)
    bad = {rid: kind for rid, _, _, kind in records if kind is not None}
    assert set(bad.values()) == set(BAD)  # every kind of bad record is in the stream
    bootstrap, topics = stack["kafka_bootstrap"], pipeline.topics()
    pids = [engine["pid"] for engine in pipeline.status()["engines"]]
    answers = asyncio.run(_answers(bootstrap, topics, prefix, records))
    for rid, _, _, kind in records:
        first = answers[rid][0]
        if kind is None:
            assert not is_error(first), (rid, first.env.error)
            assert first_value(first.batch) == int(rid.split("-")[1])
            assert first.env.shadow is None and not first.env.redelivered, (rid, first.env)
        else:
            assert is_error(first), (rid, kind)
            assert first.env.error and first.env.error["message"], (rid, kind)
    dead = asyncio.run(_dead_letters(bootstrap, topics["dead_letter"], prefix, set(bad)))
    assert set(dead) == set(bad), sorted(set(bad) ^ set(dead))[:10]
    for rid, copies in dead.items():
        reason = json.loads(copies[0][ERROR])
        assert reason["type"] and reason["message"], (rid, bad[rid], reason)
    status = pipeline.status()
    assert status["status"] == "Running"
    assert [engine["pid"] for engine in status["engines"]] == pids  # no worker restarted


def test_bad_records_are_answered_and_dead_lettered_good_ones_answered_no_restart(
    stack: dict[str, Any], pipeline: Pipeline
) -> None:
    _check_stream(stack, pipeline, "hostile", UNREADABLE_HEADERS)


def test_weir_headers_a_producer_forged_are_not_believed(
    stack: dict[str, Any], pipeline: Pipeline
) -> None:
    _check_stream(stack, pipeline, "forged", FORGED_HEADERS)
