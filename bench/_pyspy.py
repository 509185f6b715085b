"""Where a weir process spends its CPU, sampled from outside with py-spy (bench only).

An in-process sampler (bench/_sample_main.py) can only look at the main thread when it holds
the GIL, so its samples land where the main thread lets the GIL go (pyarrow calls, socket
I/O) and over-count that code. py-spy reads the process's memory from outside: no GIL, no
cost inside the process, every thread, and samples of a waiting thread are left out.

Example:
    with recording(pid) as raw:
        run_the_load()
    shares = parts(raw.read_text(), RULES)   # {part: samples}
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

RATE_HZ = 500
"""Samples a second per thread."""

WAITING_LEAVES = ("Runner.run (asyncio/runners.py", "_worker (concurrent/futures/thread.py:81)")
"""Innermost frames that py-spy reports as running but that wait (uvloop's C loop, which
does its own work there too; an idle thread pool's queue)."""


def py_spy() -> str | None:
    """The py-spy beside this Python (installed with weir's test extras), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextmanager
def recording(pid: int) -> Iterator[Path]:
    """Sample process `pid` while the block runs; the raw stacks ("frame;frame;... count"
    lines) are in the yielded file once it has run."""
    tool = py_spy()
    if tool is None:
        raise RuntimeError("py-spy is not installed: ./dev setup installs it (test extras)")
    folder = Path(tempfile.mkdtemp(prefix="weir-pyspy-"))
    raw, said = folder / "stacks.txt", folder / "py-spy.log"
    with said.open("wb") as log:
        spy = subprocess.Popen(
            [tool, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--nonblocking"]
            + ["--format", "raw", "--output", str(raw)],
            stdout=log,
            stderr=log,
        )
    time.sleep(0.5)  # attached
    if spy.poll() is not None:
        raise RuntimeError(
            f"py-spy could not sample process {pid} (it needs root, or ptrace allowed; the "
            f"bench's --no-sample runs without it): {said.read_text().strip()}"
        )
    try:
        yield raw
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled, then exits
        spy.wait(timeout=30)


def parts(raw: str, rules: Sequence[tuple[str, Sequence[str]]]) -> Counter[str]:
    """Samples by part: each stack goes to the first rule with a pattern found in it (in
    any frame), else to 'other'; stacks that wait (WAITING_LEAVES) are left out."""
    out: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or stack.rsplit(";", 1)[-1].startswith(WAITING_LEAVES):
            continue
        name = next(
            (part for part, patterns in rules if any(p in stack for p in patterns)), "other"
        )
        out[name] += int(count)
    return out
