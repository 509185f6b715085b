"""Blocking lookups off the event loop, one at a time per key.

The registry's Redis client is blocking. The gateway looks a pipeline's deployment up
while it serves requests: on the event loop, a lookup held every request in flight for as
long as redis-server took to answer (and, the moment Redis went away, for the client's
timeout). `SharedLookups` runs each lookup in a thread, and the callers that ask for the
same key while it runs share its answer: a burst of requests for a pipeline that is not
deployed reads Redis once, not once each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedLookups(Generic[K, V]):
    """`lookup(key)` in a thread, shared by the callers that ask for `key` while it runs.

    Example:
        deployments = SharedLookups(lambda key: registry.get_deployment(*key))
        deployment = await deployments.get(("default", "ccfraud"))

    A caller cancelled while it waits does not cancel the lookup the others wait for; an
    error of the lookup is raised to every caller that shares it.
    """

    def __init__(self, lookup: Callable[[K], V]) -> None:
        self._lookup = lookup
        self._running: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(asyncio.to_thread(self._lookup, key))
            self._running[key] = running
            running.add_done_callback(lambda done: self._ended(key, done))
        return await asyncio.shield(running)

    def _ended(self, key: K, done: asyncio.Future[V]) -> None:
        del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved, even when every caller was cancelled meanwhile
