"""bench_images' timings: latency percentiles of calls made one after another, rows/s with
several in flight, and CPU per row (this process's, its children's, the stack's)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench._images import requests
from bench._stack import cpu_seconds


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "n": len(values),
    }


def timed_runs(
    call: Callable[[pa.RecordBatch], Any],
    batches: Iterator[pa.RecordBatch],
    seconds: float,
    rows: int,
) -> dict[str, Any]:
    """`call` on one batch after another for `seconds`: p50/p99 ms per call and rows/s."""
    call(next(batches))  # warm up
    times: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 3:
        batch = next(batches)
        t = time.perf_counter()
        call(batch)
        times.append((time.perf_counter() - t) * 1e3)
    wall = time.perf_counter() - started
    return {**percentiles(times), "rows_per_s": round(len(times) * rows / wall, 1)}


def cpu_here() -> float:
    """CPU seconds of this process and its live children (a step's own process)."""
    children = [
        int(pid)
        for task in Path("/proc/self/task").iterdir()
        for pid in (task / "children").read_text().split()
    ]
    return time.process_time() + sum(cpu_seconds(pid) for pid in children)


def concurrent_rows(
    post: Callable[[pa.RecordBatch], None], files: list[bytes], n: int, clients: int, seconds: float
) -> int:
    """Rows answered with `clients` requests in flight for `seconds`."""
    stop = time.perf_counter() + seconds

    def client(seed: int) -> int:
        done, batches = 0, requests(files[seed:] + files[:seed], n)
        while time.perf_counter() < stop:
            post(next(batches))
            done += n
        return done

    with ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(client, range(clients)))


def per_row(cpu: dict[str, float], rows: int) -> dict[str, Any]:
    """Rows/s over a metered run, and each process's CPU ms per row (image) in it."""
    return {
        "rows_per_s": round(rows / cpu["wall_s"], 1),
        "cpu_ms_per_row": {
            name: round(seconds * 1e3 / max(rows, 1), 2)
            for name, seconds in cpu.items()
            if name != "wall_s" and not name.endswith("_wait")
        },
    }
