"""control/server/quiet_uvicorn.py: an idle server wakes once a second and still stops at once."""

from __future__ import annotations

import asyncio
import signal

import pytest
import uvicorn

from control.server import quiet_uvicorn
from control.server.quiet_uvicorn import QuietServer


class CountingServer(QuietServer):
    def __init__(self) -> None:
        super().__init__(uvicorn.Config(app=None, date_header=True))  # type: ignore[arg-type]
        self.ticks: list[int] = []

    async def on_tick(self, counter: int) -> bool:
        self.ticks.append(counter)
        return await super().on_tick(counter)


async def test_an_idle_server_ticks_once_a_second_renewing_the_date_each_time() -> None:
    server = CountingServer()
    main = asyncio.create_task(server.main_loop())
    await asyncio.sleep(2.5)
    # uvicorn's own loop would have ticked 25 times; each of these renews the date header
    # (uvicorn renews it when the count is a multiple of ten).
    assert 3 <= len(server.ticks) <= 4
    assert all(counter % 10 == 0 for counter in server.ticks)
    server.handle_exit(signal.SIGTERM, None)
    await asyncio.wait_for(main, 5)


async def test_a_signal_stops_it_without_waiting_for_the_next_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(quiet_uvicorn, "TICK_S", 60.0)
    server = CountingServer()
    main = asyncio.create_task(server.main_loop())
    await asyncio.sleep(0.1)
    server.handle_exit(signal.SIGTERM, None)
    await asyncio.wait_for(main, 5)  # not the minute to its next tick
    assert len(server.ticks) == 2  # the first, and the one the signal woke
