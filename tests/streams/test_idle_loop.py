"""An idle worker loop on the real broker: it wakes its process only a few times a second,
and a stop still ends it at once.

An idle stack's CPU is mostly its processes' wakes (~0.25 ms each on the machines measured,
control/server/quiet_uvicorn.py): a worker's loop polled every 100 ms and aiokafka's fetch
routine looked around every 200 ms, 22 wakes a second in all on Apache Kafka.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from control.embedded import Service
from streams import loop as stream_loop
from streams.admin import resolved
from streams.loop import StageLoop
from streams.settings import WorkerSettings
from tests.streams._loops import loops

MOST_WAKES_PER_S = {"kafka": 10, "tansu": 18}
"""Measured (2026-12-06): 5.2 on Apache Kafka and 14.0 on Tansu, which answers an idle fetch
when its wait (100 ms) is up, each answer a wake; 18.0 and 22.2 before."""


def _wakes() -> int:
    """How often this thread (the event loop's) has gone to sleep and been woken."""
    status = Path(f"/proc/self/task/{threading.get_native_id()}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("voluntary_ctxt"))
    return int(line.split()[1])


async def _idle_loop(
    broker_address: str, name: str, tmp_path: Path, diabetes_onnx: Path
) -> StageLoop:
    """A worker's loop as the broker's would be set (exactly once on Apache Kafka)."""
    settings = await resolved(WorkerSettings(kafka_bootstrap=broker_address, idle_after_s=0.5))
    (loop,) = await loops(
        broker_address,
        name,
        tmp_path,
        diabetes_onnx,
        exactly_once=bool(settings.exactly_once),
        settings=settings,
    )
    await loop.start()
    return loop


async def test_an_idle_worker_loop_wakes_its_process_a_few_times_a_second(
    broker: str, kafka_service: Service, diabetes_onnx: Path, tmp_path: Path
) -> None:
    loop = await _idle_loop(kafka_service.address, "idle-wakes", tmp_path, diabetes_onnx)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.sleep(8)  # joined, assigned, idle
        before, started = _wakes(), asyncio.get_running_loop().time()
        await asyncio.sleep(5)
        per_s = (_wakes() - before) / (asyncio.get_running_loop().time() - started)
        assert per_s <= MOST_WAKES_PER_S[broker], f"{per_s:.1f} wakes a second"
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await loop.close()


async def test_a_stop_ends_an_idle_loops_long_poll_at_once(
    broker: str,
    kafka_service: Service,
    diabetes_onnx: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream_loop, "IDLE_POLL_MS", 600_000)
    loop = await _idle_loop(kafka_service.address, "idle-stop", tmp_path, diabetes_onnx)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.sleep(3)  # idle, in a poll of ten minutes
        stop.set()
        await asyncio.wait_for(running, 20)
    finally:
        await loop.close()
