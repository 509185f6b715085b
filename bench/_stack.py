"""Helpers of the streaming benchmark: a fresh embedded stack, chainable ONNX models, Kafka clients.

Kept apart from ``bench_pipeline.py`` so that script reads as the measurement plan.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from control.settings import Settings
from control.stack import down, up
from streams.aiokafka_internals import topic_partitions
from streams.messages import ERROR, REQUEST_ID

FEATURES = 10
_TICKS = os.sysconf("SC_CLK_TCK")


# -- the stack -------------------------------------------------------------------------
@contextmanager
def fresh_stack(**settings_fields: Any) -> Iterator[tuple[Path, dict[str, Any]]]:
    """`weir up --detach` in a new temporary WEIR_HOME (a fresh Tansu broker, unless
    `settings_fields` choose another); always torn down."""
    home = Path(tempfile.mkdtemp(prefix="weir-bench-"))
    settings = Settings(home=home, **settings_fields)
    try:
        stack = up(settings, detach=True, say=lambda _: None)
        try:
            yield home, stack
        finally:
            down(settings, say=lambda _: None)
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- chainable models ------------------------------------------------------------------
def chain_model(path: Path, variant: int) -> Path:
    """A tiny ONNX model [None,10] -> `float_input` [None,10] (so the next step's input matches by name).

    variant 0: MatMul by the 10x10 identity, then Add 0; variant 1: Mul by 1, then Identity.
    Its input is named `x`: ONNX forbids a node output that reuses a graph input's name.
    Between steps a one-input model takes the one column whatever it is called; a pipeline's
    input column must be named after the first model's input or `tensor`.
    """
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, FEATURES])
    y = helper.make_tensor_value_info("float_input", TensorProto.FLOAT, [None, FEATURES])
    if variant == 0:
        inits = [
            numpy_helper.from_array(np.eye(FEATURES, dtype=np.float32), "eye"),
            numpy_helper.from_array(np.zeros(FEATURES, np.float32), "zero"),
        ]
        nodes = [
            helper.make_node("MatMul", ["x", "eye"], ["h"]),
            helper.make_node("Add", ["h", "zero"], ["float_input"]),
        ]
    else:
        inits = [numpy_helper.from_array(np.ones(FEATURES, np.float32), "one")]
        nodes = [
            helper.make_node("Mul", ["x", "one"], ["h"]),
            helper.make_node("Identity", ["h"], ["float_input"]),
        ]
    graph = helper.make_graph(nodes, f"chain{variant}", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


# -- process CPU -------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of stat(5)


def runqueue_wait_seconds(pid: int) -> float:
    """Time the process's live threads spent runnable but waiting for a CPU (schedstat field 2)."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def system_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all CPUs), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICKS


def log_tail(path: Path, lines: int = 30) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


class CpuMeter:
    """CPU seconds (and run-queue wait seconds, `<name>_wait`) of each named process between
    start() and stop()."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    def _read(self) -> dict[str, float]:
        cpu = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.pids.items()}
        wait = {
            f"{name}_wait": sum(runqueue_wait_seconds(p) for p in pids)
            for name, pids in self.pids.items()
        }
        return {**cpu, **wait, "machine": system_busy_seconds()}

    def start(self) -> CpuMeter:
        self._start, self._t0 = self._read(), time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        """{name: cpu seconds} plus `wall_s`."""
        end, wall = self._read(), time.monotonic() - self._t0
        return {**{k: round(end[k] - self._start[k], 3) for k in end}, "wall_s": round(wall, 3)}


# -- Kafka clients ---------------------------------------------------------------------
def new_producer(bootstrap: str, linger_ms: int = 0) -> AIOKafkaProducer:
    """The producer every measurement uses (bench client and echo loop alike)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=linger_ms,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )


async def _assign_at_end(consumer: AIOKafkaConsumer, topic: str) -> None:
    """Assign every partition of `topic` and resolve positions at its end, before producing."""
    tps = await topic_partitions(consumer, topic)
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)


def _header(headers: Any, name: str) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return bytes(value)
    return None


@dataclass
class Reply:
    arrived: float
    value: bytes
    error: bytes | None


@dataclass
class Replies:
    """Reads a result topic from its end; resolves one future per expected request id.

    Strays (records behind the end, other request ids) are ignored.
    """

    bootstrap: str
    topic: str
    fetch_wait_ms: int
    strays: int = 0
    isolation_level: str = "read_uncommitted"
    """"read_committed" where workers answer in transactions (Apache Kafka), as weir's own
    reply readers do: an answer counts once its transaction commits."""
    _waiting: dict[str, asyncio.Future[Reply]] = field(default_factory=dict)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> Replies:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_wait_ms,
            auto_offset_reset="latest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
            isolation_level=self.isolation_level,
        )
        await self._consumer.start()
        await _assign_at_end(self._consumer, self.topic)
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()

    def expect(self, request_id: str) -> asyncio.Future[Reply]:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_ids: list[str]) -> None:
        for rid in request_ids:
            self._waiting.pop(rid, None)

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            records = await self._consumer.getmany(timeout_ms=1000, max_records=2000)
            now = time.perf_counter()
            for msgs in records.values():
                for msg in msgs:
                    rid = _header(msg.headers, REQUEST_ID)
                    future = self._waiting.pop(rid.decode(), None) if rid else None
                    if future is None or future.done():
                        self.strays += 1
                        continue
                    future.set_result(Reply(now, msg.value or b"", _header(msg.headers, ERROR)))


@dataclass
class Echo:
    """The bare-aiokafka baseline: consume topic A, produce every record unchanged to topic B."""

    bootstrap: str
    source: str
    target: str
    fetch_wait_ms: int
    echoed: int = 0
    _task: asyncio.Task[None] | None = None
    _consumer: AIOKafkaConsumer | None = None
    _producer: AIOKafkaProducer | None = None

    async def start(self) -> Echo:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_wait_ms,
            auto_offset_reset="latest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
        )
        self._producer = new_producer(self.bootstrap)
        await self._consumer.start()
        await self._producer.start()
        await _assign_at_end(self._consumer, self.source)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._consumer is not None and self._producer is not None
        while True:
            records = await self._consumer.getmany(timeout_ms=1000, max_records=500)
            for msgs in records.values():
                for msg in msgs:
                    await self._producer.send(
                        self.target, msg.value, key=msg.key, headers=list(msg.headers)
                    )
                    self.echoed += 1

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._producer:
            await self._producer.stop()
        if self._consumer:
            await self._consumer.stop()
