"""A sampling profiler of a process's main thread, by asyncio task and package, and cProfile
for a worker's functions (bench only).

The sampler runs in the process and reads the main thread's frames only when it holds the
GIL, so its samples land where the main thread lets the GIL go (pyarrow calls, socket I/O)
and over-count that code; bench/_pyspy.py samples from outside without that bias.

Installed in weir's processes by `bench/_sample/sitecustomize.py`.
"""

from __future__ import annotations

import atexit
import cProfile
import json
import os
import pstats
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

INTERVAL_S = 0.0005
WRAPPERS = {"anyio", "starlette"}


def _package(frame: FrameType) -> str:
    path = frame.f_code.co_filename
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            rest = path.split(marker, 1)[1].lstrip("/")
            rest = rest.split("/", 1)[1] if marker != "site-packages/" else rest
            return rest.split("/", 1)[0].removesuffix(".py")
    parts = Path(path).parts
    for top in ("control", "streams", "engine", "bench"):
        if top in parts:
            i = parts.index(top)
            return "/".join(parts[i : i + 2]).removesuffix(".py")
    return Path(path).stem


def classify(frame: FrameType | None) -> tuple[str, str]:
    """(the running task's outermost coroutine, or what the loop itself does; the innermost
    frame's package)."""
    stack: list[FrameType] = []
    while frame is not None:
        stack.append(frame)
        frame = frame.f_back
    if not stack:
        return "none", "none"
    inner = stack[0]
    if inner.f_code.co_name in ("select", "poll") and "selectors" in inner.f_code.co_filename:
        return "idle", "idle"
    for i, fr in enumerate(stack):
        if _runs_callbacks(fr):
            if i == 0:
                return "event loop", "asyncio"
            # The task's outermost coroutine, past anyio's and starlette's wrappers (an HTTP
            # middleware runs the route in a task of its own).
            j = i - 1
            while j > 0 and _package(stack[j]) in WRAPPERS:
                j -= 1
            outer = stack[j]
            task = f"{_package(outer)}:{outer.f_code.co_qualname}"
            return task, _package(inner)
    return "event loop", _package(inner)


def _runs_callbacks(frame: FrameType) -> bool:
    """Whether `frame` is the event loop's own frame that calls tasks and callbacks: asyncio's
    Handle._run, or with uvloop (whose loop is C) the Runner.run that started it."""
    code = frame.f_code
    return (code.co_name == "_run" and code.co_filename.endswith("asyncio/events.py")) or (
        code.co_name == "run" and code.co_filename.endswith("asyncio/runners.py")
    )


def _on_cpu_s(thread_id: int) -> float:
    """Seconds thread `thread_id` (native) of this process has run on a CPU."""
    with open(f"/proc/self/task/{thread_id}/schedstat", "rb") as f:
        return int(f.read().split()[0]) / 1e9


class Sampler:
    """Samples the main thread until the process exits: each sample is weighted by the CPU
    time the thread used since the last one, so waiting (in select, or in uvloop's C loop,
    where Python frames cannot tell waiting from work) counts nothing."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.seconds: Counter[tuple[str, str]] = Counter()
        self._main = threading.main_thread()

    def run(self) -> None:
        native = self._main.native_id
        assert native is not None
        last = _on_cpu_s(native)
        while True:
            time.sleep(INTERVAL_S)
            frame = sys._current_frames().get(self._main.ident)  # type: ignore[arg-type]
            now = _on_cpu_s(native)
            self.seconds[classify(frame)] += now - last
            last = now

    def dump(self, name: str | None = None) -> None:
        rows = [[task, package, round(s, 4)] for (task, package), s in self.seconds.most_common()]
        path = self.out.with_name(name) if name else self.out
        path.write_text(json.dumps({"pid": os.getpid(), "argv": sys.argv, "seconds": rows}))


def install(directory: str) -> None:
    """Start sampling this process; write `<directory>/<pid>.json` at exit (SIGTERM: uvicorn
    and weir workers turn it into a clean exit), and `<pid>.<n>.json` on the n-th SIGUSR2
    (so a bench takes the difference over a phase)."""
    sys.setswitchinterval(INTERVAL_S)
    sampler = Sampler(Path(directory) / f"{os.getpid()}.json")
    threading.Thread(target=sampler.run, name="bench-sampler", daemon=True).start()
    atexit.register(sampler.dump)
    dumps = iter(range(1, 1_000_000))
    signal.signal(signal.SIGUSR2, lambda *_: sampler.dump(f"{os.getpid()}.{next(dumps)}.json"))


def snapshot(directory: Path, pid: int, timeout_s: float = 5.0) -> dict[tuple[str, str], float]:
    """Ask process `pid` (sampled) for its seconds so far, by (task, package)."""
    before = set(directory.glob(f"{pid}.*.json"))
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = set(directory.glob(f"{pid}.*.json")) - before
        if new:
            time.sleep(0.05)  # let the write finish
            rows = json.loads(new.pop().read_text())["seconds"]
            return {(task, package): s for task, package, s in rows}
        time.sleep(0.02)
    raise TimeoutError(f"process {pid} wrote no sample")


def difference(
    after: dict[tuple[str, str], float], before: dict[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    """Seconds spent between two snapshots."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def profile(directory: str) -> None:
    """On SIGUSR2, run this process's main thread under cProfile, timed by its CPU time (not
    counting waits for a CPU or in select); on the next, stop and write
    `<directory>/<pid>.prof` (so a bench profiles one phase: `profiled_phase`)."""
    profiler = cProfile.Profile(time.thread_time)
    running = [False]

    def toggle(*_: object) -> None:
        if running[0]:
            profiler.disable()
            profiler.dump_stats(str(Path(directory) / f"{os.getpid()}.prof"))
        else:
            profiler.enable()
        running[0] = not running[0]

    signal.signal(signal.SIGUSR2, toggle)


def profiled_phase(
    directory: Path, pid: int, run: Any, timeout_s: float = 30.0
) -> tuple[Any, Path]:
    """`run()` with process `pid` (installed with `profile`) under cProfile; its result and
    the profile's path."""
    os.kill(pid, signal.SIGUSR2)
    result = run()
    os.kill(pid, signal.SIGUSR2)
    path = directory / f"{pid}.prof"
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # let the write finish
    return result, path


def top(path: Path, per: int, most: int = 20) -> list[list[Any]]:
    """The `most` functions of a cProfile dump with the most time of their own: [function,
    own ms, ms including what it called], each per one of `per` units of work."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:most]
    return [
        [
            f"{Path(file).name}:{line}({name})",
            round(own * 1e3 / per, 3),
            round(cumulative * 1e3 / per, 3),
        ]
        for (file, line, name), (_, _, own, cumulative, _) in rows
    ]
