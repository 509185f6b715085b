"""Waiting for one of some processes to exit without looking at them over and over.

On Linux a process's pidfd turns readable when it exits, so the event loop can wait for
that (os.pidfd_open, Linux 5.3). Where there are none, `ExitWatch.wait` only sleeps and
its caller looks for itself, as the supervisor did every 0.25 s everywhere: four wakes a
second of an idle server, at ~0.25 ms of CPU each (control/server/quiet_uvicorn.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable


class ExitWatch:
    """Wakes its waiter when a watched process exits.

    Example:
        watch = ExitWatch()
        await watch.wait([proc.pid for proc in alive], timeout_s=1.0)  # one exited, or 1 s
        watch.close()
    """

    def __init__(self) -> None:
        self._pidfds: dict[int, int] = {}
        self._exited = asyncio.Event()
        self.sees_exits = hasattr(os, "pidfd_open")
        """Whether exits wake `wait` (else it always sleeps its timeout)."""

    async def wait(self, pids: Iterable[int], timeout_s: float) -> None:
        """Return once one of `pids` has exited (or had, before the call), or after
        `timeout_s`. Pass the processes that are alive: one that exited and stays in the
        list ends every wait at once."""
        self._watch_only(set(pids))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), timeout_s)
        self._exited.clear()

    def close(self) -> None:
        self._watch_only(set())

    def _watch_only(self, pids: set[int]) -> None:
        for pid in set(self._pidfds) - pids:
            self._forget(pid)
        if not self.sees_exits:
            return
        loop = asyncio.get_running_loop()
        for pid in pids - set(self._pidfds):
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:  # gone already
                self._exited.set()
                continue
            except OSError:  # a kernel without pidfds: sleep, and let the caller look
                self.sees_exits = False
                return
            self._pidfds[pid] = pidfd
            loop.add_reader(pidfd, self._on_exit, pid)

    def _on_exit(self, pid: int) -> None:
        self._forget(pid)
        self._exited.set()

    def _forget(self, pid: int) -> None:
        pidfd = self._pidfds.pop(pid)
        asyncio.get_running_loop().remove_reader(pidfd)
        os.close(pidfd)
