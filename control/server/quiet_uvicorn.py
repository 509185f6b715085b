"""uvicorn's server, waking once a second instead of ten times while idle.

uvicorn's main loop sleeps 0.1 s between looks at its exit flag. On the machines weir is
measured every wake of an idle process costs ~0.25 ms of CPU whatever it does (an
asyncio loop that only sleeps, 10 wakes a second: 0.26-0.29% of a core), and an idle
stack's CPU is mostly such wakes (bench/README.md, 2026-12-06 "an idle stack's wakes").
This one looks once a second (the date header still changes each second) and is woken
at once by SIGINT/SIGTERM, so stopping is as quick as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import FrameType

import uvicorn

TICK_S = 1.0
TICKS_PER_S = 10
"""uvicorn counts ticks of 0.1 s and renews the date header at every tenth."""


class QuietServer(uvicorn.Server):
    """`uvicorn.Server` with a one-second tick, woken by the signals that stop it.

    Example:
        QuietServer(uvicorn.Config(app, port=8080)).run()
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._woken: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop, self._woken = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + TICKS_PER_S) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), TICK_S)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._woken is not None:
            # A signal handler may run between any two bytecodes of the loop's own code.
            self._loop.call_soon_threadsafe(self._woken.set)
