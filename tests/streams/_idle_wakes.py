"""An idle worker loop in a process of its own: how often its event loop's thread wakes.

Run by tests/streams/test_idle_loop.py as
`python -m tests.streams._idle_wakes <bootstrap> <folder> <diabetes.onnx>`; prints the wakes
a second. Apart, because in a test run's process the threads earlier tests left behind
wake the event loop's thread too (each hand-over of the GIL counts): 71 a second once.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

from streams.admin import resolved
from streams.loop import StageLoop
from streams.settings import WorkerSettings
from tests.streams._loops import loops


def wakes() -> int:
    """How often this thread has gone to sleep and been woken."""
    status = Path(f"/proc/self/task/{threading.get_native_id()}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("voluntary_ctxt"))
    return int(line.split()[1])


async def idle_loop(bootstrap: str, name: str, folder: Path, diabetes_onnx: Path) -> StageLoop:
    """A started worker's loop as the broker's would be set (exactly once on Apache Kafka),
    idle half a second after its last record."""
    settings = await resolved(WorkerSettings(kafka_bootstrap=bootstrap, idle_after_s=0.5))
    (loop,) = await loops(
        bootstrap,
        name,
        folder,
        diabetes_onnx,
        exactly_once=bool(settings.exactly_once),
        settings=settings,
    )
    await loop.start()
    return loop


async def idle_wakes_per_s(bootstrap: str, folder: Path, diabetes_onnx: Path) -> float:
    loop = await idle_loop(bootstrap, "idle-wakes", folder, diabetes_onnx)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.sleep(8)  # joined, assigned, idle
        before, started = wakes(), asyncio.get_running_loop().time()
        await asyncio.sleep(5)
        return (wakes() - before) / (asyncio.get_running_loop().time() - started)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await loop.close()


if __name__ == "__main__":
    bootstrap, folder, model = sys.argv[1:4]
    print(asyncio.run(idle_wakes_per_s(bootstrap, Path(folder), Path(model))))
