"""How long a progress counter has stood still.

A stopping worker drains for as long as it keeps making progress, however
long that takes (a big backlog under load must not be cut short and lost);
only a drain that stands still for `WorkerSettings.drain_timeout_s` is given
up. The worker applies that to its own counters, the deployer to the ones in
its heartbeats (to kill a worker that hangs while stopping).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class Stall:
    """Tells when a value has not changed for `limit_s`.

    Example:
        stall = Stall(30.0)
        while not done():
            if stall.seen(counters.processed):
                raise TimeoutError("no progress for 30 s")
    """

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s = limit_s
        self._clock = clock
        self._value: Hashable = object()  # equal to nothing: the first value seen is a change
        self._since = clock()

    def seen(self, value: Hashable) -> bool:
        """Record the current value; True once it has stood still for `limit_s`."""
        now = self._clock()
        if value != self._value:
            self._value, self._since = value, now
        return now - self._since >= self.limit_s

    @property
    def still_s(self) -> float:
        """Seconds since the value last changed."""
        return self._clock() - self._since
