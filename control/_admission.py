"""Admission: whether the gateway can answer one more request for a pipeline in time.

Each pipeline's capacity is measured, not configured: the answers it gave per second of
busy time (time with at least one request in flight), both decayed with a half-life so
the figure follows the pipeline's speed. A new request would wait about (in flight + 1)
/ that rate, the wait behind the requests in flight counted QUEUE_SLACK times over; one
whose deadline is shorter is refused at once (HTTP 503, Retry-After) instead of queueing
behind work it cannot overtake. Until a pipeline has answered, nothing is refused on this
ground (the gateway's `max_in_flight` still bounds memory).
"""

from __future__ import annotations

import time
from collections.abc import Callable

HALF_LIFE_S = 2.0
"""How fast old measurements fade: a pipeline that slows down (or speeds up) is seen
within a few seconds."""
QUEUE_SLACK = 2.0
"""How many times over the wait behind the requests in flight is counted. It is a mean, and
a request's own wait varies around it by as much again: counted once, an overloaded
pipeline answered many requests with 504 at their deadline, their work spent for nothing
(on Tansu at 1,000 requests/s, 405 of 6,000 timed out against 418 refused; bench/README.md,
2026-12-07 night). A request's own answer time is counted once, so that a slow pipeline
asked one request at a time is not refused a deadline it meets. The cost: at the onset of
a surge the rate still reads a batching pipeline's one-at-a-time speed, and the slack
doubles that error until the measurement catches up (up to ~1% of a surge's first seconds
refused on Apache Kafka in a slow sitting; the same journal entry)."""


class Capacity:
    """One pipeline's requests in flight and its measured answers per busy second.

    Example:
        capacity = Capacity()
        if capacity.expected_wait_s() > deadline_s: refuse
        capacity.started(); ...; capacity.finished(answered=True)
    """

    def __init__(
        self, half_life_s: float = HALF_LIFE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.in_flight = 0
        self._half_life_s = half_life_s
        self._clock = clock
        self._answers = 0.0
        self._busy_s = 0.0
        self._last = clock()
        self._finished = self._last  # when a request last left

    def _advance(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            decay = 0.5 ** (elapsed / self._half_life_s)
            self._answers *= decay
            self._busy_s = self._busy_s * decay + (elapsed if self.in_flight else 0.0)
        self._last = now

    def rate(self) -> float | None:
        """Answers per busy second, or None before the first answer."""
        self._advance()
        if self._answers <= 0 or self._busy_s <= 0:
            return None
        return self._answers / self._busy_s

    def expected_wait_s(self) -> float:
        """About how long a request admitted now may wait for its answer, the requests in
        flight ahead of it counted QUEUE_SLACK times (0: unknown).

        With none in flight and none finished for `half_life_s`, it is 0: a lone request is
        let in. Otherwise a pipeline measured slow once (a burst of timeouts under load)
        would be refused for good: idle time decays its answers and its busy time alike,
        and nothing admitted measures it again.
        """
        rate = self.rate()
        if rate is None:
            return 0.0
        if not self.in_flight and self._clock() - self._finished >= self._half_life_s:
            return 0.0
        return (QUEUE_SLACK * self.in_flight + 1) / rate

    def drain_s(self, deadline_s: float) -> float:
        """About how long until a request with this deadline would be let in, if no other
        came meanwhile: the requests ahead of it that must leave first, at the measured
        rate (0 if it would be let in now)."""
        return max(0.0, (self.expected_wait_s() - deadline_s) / QUEUE_SLACK)

    def started(self) -> None:
        self._advance()
        self.in_flight += 1

    def finished(self, answered: bool) -> None:
        """A request left: `answered` (its answer or its error came back) counts towards the
        rate; one that timed out or was cancelled does not."""
        self._advance()
        self.in_flight -= 1
        self._finished = self._last
        if answered:
            self._answers += 1
