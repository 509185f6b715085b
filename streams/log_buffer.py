"""The log agent's buffer: log rows read from the topics and not written to the log store
yet, the offsets they come from, and when they are due to be written.

Example:
    buffer = LogBuffer()
    buffer.read(tp, records)                 # before adding the rows made from them
    buffer.add(workspace, pipeline, batch)
    if buffer.due(asked=False):
        ...                                  # write buffer.batches, commit buffer.next
"""

from __future__ import annotations

import time
from collections import defaultdict

import pyarrow as pa
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from streams.messages import Requests

FLUSH_ROWS = 200_000
FLUSH_BYTES = 64 * 1024 * 1024
"""Result messages are kept as they came until written: this bounds their bytes."""
FLUSH_EVERY_S = 1.0


class LogBuffer:
    """Log rows read but not written yet, and the offsets they come from."""

    def __init__(self) -> None:
        self.batches: dict[tuple[str, str], list[pa.RecordBatch]] = defaultdict(list)
        self.results: dict[tuple[str, str], list[tuple[bytes, str | Requests, str | None]]] = (
            defaultdict(list)
        )
        """Result messages (with their request ids and traceparents), made log rows in bulk
        when written."""
        self.rows = 0
        self.result_bytes = 0
        self.first: dict[TopicPartition, int] = {}  # where to read again if writing fails
        self.next: dict[TopicPartition, int] = {}  # what to commit once written
        self._since = 0.0

    def read(self, tp: TopicPartition, msgs: list[ConsumerRecord]) -> None:
        if msgs:
            self.first.setdefault(tp, msgs[0].offset)
            self.next[tp] = msgs[-1].offset + 1
            if not self._since:
                self._since = time.monotonic()

    def add(self, workspace: str, pipeline: str, batch: pa.RecordBatch) -> None:
        self.batches[(workspace, pipeline)].append(batch)
        self.rows += batch.num_rows

    def add_result(
        self,
        workspace: str,
        pipeline: str,
        value: bytes,
        request_id: str | Requests,
        traceparent: str | None,
    ) -> None:
        self.results[(workspace, pipeline)].append((value, request_id, traceparent))
        self.result_bytes += len(value)

    def due(self, asked: bool) -> bool:
        """Whether to write now: asked to (sync), full, or old enough."""
        if not self.next:
            return False
        return (
            asked
            or self.rows >= FLUSH_ROWS
            or self.result_bytes >= FLUSH_BYTES
            or time.monotonic() - self._since >= FLUSH_EVERY_S
        )
