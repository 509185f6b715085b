"""control/process_exits.py: a watched process's exit wakes the waiter at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from control.process_exits import ExitWatch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfds are Linux's")


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


async def test_an_exit_ends_the_wait_without_its_timeout() -> None:
    watch, child, other = ExitWatch(), _sleeper(), _sleeper()
    try:
        assert watch.sees_exits
        waiting = asyncio.create_task(watch.wait([child.pid, other.pid], timeout_s=600))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        child.kill()
        await asyncio.wait_for(waiting, 10)  # not the ten minutes
        child.wait()
        # The next wait watches only what is alive, and sleeps its timeout.
        await asyncio.wait_for(watch.wait([other.pid], timeout_s=0.3), 10)
    finally:
        watch.close()
        for process in (child, other):
            process.kill()
            process.wait()


async def test_a_process_gone_before_the_wait_ends_it_at_once() -> None:
    child = _sleeper()
    child.kill()
    child.wait()  # reaped: its pid names no process
    watch = ExitWatch()
    try:
        await asyncio.wait_for(watch.wait([child.pid], timeout_s=600), 10)
    finally:
        watch.close()
