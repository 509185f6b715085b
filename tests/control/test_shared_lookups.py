"""control/shared_lookups.py: a blocking lookup runs in a thread, shared by the callers asking
meanwhile (the gateway's deployment lookup on a frozen Redis: test_registry_off_the_loop)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from control.shared_lookups import SharedLookups

TICK_S = 0.05


class Gate:
    """A blocking lookup that waits until it is let through; counts its calls."""

    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer
        self.calls = 0
        self.opened = threading.Event()

    def __call__(self, key: str) -> str:
        self.calls += 1
        self.opened.wait(10)
        if isinstance(self.answer, Exception):
            raise self.answer
        return f"{self.answer} {key}"


async def test_callers_asking_for_one_key_meanwhile_share_one_lookup() -> None:
    gate = Gate("found")
    lookups = SharedLookups[str, str](gate)
    waiting = [asyncio.create_task(lookups.get("a")) for _ in range(5)]
    other = asyncio.create_task(lookups.get("b"))
    await asyncio.sleep(TICK_S)
    gate.opened.set()
    assert await asyncio.gather(*waiting, other) == [*["found a"] * 5, "found b"]
    assert gate.calls == 2
    assert await lookups.get("a") == "found a" and gate.calls == 3  # done: asked again


async def test_a_cancelled_caller_leaves_the_lookup_to_the_others_and_errors_reach_all() -> None:
    gate = Gate(LookupError("no such key"))
    lookups = SharedLookups[str, str](gate)
    first, second = (asyncio.create_task(lookups.get("a")) for _ in range(2))
    await asyncio.sleep(TICK_S)
    first.cancel()
    gate.opened.set()
    with pytest.raises(LookupError, match="no such key"):
        await second
    assert first.cancelled() and gate.calls == 1
