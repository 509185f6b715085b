"""Where a stage's work runs: inline on the worker's event loop while its chunks are quick,
on one compute thread once they are slow.

Inline, a quick chunk costs no hand-off between threads; on the thread, a slow one leaves
the event loop free to fetch, send and heartbeat while the model (or the user's step code)
runs. User step code never runs concurrently: one thread, and the loop waits for it.

Example:
    placement = Placement()
    result = await placement.call("ws.p.in", stage.run, chunk)
    placement.close()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

QUICK_S = 0.1
"""A stage whose chunk took less than this runs its next ones on the event loop itself
(the heavy MLP's 4096-row chunks take ~45 ms): handing them to the compute thread and
back costs more (measured: ~50% more worker CPU per 256-row message; with the heavy MLP
~30% fewer messages per second, from the hand-offs, the GIL passing between threads,
and sends split into smaller requests while the loop is free)..."""
SLOW_S = 0.2
"""...until one takes longer than this: then the stage goes back to the compute thread,
and the loop keeps fetching and heartbeating while its model (or its I/O) runs. Wall
time, so it is far above QUICK_S: on a busy 2-core machine, other processes holding
the core stretched 3 ms chunks past a 20 ms bound about once a second, and each time
the stage spent up to a second on the thread."""
FETCH_AHEAD_S = 0.001
"""Before an inline chunk whose stage's last chunk took longer than this, with more messages
waiting, the Kafka clients get a few turns of the event loop (`Placement.let_clients_send`). Without
them, nothing leaves while a fetch runs inline, and each fetch began with the worker idle for
the next one's round trip (heavy MLP, 256-row messages, three runs each: the worker's core
busy 0.92-0.94 of the time -> 0.96-0.97, rows/s 66.6k-68.2k -> 67.6k-74.9k). A lone message
skips them: they put the sends and fetch request before its answer..."""
CLIENT_TURNS = 3
"""...this many: the fetcher wakes, then starts its request, then it is written."""

T = TypeVar("T")


class Placement:
    """Runs each stage's work inline or on the compute thread, by how long its chunks take
    (stages are named by the topic they read)."""

    def __init__(self) -> None:
        self._compute = ThreadPoolExecutor(1, thread_name_prefix="weir-compute")
        self._quick: set[str] = set()  # stages that run inline (QUICK_S, SLOW_S)
        self._took: dict[str, float] = {}  # each stage's last chunk, wall time (s)

    async def call(
        self, topic: str, work: Callable[..., T], *args: Any, is_chunk: bool = True
    ) -> T:
        """`work(*args)` for the stage reading `topic`: inline while its chunks are quick,
        else on the compute thread. Only chunks tell whether it is quick (a fetch's
        decoding grows with the fetch)."""
        started = time.perf_counter()
        if topic in self._quick:
            result = work(*args)
        else:
            result = await asyncio.get_running_loop().run_in_executor(self._compute, work, *args)
        took = time.perf_counter() - started
        if is_chunk:
            self._took[topic] = took
        if is_chunk and took < QUICK_S:
            self._quick.add(topic)
        elif is_chunk and took > SLOW_S:
            self._quick.discard(topic)
        return result

    async def let_clients_send(self, topic: str, *, queued: int) -> None:
        """Before the next chunk of the stage reading `topic`, with `queued` messages left
        to run: if it runs inline and its last chunk was long, give the Kafka clients'
        tasks the event loop's next few turns (FETCH_AHEAD_S), so the consumer's next fetch
        request and the producer's pending sends leave now and their answers come back
        while the chunk runs. Not for a lone message: that is answered first."""
        if queued > 1 and topic in self._quick and self._took.get(topic, 0.0) > FETCH_AHEAD_S:
            for _ in range(CLIENT_TURNS):
                await asyncio.sleep(0)

    def close(self) -> None:
        """Wait for the work in hand, then let the thread go."""
        self._compute.shutdown(wait=True)
