"""Fetch responses with a hole: read what comes before it, and ask again from the hole.

Tansu 0.6.0 (the embedded broker) can answer a fetch while a record below its end is still
being written by another producer: the response then skips that record (asked from offset
958, it returned the batches at 958 and 960), and a Kafka client, taking the next offset
from what it got, never reads it. With two producers writing one partition, a reader at
its end missed about one record in a thousand; in weir that was an input record never run
(a request that timed out during a hot swap), and it can be a log row or a reply.

So weir's consumers hand on a response's batches only up to the first hole (a batch that
starts past the offset where the one before it ended, or past the offset asked for), and
the next fetch asks from the hole, which by then is readable. Apache Kafka never answers
with a hole in a topic that is not compacted (control markers and aborted transactions
are batches of their own), and weir compacts none; a hole that is still there after
`patience_s` is let through with a warning rather than wait for good (a compacted topic).
streams.aiokafka_internals.read_holes_again puts this in aiokafka's fetcher.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from aiokafka import TopicPartition

log = logging.getLogger(__name__)

PATIENCE_S = 2.0
"""How long a fetch response's hole is asked for again before it is read past. Tansu's
holes fill within milliseconds (the other producer's write finishing)."""

Span = tuple[int, int]
"""A record batch's base offset and the offset after its last record."""


class HoleWatch:
    """Decides how much of each fetch response to hand on, and remembers the holes it held
    back, so that one that never fills is read past after `patience_s`."""

    def __init__(self, patience_s: float = PATIENCE_S) -> None:
        self.patience_s = patience_s
        self._since: dict[tuple[TopicPartition, int], float] = {}

    def readable(self, tp: TopicPartition, fetch_offset: int, spans: Sequence[Span]) -> int:
        """How many of the response's batches (`spans`, in order) to hand on: all of them,
        or those before the first hole while it is new."""
        expected = fetch_offset
        for index, (base, after) in enumerate(spans):
            if base > expected and not self._waited_long(tp, expected):
                return index
            expected = max(expected, after)
        return len(spans)

    def _waited_long(self, tp: TopicPartition, hole: int) -> bool:
        now = time.monotonic()
        first_seen = self._since.setdefault((tp, hole), now)
        if len(self._since) > 1000:  # holes fill: forget the old ones
            self._since = {k: t for k, t in self._since.items() if now - t < self.patience_s}
            self._since[(tp, hole)] = first_seen
        if now - first_seen < self.patience_s:
            return False
        log.warning(
            "%s[%d]: offset %d was never returned in %.1fs of fetches; reading past it "
            "(a compacted topic, or records the broker lost)",
            tp.topic,
            tp.partition,
            hole,
            self.patience_s,
        )
        del self._since[(tp, hole)]
        return True
