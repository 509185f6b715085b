"""The bench's sampler of a process's main thread (bench/_sample_main.py): which task a sample
belongs to on either event loop, and its weight in CPU time."""

from __future__ import annotations

import asyncio
import sys
import threading

import uvloop

from bench._sample_main import _on_cpu_s, classify


async def serving_requests() -> tuple[str, str]:
    await asyncio.sleep(0)
    return classify(sys._getframe())


async def main() -> tuple[str, str]:
    return await asyncio.create_task(serving_requests())  # as uvicorn runs each request


def test_a_sample_is_the_tasks_on_asyncios_loop_and_on_uvloop() -> None:
    for run in (asyncio.run, uvloop.run):
        task, package = run(main())
        assert task == "bench/test_sample_main:serving_requests", run
        assert package == "bench/test_sample_main"


def test_a_samples_weight_is_the_cpu_the_thread_used() -> None:
    thread = threading.get_native_id()
    before = _on_cpu_s(thread)
    sum(i * i for i in range(2_000_000))  # ~0.1 s of CPU
    used = _on_cpu_s(thread) - before
    assert 0.01 < used < 5
